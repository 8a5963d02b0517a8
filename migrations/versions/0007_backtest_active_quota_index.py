"""backtests: partial index for the per-user quota on queued and running work; orphan recovery schedule

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 06:20:00

Submitting a backtest or a sweep counts the caller's queued and running rows (the per-user quota); this
index holds only those rows, so the count stays a few index entries however long a user's history is.
The same rows are what `backtest.recover_orphans` (app/domain/backtesting/recovery.py) looks at every
minute, from a built-in schedule added here like those of migration 0002.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from croniter import croniter
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SCHEDULE = ("backtest-orphans", "backtest.recover_orphans", "* * * * *")

schedules = sa.table(
    "job_schedules",
    sa.column("name", sa.String),
    sa.column("function", sa.String),
    sa.column("cron", sa.String),
    sa.column("kwargs", postgresql.JSONB),
    sa.column("enabled", sa.Boolean),
    sa.column("timezone", sa.String),
    sa.column("next_run_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    name, function, cron = SCHEDULE
    row = {
        "name": name,
        "function": function,
        "cron": cron,
        "kwargs": {},
        "enabled": True,
        "timezone": "UTC",
        "next_run_at": croniter(cron, datetime.now(UTC)).get_next(datetime),
    }
    # An operator may already have a schedule of this name: keep theirs.
    op.execute(postgresql.insert(schedules).values([row]).on_conflict_do_nothing(index_elements=["name"]))
    op.create_index(
        "ix_backtests_owner_active",
        "backtests",
        ["owner_id", "sweep_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_backtests_owner_active", table_name="backtests")
    op.execute(schedules.delete().where(schedules.c.name == SCHEDULE[0]))
