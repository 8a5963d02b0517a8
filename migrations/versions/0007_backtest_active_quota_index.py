"""backtests: partial index for the per-user quota on queued and running work

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 06:20:00

Submitting a backtest or a sweep counts the caller's queued and running rows (the per-user quota); this
index holds only those rows, so the count stays a few index entries however long a user's history is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_backtests_owner_active",
        "backtests",
        ["owner_id", "sweep_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_backtests_owner_active", table_name="backtests")
