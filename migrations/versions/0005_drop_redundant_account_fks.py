"""drop the account foreign keys of fills and order_events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 12:30:00

`fills.account_id` and `order_events.account_id` are copies of their order's account, kept so that an
account's fills and events are read without a join. Existence is already guaranteed by `order_id ->
orders.id` and `orders.account_id -> accounts.id` (deleting an account still cascades through its
orders). Each of these keys cost a referential-integrity trigger per row, four per placed order (one
fill, three events): measured ~0.035 ms of PostgreSQL CPU per order, about 6 % of its share (see
docs/BENCHMARKS.md). That the copies match their orders is checked by `tradedesk reconcile`.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_fills_account_id_accounts", "fills", type_="foreignkey")
    op.drop_constraint("fk_order_events_account_id_accounts", "order_events", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        "fk_order_events_account_id_accounts", "order_events", "accounts", ["account_id"], ["id"], ondelete="CASCADE"
    )
    op.create_foreign_key("fk_fills_account_id_accounts", "fills", "accounts", ["account_id"], ["id"], ondelete="CASCADE")
