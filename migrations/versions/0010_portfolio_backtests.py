"""portfolio backtests and walk-forward runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 06:30:00

`backtests.kind` tells a single-instrument run from a portfolio run (whose request is kept in
`params`); `backtest_results.positions` holds a portfolio's sampled per-symbol quantities. A
walk-forward run is one `walkforwards` row and one `walkforward_windows` row per
train/test window, each written by the worker that ran that window's sweep.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backtests", sa.Column("kind", sa.String(16), server_default=sa.text("'single'"), nullable=False))
    op.add_column("backtest_results", sa.Column("positions", postgresql.JSONB(), nullable=True))
    op.create_table(
        "walkforwards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("spec", postgresql.JSONB(), nullable=False),
        sa.Column("objective", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("windows_total", sa.Integer(), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_walkforwards_owner_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_walkforwards"),
    )
    op.create_index("ix_walkforwards_owner_id", "walkforwards", ["owner_id"])
    op.create_table(
        "walkforward_windows",
        sa.Column("walkforward_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("train_start", sa.BigInteger(), nullable=False),
        sa.Column("train_end", sa.BigInteger(), nullable=False),
        sa.Column("test_start", sa.BigInteger(), nullable=False),
        sa.Column("test_end", sa.BigInteger(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=True),
        sa.Column("in_sample", postgresql.JSONB(), nullable=True),
        sa.Column("out_of_sample", postgresql.JSONB(), nullable=True),
        sa.Column("equity", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["walkforward_id"],
            ["walkforwards.id"],
            name="fk_walkforward_windows_walkforward_id_walkforwards",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("walkforward_id", "index", name="pk_walkforward_windows"),
    )


def downgrade() -> None:
    op.drop_table("walkforward_windows")
    op.drop_index("ix_walkforwards_owner_id", table_name="walkforwards")
    op.drop_table("walkforwards")
    op.drop_column("backtest_results", "positions")
    op.drop_column("backtests", "kind")
