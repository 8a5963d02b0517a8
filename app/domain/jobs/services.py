"""Jobs on the SAQ queue (submit, inspect, abort, queue health) and the persistent schedules table."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from saq import Queue
from saq.job import TERMINAL_STATUSES, Job, Status
from saq.queue.redis import RedisQueue
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.jobs.models import JobSchedule
from app.domain.jobs.scheduler import ScheduleError, next_fire
from app.domain.jobs.schemas import (
    JobCreate,
    JobOut,
    JobsHealth,
    QueueStats,
    ScheduleCreate,
    ScheduleOut,
    SchedulePatch,
    WorkerOut,
)
from app.lib.db import tx
from app.lib.errors import AlreadyExists, Conflict, Invalid, NotFound, QueueUnavailable, field_from_message
from app.lib.jobs import JobSpec, enqueue, failure_bucket_key, registry, validate_kwargs
from app.lib.kv import KV
from app.lib.log import get_logger
from app.lib.metrics import QUEUE_DEPTH

log = get_logger("app.jobs.api")

T = JobSchedule.__table__
SCHEDULE_COLS = (
    T.c.name,
    T.c.function,
    T.c.cron,
    T.c.kwargs,
    T.c.enabled,
    T.c.timezone,
    T.c.last_run_at,
    T.c.next_run_at,
    T.c.created_at,
    T.c.updated_at,
)
# A queued job older than this means the workers are not keeping up (or none is consuming).
STALE_QUEUE_SECONDS = 300
# As long as SAQ keeps a finished job's record by default (its `ttl`), with margin.
ABORT_NOTE_TTL = 3600


def registered(name: str, *, public_only: bool) -> JobSpec:
    jobs = registry()
    spec = jobs.get(name)
    if spec is None or (public_only and not spec.public):
        raise Invalid(
            f"Unknown job function {name!r}",
            "function",
            functions=sorted(n for n, s in jobs.items() if s.public or not public_only),
        )
    return spec


def checked_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_kwargs(name, kwargs)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_from_message(message, default="")
        raise Invalid(
            f"Invalid kwargs for {name}: {message}",
            errors=[{"field": f"kwargs.{field}" if field else "kwargs", "message": message}],
        ) from exc


def require_queue(queue: Queue | None) -> Queue:
    if queue is None:
        raise QueueUnavailable("No job queue is configured")
    return queue


def _ms(value: int) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None


def job_out(job: Job) -> JobOut:
    return JobOut(
        key=job.key,
        function=job.function,
        status=job.status.value,
        progress=float(job.progress or 0.0),
        attempts=job.attempts,
        retries=job.retries,
        timeout=job.timeout,
        kwargs=job.kwargs or {},
        result=job.result,
        error=job.error,
        meta=job.meta or {},
        queued_at=_ms(job.queued),
        scheduled_at=datetime.fromtimestamp(job.scheduled, UTC) if job.scheduled else None,
        started_at=_ms(job.started),
        completed_at=_ms(job.completed),
        worker_id=job.worker_id,
    )


async def submit_job(queue: Queue, data: JobCreate, user: Principal, request_id: str | None) -> Job:
    registered(data.function, public_only=True)
    kwargs = checked_kwargs(data.function, data.kwargs)
    scheduled = data.scheduled_at.timestamp() if data.scheduled_at else 0
    # Who asked and which request did it: the job's logs and the access log join on these.
    meta = {"user_id": str(user.user_id), "request_id": request_id, "source": "api"}
    job = await enqueue(
        queue,
        data.function,
        kwargs,
        timeout=data.timeout,
        retries=data.retries,
        scheduled=int(scheduled),
        meta=meta,
    )
    if job is None:  # only possible on a key collision, and API jobs get fresh keys
        raise Conflict("A job with this key is already queued")
    log.info("job_submitted", key=job.key, function=data.function, user_id=meta["user_id"])
    return job


async def get_job(queue: Queue, key: str) -> Job:
    job = await queue.job(key)
    if job is None:
        raise NotFound("Job")
    return job


def _abort_note_key(key: str) -> str:
    return f"jobs:aborted_by:{key}"


async def describe(job: Job, kv: KV) -> JobOut:
    out = job_out(job)
    if job.status in (Status.ABORTING, Status.ABORTED) and job.error in (None, "abort"):
        # A running job that reports progress rewrites its whole stored record from the worker's copy,
        # which drops the reason `queue.abort` wrote; the API keeps its own note of who aborted it.
        try:
            note = await kv.get(_abort_note_key(job.key))
        except Exception:
            note = None
        if note:
            out.error = note.decode()
    return out


async def abort_job(queue: Queue, kv: KV, key: str, user: Principal) -> Job:
    job = await get_job(queue, key)
    if job.status in TERMINAL_STATUSES:
        raise Conflict(f"Job already finished ({job.status.value})", job_status=job.status.value)
    if job.status == Status.ABORTING:
        return job
    was_waiting = job.status in (Status.NEW, Status.QUEUED)
    reason = f"aborted by {user.email}"
    try:
        await kv.set(_abort_note_key(key), reason.encode(), ttl=ABORT_NOTE_TTL)
    except Exception as exc:
        log.warning("abort_note_failed", key=key, error=repr(exc)[:200])
    await queue.abort(job, reason)
    current = await queue.job(key) or job
    if was_waiting and current.status == Status.ABORTING:
        # SAQ finishes an abort itself only for jobs in the ready list; a job waiting for its scheduled
        # time or a retry back-off is not there and no worker holds it, so it would stay "aborting".
        await queue.finish(current, Status.ABORTED, error=reason)
        current = await queue.job(key) or current
    log.info("job_aborted", key=key, by=str(user.user_id), status=current.status.value)
    return current


def _worker_out(worker_id: str, info: dict[str, Any]) -> WorkerOut:
    stats = info.get("stats") or {}
    uptime = stats.get("uptime")
    return WorkerOut(
        id=worker_id,
        queue=info.get("queue_key"),
        uptime_seconds=round(uptime / 1000, 3) if uptime is not None else None,
        complete=int(stats.get("complete", 0)),
        failed=int(stats.get("failed", 0)),
        retried=int(stats.get("retried", 0)),
        aborted=int(stats.get("aborted", 0)),
        metadata=info.get("metadata"),
    )


async def queue_stats(queue: Queue) -> QueueStats:
    info = await queue.info()
    workers = [_worker_out(wid, winfo) for wid, winfo in (info.get("workers") or {}).items()]
    queued = int(info.get("queued", 0))
    QUEUE_DEPTH.set(queued)
    return QueueStats(
        name=str(info.get("name", queue.name)),
        queued=queued,
        active=int(info.get("active", 0)),
        scheduled=int(info.get("scheduled", 0)),
        complete=sum(w.complete for w in workers),
        failed=sum(w.failed for w in workers),
        retried=sum(w.retried for w in workers),
        aborted=sum(w.aborted for w in workers),
        workers=len(workers),
        worker_details=workers,
    )


async def oldest_queued_age(queue: Queue) -> float | None:
    """Seconds the longest-waiting ready job has waited since it became due (None: nothing waiting)."""
    now = time.time()
    if isinstance(queue, RedisQueue):
        # The ready list is FIFO (RPUSH, consumed from the left): index 0 is the oldest.
        head = await queue.redis.lindex(queue.namespace("queued"), 0)
        job = await queue.job(queue.job_key_from_id(head.decode())) if head else None
        waiting = [(job.queued, job.scheduled)] if job is not None else []
    else:
        info = await queue.info(jobs=True, limit=1000)
        waiting = [
            (int(j.get("queued", 0)), int(j.get("scheduled", 0)))
            for j in info.get("jobs", [])
            if j.get("status") == Status.QUEUED
        ]
    ready_since = [max(queued / 1000, float(scheduled)) for queued, scheduled in waiting]
    ready_since = [t for t in ready_since if t <= now]
    if not ready_since:
        return None
    return round(now - min(ready_since), 3)


async def failures_last_hour(kv: KV) -> int:
    minute = int(time.time() // 60)
    counts = await kv.get_counters(*(failure_bucket_key(m) for m in range(minute - 59, minute + 1)))
    return sum(counts)


async def jobs_health(queue: Queue, kv: KV) -> JobsHealth:
    info = await queue.info()
    workers = len(info.get("workers") or {})
    depth = int(info.get("queued", 0))
    QUEUE_DEPTH.set(depth)
    age = await oldest_queued_age(queue)
    problems: list[str] = []
    try:
        failures: int | None = await failures_last_hour(kv)
    except Exception as exc:
        failures = None
        problems.append(f"failure counters unavailable ({type(exc).__name__})")
    if workers == 0:
        problems.insert(0, "no worker seen alive in the last 6 s")
    if age is not None and age > STALE_QUEUE_SECONDS:
        problems.append(f"oldest queued job has waited {age:.0f} s")
    status = "down" if workers == 0 else ("degraded" if problems else "ok")
    return JobsHealth(
        status=status,
        workers_alive=workers,
        queue_depth=depth,
        active=int(info.get("active", 0)),
        oldest_queued_age_seconds=age,
        failures_last_hour=failures,
        detail="; ".join(problems) or None,
    )


# --- schedules --------------------------------------------------------------------------------------


def _next_or_422(cron: str, timezone: str) -> datetime:
    try:
        return next_fire(cron, timezone, datetime.now(UTC))
    except ScheduleError as exc:
        raise Invalid(exc.message, exc.field) from exc


def _schedule(row: Any) -> ScheduleOut:
    return ScheduleOut(**row._mapping)


async def list_schedules(conn: AsyncConnection) -> list[ScheduleOut]:
    rows = (await conn.execute(select(*SCHEDULE_COLS).order_by(T.c.name))).all()
    return [_schedule(r) for r in rows]


async def get_schedule(conn: AsyncConnection, name: str, *, for_update: bool = False) -> ScheduleOut:
    stmt = select(*SCHEDULE_COLS).where(T.c.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound("Schedule")
    return _schedule(row)


async def create_schedule(conn: AsyncConnection, data: ScheduleCreate) -> ScheduleOut:
    registered(data.function, public_only=False)
    kwargs = checked_kwargs(data.function, data.kwargs)
    next_run = _next_or_422(data.cron, data.timezone)
    async with tx(conn):
        try:
            row = (
                await conn.execute(
                    insert(T)
                    .values(
                        name=data.name,
                        function=data.function,
                        cron=data.cron,
                        kwargs=kwargs,
                        enabled=data.enabled,
                        timezone=data.timezone,
                        next_run_at=next_run if data.enabled else None,
                    )
                    .returning(*SCHEDULE_COLS)
                )
            ).one()
        except IntegrityError as exc:
            raise AlreadyExists(f"Schedule {data.name!r} already exists") from exc
    return _schedule(row)


async def update_schedule(conn: AsyncConnection, name: str, data: SchedulePatch) -> ScheduleOut:
    async with tx(conn):
        current = await get_schedule(conn, name, for_update=True)
        changes: dict[str, Any] = {}
        function = data.function if data.function is not None else current.function
        if data.function is not None or data.kwargs is not None:
            # Built-in schedules may name jobs this API process has not loaded; only re-check the job
            # when the patch touches it, so they can still be paused or re-timed.
            registered(function, public_only=False)
            changes["function"] = function
            changes["kwargs"] = checked_kwargs(
                function, data.kwargs if data.kwargs is not None else current.kwargs
            )
        cron = data.cron if data.cron is not None else current.cron
        timezone = data.timezone if data.timezone is not None else current.timezone
        enabled = data.enabled if data.enabled is not None else current.enabled
        timing_changed = (cron, timezone) != (current.cron, current.timezone)
        if timing_changed:
            next_run = _next_or_422(cron, timezone)  # validated even when the schedule is paused
        changes.update(cron=cron, timezone=timezone, enabled=enabled)
        if not enabled:
            changes["next_run_at"] = None
        elif timing_changed or not current.enabled or current.next_run_at is None:
            # Resuming starts from the next cron time: runs missed while paused are not caught up.
            changes["next_run_at"] = next_run if timing_changed else _next_or_422(cron, timezone)
        await conn.execute(update(T).where(T.c.name == name).values(**changes, updated_at=func.now()))
        return await get_schedule(conn, name)


async def delete_schedule(conn: AsyncConnection, name: str) -> None:
    async with tx(conn):
        result = await conn.execute(delete(T).where(T.c.name == name))
    if result.rowcount == 0:
        raise NotFound("Schedule")
