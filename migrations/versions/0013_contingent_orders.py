"""contingent orders: order classes, legs, trailing stops, reduce-only, notional, replace versions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:00:00

Additive only (expand): every new column is nullable or has a constant default, so a release that does
not know them keeps working on this schema.

- `order_class` (`simple`, `bracket`, `oto`, `oco`); `parent_id` links an exit leg to its entry (for an
  OCO, the stop-loss leg to the take-profit leg); `leg` says which exit (`take_profit`, `stop_loss`).
- `trail_price` / `trail_percent` and `hwm` (the best price since acceptance) for `trailing_stop` orders.
- `reduce_only`, `notional` (a market order sized by cash), `version` (1 at placement, + 1 per replace),
  `priority_at` (time priority after a replace that lost it; NULL: `created_at`).
- `ix_orders_parent`: a fill finds the legs of its entry (and a leg its sibling) without a scan.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("order_class", sa.String(length=8), server_default=sa.text("'simple'"), nullable=False))
    op.add_column("orders", sa.Column("parent_id", sa.UUID(), nullable=True))
    op.create_foreign_key("fk_orders_parent_id_orders", "orders", "orders", ["parent_id"], ["id"], ondelete="CASCADE")
    op.add_column("orders", sa.Column("leg", sa.String(length=12), nullable=True))
    op.add_column("orders", sa.Column("trail_price", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("trail_percent", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("hwm", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("orders", sa.Column("notional", sa.Numeric(), nullable=True))
    op.add_column("orders", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False))
    op.add_column("orders", sa.Column("priority_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_orders_parent", "orders", ["parent_id"], postgresql_where=sa.text("parent_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_orders_parent", table_name="orders")
    op.drop_constraint("fk_orders_parent_id_orders", "orders", type_="foreignkey")
    for column in ("priority_at", "version", "notional", "reduce_only", "hwm", "trail_percent", "trail_price", "leg",
                   "parent_id", "order_class"):
        op.drop_column("orders", column)
