"""`backtest.recover_orphans`: backtests that no live job will ever settle, found and settled.

A backtest row is `queued` or `running` until its `backtest.run` job writes the outcome. Two things
leave a row waiting forever:

* the queue lost the job: a Redis restart without persistence, a fan-out that died before enqueueing
  every run of its sweep and ran out of attempts. The run is enqueued again (same key, so a job that
  does exist is never doubled);
* the job ended without settling the row: aborted by SAQ's sweep after its last attempt died with a
  worker, for instance. The row is failed with the job's status and error, so the user sees why.

Runs every minute from the built-in `backtest-orphans` schedule (migration 0007). It looks only at rows
older than ORPHAN_GRACE (a submission may still be enqueueing) and leaves a sweep's runs alone while
the sweep's fan-out job is live (it is enqueueing them).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from saq.job import Status
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.backtesting.models import Backtest
from app.domain.backtesting.schemas import ACTIVE_STATUSES
from app.domain.backtesting.services import RUN_JOB, job_key, sweep_job_key
from app.lib.db import utcnow
from app.lib.jobs import enqueue, job
from app.lib.log import get_logger

log = get_logger("app.backtests")

ORPHAN_GRACE = timedelta(seconds=60)
BATCH = 1000
_FINAL = frozenset({Status.COMPLETE, Status.FAILED, Status.ABORTED})


@job("backtest.recover_orphans", timeout=120)
async def recover_orphans(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-enqueue backtests whose job the queue lost; fail those whose job ended without settling them."""
    engine: AsyncEngine = ctx["engine"]
    queue = ctx["queue"]
    cutoff = utcnow() - ORPHAN_GRACE
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Backtest.id, Backtest.job_key, Backtest.sweep_id)
                .where(
                    Backtest.status.in_(ACTIVE_STATUSES),
                    func.coalesce(Backtest.started_at, Backtest.created_at) < cutoff,
                )
                .order_by(Backtest.created_at)
                .limit(BATCH)
            )
        ).all()
    if not rows:
        return {"requeued": 0, "failed": 0}
    sweeps = sorted({r.sweep_id for r in rows if r.sweep_id is not None})
    fanning_out = {
        sweep_id
        for sweep_id, fan_out in zip(sweeps, await queue.jobs(sweep_job_key(s) for s in sweeps), strict=True)
        if fan_out is not None and fan_out.status not in _FINAL
    }
    candidates = [r for r in rows if r.sweep_id not in fanning_out]
    keys = [r.job_key or job_key(r.id) for r in candidates]
    requeued = failed = 0
    for row, key, saq_job in zip(candidates, keys, await queue.jobs(keys), strict=True):
        if saq_job is None:
            meta = {"source": "recovery", **({"sweep_id": str(row.sweep_id)} if row.sweep_id else {})}
            if await enqueue(queue, RUN_JOB, {"backtest_id": str(row.id)}, key=key, meta=meta) is not None:
                requeued += 1
                log.warning("backtest_orphan_requeued", backtest_id=str(row.id))
        elif saq_job.status in _FINAL:
            reason = (
                f"job {saq_job.status.value} without finishing the backtest: {saq_job.error or 'no error'}"
            )
            if await _fail(engine, row.id, reason):
                failed += 1
                log.warning(
                    "backtest_orphan_failed", backtest_id=str(row.id), job_status=saq_job.status.value
                )
    return {"requeued": requeued, "failed": failed}


async def _fail(engine: AsyncEngine, backtest_id: uuid.UUID, reason: str) -> bool:
    async with engine.begin() as conn:
        done = await conn.execute(
            update(Backtest)
            .where(Backtest.id == backtest_id, Backtest.status.in_(ACTIVE_STATUSES))
            .values(status="failed", error=reason[:2000], finished_at=func.now())
        )
    return done.rowcount == 1
