"""Persistent cron schedules (table `job_schedules`), driven by a loop inside every worker process.

Exactly once with any number of workers: a tick claims one due row at a time with
`SELECT ... FOR UPDATE SKIP LOCKED`, enqueues the run under the deterministic SAQ key
`schedule:<name>:<due epoch seconds>` and advances `next_run_at` in the same transaction. A second
worker skips the locked row, and once the first commits the row is no longer due. The key also covers
the one gap the database cannot: if the enqueue reached Redis but the commit was lost, the retry
produces the same key, which SAQ refuses while that run is still queued or running.

Missed runs: `next_run_at` always advances to the first cron time *after now*, so however many due times
went by while no worker was running, the schedule runs once on start-up (keyed by the oldest missed due
time), then resumes on its cron. Nothing is back-filled.

Schedules whose function is not registered in this process are left untouched (so a worker that does
know the function can still run them) and logged as a warning at most once a minute each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter
from saq import Queue
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.jobs.models import JobSchedule
from app.lib.jobs import enqueue, registry, validate_kwargs
from app.lib.log import get_logger

log = get_logger("app.scheduler")

POLL_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
WARN_EVERY_SECONDS = 60.0
MAX_RUNS_PER_TICK = 100

T = JobSchedule.__table__


class ScheduleError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError("timezone", f"Unknown timezone {name!r}") from exc


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after `after` matching `cron` read in `timezone` (DST-aware), in UTC.

    Five fields are minute resolution; a sixth field is seconds (croniter's convention)."""
    tz = zone(timezone)
    if not croniter.is_valid(cron):
        raise ScheduleError("cron", f"Invalid cron expression {cron!r}")
    try:
        fire = croniter(cron, after.astimezone(tz)).get_next(datetime)
    except (CroniterBadCronError, CroniterNotAlphaError) as exc:
        raise ScheduleError("cron", f"Invalid cron expression {cron!r}: {exc}") from exc
    except CroniterBadDateError as exc:
        raise ScheduleError("cron", f"Cron expression {cron!r} never fires") from exc
    return fire.astimezone(UTC)


def schedule_job_key(name: str, due: datetime) -> str:
    return f"schedule:{name}:{int(due.timestamp())}"


class Scheduler:
    def __init__(self, engine: AsyncEngine, queue: Queue, worker_id: str | None = None) -> None:
        self.engine = engine
        self.queue = queue
        self.worker_id = worker_id
        self._last_unknown_check = float("-inf")

    async def tick(self) -> list[str]:
        """Enqueue every run due now; returns the job keys enqueued by this process."""
        keys: list[str] = []
        known = sorted(registry())
        for _ in range(MAX_RUNS_PER_TICK):
            outcome = await self._claim_one(known)
            if outcome is None:
                break
            if outcome:
                keys.append(outcome)
        await self._warn_unknown(known)
        return keys

    async def _claim_one(self, known: list[str]) -> str | None:
        """Handle one due row in its own transaction, so a failure affects only that schedule and other
        workers can take the next row meanwhile. None when nothing is due; "" when the row was advanced
        without a run."""
        async with self.engine.begin() as conn:
            now = await conn.scalar(select(func.now()))
            row = (
                await conn.execute(
                    select(T.c.name, T.c.function, T.c.cron, T.c.kwargs, T.c.timezone, T.c.next_run_at)
                    .where(
                        T.c.enabled,
                        T.c.function.in_(known),
                        or_(T.c.next_run_at <= now, T.c.next_run_at.is_(None)),
                    )
                    .order_by(T.c.next_run_at.asc().nulls_first())
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if row is None:
                return None
            try:
                following = next_fire(row.cron, row.timezone, now)
            except ScheduleError as exc:
                # Only rows written around the API can get here; park the row instead of retrying it
                # twice a second forever.
                log.error("schedule_invalid_disabled", schedule=row.name, error=exc.message)
                await conn.execute(
                    update(T).where(T.c.name == row.name).values(enabled=False, next_run_at=None)
                )
                return ""
            if row.next_run_at is None:
                # Inserted without a next run (plain SQL): start on the cron, not with an immediate run.
                await conn.execute(update(T).where(T.c.name == row.name).values(next_run_at=following))
                return ""
            try:
                kwargs = validate_kwargs(row.function, row.kwargs or {})
            except msgspec.ValidationError as exc:
                # The job's kwargs changed shape since the schedule was saved: skip this run (and say
                # so) rather than enqueue a job that can only fail.
                log.error("schedule_kwargs_invalid", schedule=row.name, function=row.function, error=str(exc))
                await conn.execute(update(T).where(T.c.name == row.name).values(next_run_at=following))
                return ""
            key = schedule_job_key(row.name, row.next_run_at)
            job = await enqueue(
                self.queue,
                row.function,
                kwargs,
                key=key,
                meta={
                    "schedule": row.name,
                    "due_at": row.next_run_at.isoformat(),
                    "claimed_by": self.worker_id,
                },
            )
            if job is None:
                log.info("schedule_run_already_enqueued", schedule=row.name, key=key)
            else:
                log.info("schedule_run_enqueued", schedule=row.name, key=key, function=row.function)
            await conn.execute(
                update(T).where(T.c.name == row.name).values(last_run_at=now, next_run_at=following)
            )
            return key

    async def _warn_unknown(self, known: list[str]) -> None:
        now = time.monotonic()
        if now - self._last_unknown_check < WARN_EVERY_SECONDS:
            return
        self._last_unknown_check = now
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(T.c.name, T.c.function).where(
                        T.c.enabled, T.c.function.not_in(known), T.c.next_run_at <= func.now()
                    )
                )
            ).all()
        for row in rows:
            log.warning("schedule_function_not_registered", schedule=row.name, function=row.function)

    async def run(self) -> None:
        delay = POLL_SECONDS
        while True:
            try:
                await self.tick()
                delay = POLL_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or queue down: keep the worker alive, retry with backoff
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                log.warning("scheduler_tick_failed", error=repr(exc)[:300], retry_in=delay)
            await asyncio.sleep(delay)


def start_scheduler(ctx: dict[str, Any]) -> asyncio.Task:
    """The schedule loop's task; `running_scheduler` starts it with a worker and cancels it after."""
    worker = ctx.get("worker")
    scheduler = Scheduler(ctx["engine"], ctx["queue"], getattr(worker, "id", None))
    ctx["scheduler"] = scheduler
    return asyncio.create_task(scheduler.run(), name="job-scheduler")


@contextlib.asynccontextmanager
async def running_scheduler(ctx: dict[str, Any]) -> AsyncIterator[None]:
    """The schedule loop for as long as a worker runs (registered by app/server/wiring.py)."""
    task = start_scheduler(ctx)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
