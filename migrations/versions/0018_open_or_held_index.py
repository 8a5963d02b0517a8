"""the open-orders-by-account index also holds held legs

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 22:15:00

`max_open_orders` (account and group limits) counts open orders and held legs: a bracket's or an OTO's
exit legs are held until their entry fills and then become open with no check of their own, so they
count from placement (docs/RISK.md). `ix_orders_open_by_account` is that count's index; its predicate
widens from the open statuses to the open and held ones, and it still serves every query on an account's
open orders (their predicate implies the index's).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status IN ('new', 'accepted', 'partially_filled')"
_OPEN_OR_HELD = "status IN ('new', 'held', 'accepted', 'partially_filled')"


def upgrade() -> None:
    op.drop_index("ix_orders_open_by_account", table_name="orders")
    op.create_index(
        "ix_orders_open_by_account",
        "orders",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text(_OPEN_OR_HELD),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_open_by_account", table_name="orders")
    op.create_index(
        "ix_orders_open_by_account", "orders", ["account_id"], unique=False, postgresql_where=sa.text(_OPEN)
    )
