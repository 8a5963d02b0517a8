"""risk group version (the optimistic group guard of order placement); order-rate limit index

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:00:00

`risk_groups.version` moves with every order placed under the group's limits (and every change of its
limits, members or sub-groups' members). Placement reads it with the group's sums and lets its write
apply only if it is unchanged, so a group order needs no lock and no transaction of its own unless
another order of the group committed in between (app/domain/risk/group_pretrade.py). Not indexed: a
bump stays a HOT update.

`ix_risk_limits_order_rate` (partial: enabled order-rate limits) answers the monitors' batch read's "has
this account an order-rate limit" per account from the index alone; it visited every limit of the
account (a fifth of the read's time for the 1,000 holders of a post-trade check, docs/BENCHMARKS.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_risk_limits_order_rate",
        "risk_limits",
        ["account_id"],
        unique=False,
        postgresql_where=sa.text("enabled AND limit_type = 'max_orders_per_minute'"),
    )
    op.add_column(
        "risk_groups", sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )


def downgrade() -> None:
    op.drop_index("ix_risk_limits_order_rate", table_name="risk_limits")
    op.drop_column("risk_groups", "version")
