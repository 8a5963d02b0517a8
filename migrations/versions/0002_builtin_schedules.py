"""built-in job schedules

Data only: the housekeeping schedules every deployment runs. `next_run_at` is the first cron time after
the migration, so nothing fires as a side effect of migrating; operators can pause or re-time them
through `/api/v1/jobs/schedules`.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from croniter import croniter
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUILTIN = (
    ("risk-monitor", "risk.monitor_all", "* * * * *"),
    ("equity-snapshots", "risk.snapshot_equity", "*/5 * * * *"),
    ("expire-day-orders", "trading.expire_day_orders", "* * * * *"),
    ("cache-stats-rollup", "system.cache_stats_rollup", "*/5 * * * *"),
)

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
    now = datetime.now(UTC)
    rows = [
        {
            "name": name,
            "function": function,
            "cron": cron,
            "kwargs": {},
            "enabled": True,
            "timezone": "UTC",
            "next_run_at": croniter(cron, now).get_next(datetime),
        }
        for name, function, cron in BUILTIN
    ]
    # An operator may already have created a schedule with one of these names: keep theirs.
    op.execute(postgresql.insert(schedules).values(rows).on_conflict_do_nothing(index_elements=["name"]))


def downgrade() -> None:
    op.execute(schedules.delete().where(schedules.c.name.in_([name for name, _, _ in BUILTIN])))
