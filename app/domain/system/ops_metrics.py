"""Operational gauges for Prometheus, refreshed by the /metrics scrape itself.

Dependency health, pool use, queue state, trading states and schedule lag are not counted by any request
path, so they are sampled here: at most once per `metrics_refresh_seconds` per process, only when
somebody scrapes (no background task, nothing to do for an unscraped process), each probe time-boxed so
that /metrics still answers, with the failing dependency's `*_up` at 0, while PostgreSQL or Redis is down.
The values are fleet-wide (the same from every API process), except the pool gauges, which are this
process's own.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from app.domain.accounts.models import Account
from app.domain.jobs.models import JobSchedule
from app.domain.jobs.services import jobs_health
from app.lib import metrics
from app.lib.log import ThrottledWarning, get_logger

log = get_logger("app.metrics")
_warn_probe_failed = ThrottledWarning(log, "ops_metrics_probe_failed", interval=60.0)

PROBE_TIMEOUT_SECONDS = 2.0
TRADING_STATES = ("active", "reduce_only", "halted")

# The refresh deadline and lock are per app state, not per process: a process that builds several apps
# (the tests do) must not let one app's interval hold back another's refresh.
_REFRESH_AT = "ops_metrics_next_refresh"
_REFRESH_LOCK = "ops_metrics_refresh_lock"


async def refresh(state: Any, min_interval: float) -> None:
    """Bring the gauges up to date unless they were refreshed less than `min_interval` seconds ago."""
    if time.monotonic() < getattr(state, _REFRESH_AT, 0.0):
        return
    lock = getattr(state, _REFRESH_LOCK, None)
    if lock is None:
        lock = asyncio.Lock()
        setattr(state, _REFRESH_LOCK, lock)
    async with lock:  # concurrent scrapes share one refresh
        if time.monotonic() < getattr(state, _REFRESH_AT, 0.0):
            return
        _observe_pools(state)
        await asyncio.gather(_probe_database(state), _probe_redis(state), _probe_queue(state))
        setattr(state, _REFRESH_AT, time.monotonic() + min_interval)


def _observe_pools(state: Any) -> None:
    pool = state.engine.pool
    in_use = pool.checkedout()
    metrics.DB_POOL_CONNECTIONS.labels("sqlalchemy", "in_use").set(in_use)
    metrics.DB_POOL_CONNECTIONS.labels("sqlalchemy", "idle").set(pool.checkedin())
    metrics.DB_POOL_MAX.labels("sqlalchemy").set(pool.size() + max(pool._max_overflow, 0))
    order_pool = getattr(state, "order_pool", None)
    if order_pool is not None:
        size, idle = order_pool.get_size(), order_pool.get_idle_size()
        metrics.DB_POOL_CONNECTIONS.labels("orders", "in_use").set(size - idle)
        metrics.DB_POOL_CONNECTIONS.labels("orders", "idle").set(idle)
        metrics.DB_POOL_MAX.labels("orders").set(order_pool.get_max_size())


async def _timed(probe: str, coro: Any) -> tuple[Any, float] | None:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(coro, PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        _warn_probe_failed(probe=probe, error=repr(exc)[:200])
        return None
    return result, time.perf_counter() - started


async def _database_sample(engine: Any) -> tuple[dict[str, int], dict[str, float]]:
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        states = dict(
            (
                await conn.execute(
                    select(Account.trading_state, func.count()).group_by(Account.trading_state)
                )
            ).all()
        )
        schedules = (
            await conn.execute(select(JobSchedule.name, JobSchedule.next_run_at).where(JobSchedule.enabled))
        ).all()
    overdue = {name: max((now - due).total_seconds(), 0.0) if due else 0.0 for name, due in schedules}
    return states, overdue


async def _probe_database(state: Any) -> None:
    sampled = await _timed("database", _database_sample(state.engine))
    metrics.DB_UP.set(0 if sampled is None else 1)
    if sampled is None:
        return
    (states, overdue), seconds = sampled
    metrics.DB_PING_SECONDS.set(seconds)
    for trading_state in TRADING_STATES:
        metrics.ACCOUNTS.labels(trading_state).set(states.get(trading_state, 0))
    for name, lag in overdue.items():
        metrics.SCHEDULE_OVERDUE.labels(name).set(lag)


async def _probe_redis(state: Any) -> None:
    if state.settings.redis_url is None:  # embedded mode: no Redis to watch
        return
    sampled = await _timed("redis", state.kv.ping())
    metrics.REDIS_UP.set(0 if sampled is None else 1)
    if sampled is not None:
        metrics.REDIS_PING_SECONDS.set(sampled[1])


async def _probe_queue(state: Any) -> None:
    if state.queue is None:
        return
    sampled = await _timed("queue", jobs_health(state.queue, state.kv))
    if sampled is None:
        return
    health = sampled[0]
    metrics.WORKERS_ALIVE.set(health.workers_alive)
    metrics.QUEUE_OLDEST_AGE.set(health.oldest_queued_age_seconds or 0.0)
    if health.failures_last_hour is not None:
        metrics.JOB_FAILURES_LAST_HOUR.set(health.failures_last_hour)
