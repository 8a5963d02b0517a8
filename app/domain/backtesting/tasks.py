"""Backtest jobs: `backtest.run` (one simulation) and `backtest.fan_out` (enqueue a sweep's runs).

`backtest.run` is safe to run twice for one backtest (a SAQ retry, a duplicate enqueue, two workers):
every status change is conditional on the row still being `queued`/`running`, and the result row is
written with the completing status update in one transaction, with ON CONFLICT DO NOTHING, so a
backtest gets exactly one result and a canceled one none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.backtesting.downsample import equity_downsample
from app.domain.backtesting.engine import BacktestResult as EngineResult
from app.domain.backtesting.engine import Bars, run_strategy
from app.domain.backtesting.exits import Exits
from app.domain.backtesting.models import Backtest, BacktestResult
from app.domain.backtesting.schemas import ACTIVE_STATUSES
from app.domain.backtesting.services import (
    FAN_OUT_JOB,
    RUN_JOB,
    STORED_EQUITY_POINTS,
    clean_metrics,
    job_key,
    load_bars,
    split_run_settings,
)
from app.domain.markets.models import Instrument
from app.lib.jobs import enqueue, job
from app.lib.log import get_logger
from app.lib.metrics import BACKTEST_SECONDS, BACKTESTS

log = get_logger("app.backtests")

# Progress is written to the row and the SAQ job at most once per PROGRESS_MIN_STEP of progress and
# PROGRESS_MIN_INTERVAL seconds: at most 20 writes for a long run, none in between for a short one.
PROGRESS_MIN_STEP = 0.05
PROGRESS_MIN_INTERVAL = 0.5
# Share of the progress bar given to loading bars; the simulation fills the rest up to SIMULATED.
LOADED, SIMULATED = 0.1, 0.95
FAN_OUT_BATCH = 200
PROGRESS_WRITE_TIMEOUT = 5.0


class RunKwargs(msgspec.Struct, forbid_unknown_fields=True):
    backtest_id: uuid.UUID


class FanOutKwargs(msgspec.Struct, forbid_unknown_fields=True):
    sweep_id: uuid.UUID


# ------------------------------------------------------------------------------------------------ bars cache


BarsKey = tuple[str, str, datetime | None, datetime | None, int]


class BarsCache:
    """Per-process LRU of loaded bars, so the runs of a sweep (same symbol, timeframe and range) query
    the candles once per worker process instead of once per run.

    Entries expire after `ttl` seconds and the key carries the generation counter that a candle upload
    bumps (the `candles:<symbol>` group of app.lib.cache), so new candles are seen by the next run.
    Concurrent misses for one key share one load. Memory is bounded by `max_bytes` (a 5M-bar range is
    ~240 MB, so such ranges are simply not kept).
    """

    def __init__(self, max_entries: int = 8, max_bytes: int = 256 * 1024 * 1024, ttl: float = 300.0) -> None:
        self.max_entries, self.max_bytes, self.ttl = max_entries, max_bytes, ttl
        self._entries: OrderedDict[BarsKey, tuple[float, Bars, int]] = OrderedDict()
        self._inflight: dict[tuple[int, BarsKey], asyncio.Future[Bars]] = {}
        self.hits = self.misses = 0

    @staticmethod
    def _size(bars: Bars) -> int:
        return sum(getattr(bars, n).nbytes for n in ("ts", "open", "high", "low", "close", "volume"))

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, key: BarsKey, load: Callable[[], Awaitable[Bars]]) -> Bars:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        # Futures belong to one event loop; tests run workers on more than one.
        flight_key = (id(asyncio.get_running_loop()), key)
        pending = self._inflight.get(flight_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Bars] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        try:
            bars = await load()
            self._store(key, bars)
            future.set_result(bars)
            return bars
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(flight_key, None)

    def _store(self, key: BarsKey, bars: Bars) -> None:
        size = self._size(bars)
        if size > self.max_bytes // 2:
            return
        self._entries[key] = (time.monotonic() + self.ttl, bars, size)
        self._entries.move_to_end(key)
        total = sum(e[2] for e in self._entries.values())
        while self._entries and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, (_, _, dropped) = self._entries.popitem(last=False)
            total -= dropped


BARS_CACHE = BarsCache()


async def _candles_generation(ctx: dict[str, Any], symbol: str) -> int | None:
    cache = ctx.get("cache")
    if cache is None:
        return 0
    try:
        return await cache._generation(f"candles:{symbol}")
    except Exception:  # KV down: load fresh rather than risk stale bars
        return None


async def bars_for(
    ctx: dict[str, Any], symbol: str, timeframe: str, start: datetime | None, end: datetime | None
) -> Bars:
    engine: AsyncEngine = ctx["engine"]

    async def load() -> Bars:
        async with engine.connect() as conn:
            return await load_bars(conn, symbol, timeframe, start, end)

    generation = await _candles_generation(ctx, symbol)
    if generation is None:
        return await load()
    return await BARS_CACHE.get((symbol, timeframe, start, end, generation), load)


# ------------------------------------------------------------------------------------------------ progress


class ProgressReporter:
    """The engine's progress callback. It runs in the simulation thread: when a write is due it hands
    it to the event loop and waits for it, so writes never pile up and each one lands in order (the
    throttle keeps that to a handful of short waits per run)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write: Callable[[float], Awaitable[None]],
        lo: float,
        hi: float,
        start: float,
    ) -> None:
        self.loop, self.write, self.lo, self.hi = loop, write, lo, hi
        self.last_value = start
        self.last_time = time.monotonic()

    def __call__(self, fraction: float) -> None:
        value = self.lo + (self.hi - self.lo) * min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if value - self.last_value < PROGRESS_MIN_STEP or now - self.last_time < PROGRESS_MIN_INTERVAL:
            return
        self.last_value = value
        future = asyncio.run_coroutine_threadsafe(self.write(value), self.loop)
        # A stuck write must not stall the simulation for long: progress is informational.
        with contextlib.suppress(Exception):
            future.result(timeout=PROGRESS_WRITE_TIMEOUT)
        self.last_time = time.monotonic()


