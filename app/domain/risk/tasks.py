"""Risk jobs: the post-trade monitor over every account and group, equity snapshots (daily PnL, drawdown)
and the daily run of the saved stress scenarios."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec

from app.domain.risk import group_alerts, scenario_service
from app.domain.risk.services import monitor_all, snapshot_equity
from app.lib.jobs import job
from app.lib.log import get_logger

log = get_logger("app.risk")


class MonitorAllKwargs(msgspec.Struct, forbid_unknown_fields=True):
    # Accounts per set-based batch (risk/monitoring.py): a fixed number of statements each.
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    # Kept under the job timeout so a run ends cleanly with `resume_after` instead of being killed.
    time_budget_seconds: Annotated[float, msgspec.Meta(gt=0, le=3000)] = 240.0
    start_after: UUID | None = None


class SnapshotKwargs(msgspec.Struct, forbid_unknown_fields=True):
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


@job("risk.monitor_all", MonitorAllKwargs, timeout=3600)
async def monitor_all_job(
    ctx: dict[str, Any],
    *,
    batch_size: int = 500,
    time_budget_seconds: float = 240.0,
    start_after: UUID | str | None = None,
) -> dict[str, Any]:
    """Run the post-trade risk check on every account with an enabled limit, then on every group with an
    enabled limit once the accounts are done (`group_alerts`); returns counts."""
    after = UUID(str(start_after)) if start_after else None
    async with ctx["engine"].connect() as conn:
        counts = await monitor_all(
            conn, batch_size=batch_size, time_budget_seconds=time_budget_seconds, start_after=after
        )
        if counts["complete"]:
            try:
                counts["group_alerts"] = await group_alerts.check_groups(conn)
            except Exception:  # the accounts' results stand; the next run checks the groups again
                log.exception("risk_group_sweep_failed")
                counts["group_alerts_failed"] = True
        return counts


@job("risk.snapshot_equity", SnapshotKwargs, timeout=1800)
async def snapshot_equity_job(ctx: dict[str, Any], *, batch_size: int = 1000) -> dict[str, int]:
    """Write an equity snapshot for every account (cash + positions at last prices)."""
    async with ctx["engine"].connect() as conn:
        return await snapshot_equity(conn, batch_size=batch_size)


@job("risk.run_saved_scenarios", timeout=1800)
async def run_saved_scenarios_job(ctx: dict[str, Any]) -> dict[str, int]:
    """Stress every account under every daily saved scenario; each scenario keeps its summary (last_run).
    Scheduled like any job: `POST /api/v1/jobs/schedules` with a daily cron."""
    async with ctx["engine"].connect() as conn:
        return await scenario_service.run_daily(conn)
