"""Job registry and SAQ queue/worker wiring.

Every job function is declared with `@job` and a msgspec Struct describing its kwargs, so
`POST /api/v1/jobs` can validate input before enqueueing and only registered functions can ever run.
`@job` only marks the function; the composition root (`app.server.wiring.wire()`) registers the job
modules it lists with `register_jobs`, the same list for the API and the worker, and `registry()` refuses
to answer before it did (app/lib/wired.py).

We drive SAQ directly instead of through litestar-saq: the worker must share our engine/KV lifecycle
(startup/shutdown hooks below), run in-process in the embedded mode and as `tradedesk worker` in
production with the same code, and pick a Redis or PostgreSQL queue from one URL setting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgspec
from saq import Queue, Worker
from saq.job import Status
from saq.queue.redis import RedisQueue

from app.lib.db import libpq_url
from app.lib.kv import make_redis
from app.lib.log import get_logger, job_log_context
from app.lib.settings import Settings
from app.lib.tracing import inject_into, job_span
from app.lib.wired import require_wired

log = get_logger("app.jobs")

JobFn = Callable[..., Awaitable[Any]]


class NoKwargs(msgspec.Struct, forbid_unknown_fields=True):
    pass


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    fn: JobFn
    kwargs_type: type[msgspec.Struct]
    description: str
    timeout: int
    retries: int
    public: bool
    heartbeat: int = 0


REGISTRY: dict[str, JobSpec] = {}
_SPEC_ATTR = "tradedesk_job_spec"


def job(
    name: str,
    kwargs_type: type[msgspec.Struct] = NoKwargs,
    *,
    timeout: int = 300,
    retries: int = 1,
    public: bool = True,
    heartbeat: int = 0,
) -> Callable[[JobFn], JobFn]:
    """Declare `fn(ctx, **kwargs)` as job `name` (registered by `register_jobs`). `retries` is SAQ's total
    number of attempts.

    `heartbeat` (seconds, 0 = off): while the job runs, its worker touches it every `heartbeat / 4`
    seconds (`keep_alive`); a job untouched for longer is taken for dead by SAQ's sweep and retried,
    long before its timeout: what makes a job of a killed worker come back within a minute. The touch
    comes from the worker's event loop, not from the job's progress, so a long step that reports
    nothing (a bar load waiting on a lock, a long simulation in its thread) is not taken for dead.
    """

    def register(fn: JobFn) -> JobFn:
        async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
            job_obj = ctx.get("job")
            meta = getattr(job_obj, "meta", None)
            # The span and the log context cover the whole run, so job_started/job_finished carry them.
            with job_log_context(meta, getattr(job_obj, "key", None)), job_span(name, meta):
                return await observed(ctx, job_obj, **kwargs)

        async def observed(ctx: dict[str, Any], job_obj: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            log.info("job_started", function=name, key=getattr(job_obj, "key", None),
                     attempt=getattr(job_obj, "attempts", None))
            beat = keep_alive(job_obj)
            try:
                result = await fn(ctx, **kwargs)
            except asyncio.CancelledError:
                elapsed = time.perf_counter() - started
                if _timed_out(ctx, job_obj, elapsed):
                    log.warning("job_timed_out", function=name, key=getattr(job_obj, "key", None),
                                timeout=getattr(job_obj, "timeout", None))
                    _observe(ctx, name, "timeout", elapsed)
                    await _record_failure(ctx)
                else:
                    log.warning("job_cancelled", function=name, key=getattr(job_obj, "key", None))
                raise
            except Exception as exc:
                log.exception("job_failed", function=name, key=getattr(job_obj, "key", None), error=str(exc)[:500])
                _observe(ctx, name, "failed", time.perf_counter() - started)
                await _record_failure(ctx)
                raise
            finally:
                if beat is not None:
                    beat.cancel()
            _observe(ctx, name, "complete", time.perf_counter() - started)
            log.info("job_finished", function=name, key=getattr(job_obj, "key", None),
                     duration_ms=round((time.perf_counter() - started) * 1000, 2))
            return result

        run.__qualname__ = name
        run.__name__ = name
        spec = JobSpec(name, run, kwargs_type, (fn.__doc__ or "").strip().split("\n")[0], timeout, retries, public, heartbeat)
        setattr(fn, _SPEC_ATTR, spec)
        return fn

    return register


def keep_alive(job_obj: Any) -> asyncio.Task[None] | None:
    """Touch a job with a heartbeat every quarter of it while it runs (None: the job has none)."""
    heartbeat = getattr(job_obj, "heartbeat", 0) or 0
    if heartbeat <= 0:
        return None

    async def beat() -> None:
        while True:
            await asyncio.sleep(heartbeat / 4)
            try:
                await job_obj.update()  # sets `touched`; keeps the stored status (abort stays abort)
            except Exception as exc:  # Redis blip: the next beat, or the sweep, settles it
                log.warning("job_heartbeat_failed", key=getattr(job_obj, "key", None), error=repr(exc)[:200])

    return asyncio.create_task(beat())


def _observe(ctx: dict[str, Any], name: str, status: str, seconds: float) -> None:
    from app.lib.metrics import JOB_DURATION, JOB_LAST_SUCCESS, JOB_RUNS

    JOB_RUNS.labels(function=name, status=status).inc()
    JOB_DURATION.labels(function=name).observe(seconds)
    if status == "complete":
        JOB_LAST_SUCCESS.labels(function=name).set_to_current_time()


# Prometheus counters are per process, so the fleet-wide "failures in the last hour" is kept in the KV:
# one INCR bucket per minute, each expiring after two hours; readers sum the last 60 buckets.
FAILURE_BUCKET_TTL = 2 * 3600


def failure_bucket_key(epoch_minute: int) -> str:
    return f"jobs:failures:{epoch_minute}"


async def _record_failure(ctx: dict[str, Any]) -> None:
    kv = ctx.get("kv")
    if kv is None:
        return
    try:
        await kv.incr_window(failure_bucket_key(int(time.time() // 60)), FAILURE_BUCKET_TTL)
    except Exception as exc:  # counting must never change how the job itself ends
        log.warning("job_failure_count_failed", error=repr(exc)[:200])


def _timed_out(ctx: dict[str, Any], job_obj: Any, elapsed: float) -> bool:
    """SAQ enforces `timeout` by cancelling the task, exactly as it does for an abort or a worker
    shutdown; only the first is a failure of the job."""
    limit = getattr(job_obj, "timeout", 0) or 0
    if not limit or elapsed < limit * 0.9:
        return False
    worker = ctx.get("worker")
    if worker is None:
        return True
    if worker.event.is_set():
        return False
    task_ctx = worker.job_task_contexts.get(job_obj)
    return not (task_ctx and task_ctx.get("aborted") is not None)


def declared_jobs(module: ModuleType) -> list[JobSpec]:
    """The jobs `module` itself declares with `@job` (not the ones it imports)."""
    return [
        spec
        for value in vars(module).values()
        if isinstance(spec := getattr(value, _SPEC_ATTR, None), JobSpec)
        and getattr(value, "__module__", None) == module.__name__
    ]


def register_jobs(*modules: ModuleType) -> dict[str, JobSpec]:
    """Register every job the given modules declare. A module that declares none is an error (a wrong
    entry in the wiring list), as is a job name declared twice."""
    for module in modules:
        specs = declared_jobs(module)
        if not specs:
            raise ValueError(f"{module.__name__} declares no @job function")
        for spec in specs:
            existing = REGISTRY.get(spec.name)
            if existing is not None and existing is not spec:
                raise ValueError(f"job {spec.name!r} is declared twice ({module.__name__})")
            REGISTRY[spec.name] = spec
    return REGISTRY


def registry() -> dict[str, JobSpec]:
    """Every registered job, by name; `NotWired` before `wire()` ran."""
    require_wired("the job registry")
    return REGISTRY


def validate_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    spec = registry()[name]
    value = msgspec.convert(kwargs, spec.kwargs_type, strict=False)
    return msgspec.to_builtins(value)


class SweepSafeRedisQueue(RedisQueue):
    """SAQ's Redis queue with a sweep that leaves alone a job a worker is dequeuing right now.

    Dequeuing is two steps: BLMOVE moves the job id from `queued` to `active`, then the worker marks the
    job ACTIVE. SAQ 0.26's sweep treats any job in `active` whose status is not ACTIVE as stuck, so a
    sweep that runs between those steps (typically the start-up sweep of a worker that starts while jobs
    are waiting, i.e. every deploy with a backlog) aborts a job that is about to run: `abort` drops it from
    `active`, the worker marks it ACTIVE and runs it anyway, and if that worker dies before the abort
    lands nothing ever sweeps the job again: it stays ACTIVE forever (seen here in the worker-kill fault
    test on a 2 GHz machine). Upstream: tobymao/saq#124 (closed without a fix) and #277 (open).

    Here a job found QUEUED in `active` is swept only once it has stayed so for DEQUEUE_GRACE_SECONDS
    (a worker that took it normally marks it ACTIVE within milliseconds); a real orphan, whose worker
    died between the two steps, is recovered one grace period later. The rest of the method is SAQ's.
    """

    DEQUEUE_GRACE_SECONDS = 30.0

    async def _orphaned(self, job: Any) -> bool:
        # One marker per attempt: a retried job goes through the same two steps again.
        marker = self.namespace(f"dequeuing:{job.id}:{job.attempts}")
        first_seen = await self.redis.get(marker)
        if first_seen is None:
            expiry = int(self.DEQUEUE_GRACE_SECONDS * 4) + 60
            await self.redis.set(marker, repr(time.time()), nx=True, ex=expiry)
            return False
        return time.time() - float(first_seen) >= self.DEQUEUE_GRACE_SECONDS

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if not self._cleanup_script:
            self._cleanup_script = self.redis.register_script(
                """
                local id_jobs = {}
                if redis.call('EXISTS', KEYS[1]) == 0 then
                    redis.call('SETEX', KEYS[1], ARGV[1], 1)
                    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
                        id_jobs[i] = {v, redis.call('GET', v)}
                    end
                end
                return id_jobs
                """
            )
        id_jobs = await self._cleanup_script(keys=[self._sweep, self._active], args=[lock], client=self.redis)
        swept = []
        stuck = []
        for job_id, job_bytes in id_jobs:
            job = self.deserialize(job_bytes)
            if job:
                if job.status == Status.QUEUED and not await self._orphaned(job):
                    continue  # being dequeued: its worker is about to mark it ACTIVE
                if job.status != Status.ACTIVE or job.stuck:
                    log.info("job_swept", key=job.key, status=job.status.value, attempts=job.attempts)
                    swept.append(job_id)
                    stuck.append(job)
            else:
                swept.append(job_id)
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.lrem(self._active, 0, job_id).zrem(self._incomplete, job_id).execute()
                log.info("job_swept_missing", job_id=job_id.decode())
        # All at once: each recovery waits up to `abort` seconds for a (usually dead) worker to confirm the
        # abort, and SAQ does them one after another, so the N jobs of a killed worker came back over 5*N s.
        await asyncio.gather(*(self._recover(job, abort) for job in stuck))
        return [job_id.decode("utf-8") for job_id in swept]

    async def _recover(self, job: Any, abort: float) -> None:
        await self.abort(job, error=self.swept_error_message)
        try:
            await job.refresh(abort)
        except TimeoutError:
            log.info("job_swept_abort_unconfirmed", key=job.key)
        if job.retryable:
            await self.retry(job, error=self.swept_error_message)
        else:
            await self.finish(job, Status.ABORTED, error=self.swept_error_message)


def make_queue(settings: Settings) -> Queue:
    url = settings.effective_queue_url
    if url is None:
        raise RuntimeError("no queue URL configured")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return SweepSafeRedisQueue(make_redis(url), name=settings.queue_name)
    from saq.queue.postgres import PostgresQueue

    return PostgresQueue.from_url(libpq_url(url), name=settings.queue_name, min_size=1, max_size=8)


# SAQ's default (0) blocks in BLMOVE forever, but our Redis clients time out reads after 1 s (make_redis):
# the server then hands the next job to the abandoned BLMOVE, and that job sits in the active list unrun
# until the sweep aborts it ("swept") or retries it. Measured here: a retry delayed 15 s, and jobs lost.
# Blocking for less than the socket timeout makes every BLMOVE end on the server before the client
# gives up on it.
DEQUEUE_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ShutdownBudget:
    """How a worker spends WORKER_SHUTDOWN_SECONDS after SIGTERM: running jobs may finish for `grace`
    seconds, are then cancelled (SAQ re-queues them; a backtest row goes back to `queued`) with
    `cancel` seconds to unwind, and what is left closes pools. `total` is the hard bound the CLI
    enforces (a simulation thread cannot be cancelled, and interpreter exit would wait for it)."""

    total: float
    grace: float
    cancel: float


def shutdown_budget(total: float) -> ShutdownBudget:
    cancel = min(2.0, total / 4)
    return ShutdownBudget(total=total, grace=max(total - 2 * cancel, 0.0), cancel=cancel)


def make_worker(
    queue: Queue,
    settings: Settings,
    *,
    startup: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    shutdown: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    concurrency: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Worker:
    budget = shutdown_budget(settings.worker_shutdown_seconds)
    return Worker(
        queue,
        functions=[(spec.name, spec.fn) for spec in registry().values()],
        concurrency=concurrency or settings.worker_concurrency,
        startup=startup,
        shutdown=shutdown,
        # Publish worker info (our heartbeat) every 5 s; sweep stuck jobs every 10 s.
        timers={"worker_info": 5, "sweep": 10, "abort": 1, "schedule": 1},
        shutdown_grace_period_s=budget.grace,  # type: ignore[arg-type]  (SAQ passes it to wait_for)
        cancellation_hard_deadline_s=budget.cancel,
        metadata=metadata or {},
        dequeue_timeout=DEQUEUE_TIMEOUT_SECONDS,
    )


async def enqueue(
    queue: Queue,
    name: str,
    kwargs: dict[str, Any],
    *,
    key: str | None = None,
    timeout: int | None = None,
    retries: int | None = None,
    scheduled: float = 0,
    meta: dict[str, Any] | None = None,
) -> Any:
    spec = registry()[name]
    options: dict[str, Any] = {
        "timeout": timeout if timeout is not None else spec.timeout,
        "retries": retries if retries is not None else spec.retries,
        "retry_delay": 1.0,
        "retry_backoff": True,
        "heartbeat": spec.heartbeat,
        "scheduled": scheduled,
    }
    if key:
        options["key"] = key
    meta = inject_into(meta or {})
    if meta:
        options["meta"] = meta
    # As `kwargs=`, never spread: SAQ would take a job argument named like a Job field (timeout, key,
    # meta, ...) as that job option.
    return await queue.enqueue(name, kwargs=kwargs, **options)