def progress_writer(
    engine: AsyncEngine, backtest_id: uuid.UUID, saq_job: Any
) -> Callable[[float], Awaitable[None]]:
    async def write(value: float) -> None:
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(Backtest)
                    .where(
                        Backtest.id == backtest_id, Backtest.status == "running", Backtest.progress < value
                    )
                    .values(progress=value)
                )
            if saq_job is not None:
                await saq_job.update(progress=value)
        except Exception as exc:  # progress is informational: never fail a run over it
            log.warning("backtest_progress_write_failed", backtest_id=str(backtest_id), error=repr(exc)[:200])

    return write


# ------------------------------------------------------------------------------------------------ result


def result_documents(bars: Bars, result: EngineResult) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(trades, equity) as stored in backtest_results: trades in engine units (floats, epoch seconds),
    the equity curve downsampled to STORED_EQUITY_POINTS with the close at the same bars for charts."""
    ts, eq = equity_downsample(result.ts, result.equity, STORED_EQUITY_POINTS)
    idx = np.searchsorted(bars.ts, ts)
    equity = {
        "bars": len(bars),
        "ts": ts.tolist(),
        "equity": eq.tolist(),
        "close": bars.close[idx].tolist(),
    }
    return [msgspec.to_builtins(t) for t in result.trades], equity


class _Superseded(Exception):
    """The row left queued/running while the run was going (canceled): roll back, write nothing."""


async def _store(engine: AsyncEngine, backtest_id: uuid.UUID, bars: Bars, result: EngineResult) -> bool:
    trades, equity = result_documents(bars, result)
    return await store_result(
        engine, backtest_id, result.metrics, result.input_hash, trades=trades, equity=equity
    )


async def store_result(
    engine: AsyncEngine, backtest_id: uuid.UUID, metrics: dict[str, Any], input_hash: str, **documents: Any
) -> bool:
    """Complete the row and write its result documents (backtest_results columns) in one transaction;
    False when the row is no longer queued/running (canceled, or a racing attempt stored first)."""
    try:
        async with engine.begin() as conn:
            # Status first: it takes the row lock, so a racing second attempt waits here and then finds
            # the row completed (READ COMMITTED re-checks the WHERE) and writes nothing.
            done = (
                await conn.execute(
                    update(Backtest)
                    .where(Backtest.id == backtest_id, Backtest.status.in_(ACTIVE_STATUSES))
                    .values(
                        status="completed",
                        progress=1.0,
                        metrics=clean_metrics(metrics),
                        input_hash=input_hash,
                        error=None,
                        finished_at=func.now(),
                    )
                    .returning(Backtest.id)
                )
            ).first()
            if done is None:
                raise _Superseded
            await conn.execute(
                pg_insert(BacktestResult)
                .values(backtest_id=backtest_id, **documents)
                .on_conflict_do_nothing(index_elements=[BacktestResult.backtest_id])
            )
    except _Superseded:
        return False
    return True


async def _set_status(engine: AsyncEngine, backtest_id: uuid.UUID, status: str, error: str | None) -> None:
    values: dict[str, Any] = {"status": status, "error": error[:2000] if error else error}
    if status == "queued":
        values["progress"] = 0.0
    else:
        values["finished_at"] = func.now()
    with contextlib.suppress(Exception):  # the DB may be what failed; SAQ still records the job error
        async with engine.begin() as conn:
            await conn.execute(
                update(Backtest)
                .where(Backtest.id == backtest_id, Backtest.status.in_(ACTIVE_STATUSES))
                .values(**values)
            )


def _was_aborted(ctx: dict[str, Any], saq_job: Any) -> str | None:
    worker = ctx.get("worker")
    if worker is None or saq_job is None:
        return None
    task_ctx = worker.job_task_contexts.get(saq_job)
    return task_ctx.get("aborted") if task_ctx else None


def _shutting_down(ctx: dict[str, Any]) -> bool:
    worker = ctx.get("worker")
    return worker is not None and worker.event.is_set()


async def failed_for_good(
    engine: AsyncEngine, bid: uuid.UUID, exc: ValueError, started: float
) -> dict[str, Any]:
    """Bad data or parameters fail the same way on every attempt: fail the run, no retry."""
    BACKTESTS.labels(status="failed").inc()
    BACKTEST_SECONDS.observe(time.perf_counter() - started)
    await _set_status(engine, bid, "failed", str(exc))
    log.warning("backtest_failed", backtest_id=str(bid), error=str(exc)[:300])
    return {"backtest_id": str(bid), "status": "failed", "error": str(exc)}


async def interrupted(ctx: dict[str, Any], engine: AsyncEngine, bid: uuid.UUID, saq_job: Any) -> None:
    """The run was cancelled: by an abort (canceled), a shutdown or a retryable timeout (queued again),
    or a final timeout (failed). The caller re-raises."""
    reason = _was_aborted(ctx, saq_job)
    if reason is not None:
        await _set_status(engine, bid, "canceled", f"canceled: {reason}")
    elif _shutting_down(ctx) or (saq_job is not None and saq_job.retryable):
        await _set_status(engine, bid, "queued", "interrupted; will be retried")
    else:
        BACKTESTS.labels(status="failed").inc()
        await _set_status(engine, bid, "failed", "timed out")


async def attempt_failed(
    engine: AsyncEngine, bid: uuid.UUID, saq_job: Any, exc: Exception, started: float
) -> None:
    """An unexpected error: queued again while SAQ will retry, else failed. The caller re-raises."""
    if saq_job is not None and saq_job.retryable:
        await _set_status(
            engine, bid, "queued", f"attempt {saq_job.attempts} failed: {exc!r}; will be retried"
        )
    else:
        BACKTESTS.labels(status="failed").inc()
        BACKTEST_SECONDS.observe(time.perf_counter() - started)
        await _set_status(engine, bid, "failed", repr(exc))


# ------------------------------------------------------------------------------------------------ jobs


# Heartbeat: the worker touches a running job every RUN_HEARTBEAT / 4 s (app/lib/jobs.py: keep_alive), so
# a dead worker's runs are retried within about RUN_HEARTBEAT + one 10 s sweep + 5 s instead of after the
# 30-minute timeout (tests/integration/test_worker_faults.py).
RUN_HEARTBEAT = 20


@job(RUN_JOB, RunKwargs, timeout=1800, retries=2, public=False, heartbeat=RUN_HEARTBEAT)
async def run_backtest_job(ctx: dict[str, Any], *, backtest_id: Any) -> dict[str, Any]:
    """Run one backtest: load bars, simulate with progress, store metrics, trades and equity."""
    engine: AsyncEngine = ctx["engine"]
    saq_job = ctx.get("job")
    bid = backtest_id if isinstance(backtest_id, uuid.UUID) else uuid.UUID(str(backtest_id))

    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(Backtest)
                .where(Backtest.id == bid, Backtest.status.in_(ACTIVE_STATUSES))
                .values(status="running", progress=0.0, started_at=func.now(), error=None)
                .returning(
                    Backtest.strategy,
                    Backtest.params,
                    Backtest.symbol,
                    Backtest.timeframe,
                    Backtest.start,
                    Backtest.end,
                    Backtest.initial_cash,
                    Backtest.commission,
                    Backtest.slippage_bps,
                )
            )
        ).first()
        lot_size = None
        if row is not None:
            lot_size = await conn.scalar(select(Instrument.lot_size).where(Instrument.symbol == row.symbol))
    if row is None:
        async with engine.connect() as conn:
            status = await conn.scalar(select(Backtest.status).where(Backtest.id == bid))
        log.info("backtest_run_skipped", backtest_id=str(bid), status=status)
        return {"backtest_id": str(bid), "status": status or "missing", "skipped": True}

    started = time.perf_counter()
    write = progress_writer(engine, bid, saq_job)
    try:
        if lot_size is None:
            raise ValueError(f"instrument {row.symbol!r} no longer exists")
        bars = await bars_for(ctx, row.symbol, row.timeframe, row.start, row.end)
        await write(LOADED)
        reporter = ProgressReporter(asyncio.get_running_loop(), write, LOADED, SIMULATED, LOADED)
        params, settings = split_run_settings(row.params)
        # The simulation is CPU work: in a thread, so the worker keeps heartbeating and serving other
        # jobs (and, in-process, API requests) meanwhile.
        result = await asyncio.to_thread(
            run_strategy,
            bars,
            row.strategy,
            params,
            initial_cash=float(row.initial_cash),
            commission=float(row.commission),
            slippage_bps=float(row.slippage_bps),
            lot_size=float(lot_size),
            # Without a given value, annualised by the data's calendar (periods.py).
            periods_per_year=settings.get("periods_per_year"),
            exits=Exits(**settings["exits"]) if settings.get("exits") else None,
            progress=reporter,
        )
        stored = await _store(engine, bid, bars, result)
    except ValueError as exc:
        return await failed_for_good(engine, bid, exc, started)
    except asyncio.CancelledError:
        await interrupted(ctx, engine, bid, saq_job)
        raise
    except Exception as exc:
        await attempt_failed(engine, bid, saq_job, exc, started)
        raise
    elapsed = time.perf_counter() - started
    if not stored:
        # Canceled meanwhile, or a racing attempt stored first: either way this run's result is not kept.
        async with engine.connect() as conn:
            status = await conn.scalar(select(Backtest.status).where(Backtest.id == bid))
        log.info("backtest_result_discarded", backtest_id=str(bid), status=status)
        return {"backtest_id": str(bid), "status": status, "skipped": True}
    BACKTESTS.labels(status="completed").inc()
    BACKTEST_SECONDS.observe(elapsed)
    log.info(
        "backtest_completed",
        backtest_id=str(bid),
        bars=len(bars),
        trades=len(result.trades),
        seconds=round(elapsed, 4),
    )
    return {
        "backtest_id": str(bid),
        "status": "completed",
        "bars": len(bars),
        "trades": len(result.trades),
        "seconds": round(elapsed, 4),
        "input_hash": result.input_hash,
    }


# The fan-out carries the same heartbeat: killed mid-way, it is retried (and enqueues the runs still
# `queued`; job keys dedupe the ones already enqueued) within a minute, not after its 600 s timeout.
@job(FAN_OUT_JOB, FanOutKwargs, timeout=600, retries=3, public=False, heartbeat=RUN_HEARTBEAT)
async def fan_out_job(ctx: dict[str, Any], *, sweep_id: Any) -> dict[str, Any]:
    """Enqueue one `backtest.run` per queued run of a sweep (keys dedupe a retried fan-out)."""
    engine: AsyncEngine = ctx["engine"]
    queue = ctx["queue"]
    saq_job = ctx.get("job")
    sid = sweep_id if isinstance(sweep_id, uuid.UUID) else uuid.UUID(str(sweep_id))
    async with engine.connect() as conn:
        ids = (
            await conn.scalars(
                select(Backtest.id)
                .where(Backtest.sweep_id == sid, Backtest.status == "queued")
                .order_by(Backtest.id)
            )
        ).all()
    for start in range(0, len(ids), FAN_OUT_BATCH):
        batch = ids[start : start + FAN_OUT_BATCH]
        await asyncio.gather(
            *(
                enqueue(queue, RUN_JOB, {"backtest_id": str(i)}, key=job_key(i), meta={"sweep_id": str(sid)})
                for i in batch
            )
        )
        if saq_job is not None:
            await saq_job.update(progress=(start + len(batch)) / len(ids))
    log.info("sweep_fanned_out", sweep_id=str(sid), runs=len(ids))
    return {"sweep_id": str(sid), "enqueued": len(ids)}
