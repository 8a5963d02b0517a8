"""The `backtest.run_portfolio` job: load aligned bars, build the plan, simulate, store the result.

It follows `backtest.run` (tasks.py) step for step, with the same guarantees: every status change is
conditional on the row still being queued/running, the result is written with the completing update
in one transaction (ON CONFLICT DO NOTHING), so a retried or duplicated job stores one result and a
canceled run none. Bad data (misaligned candles, a vanished instrument) fails the run without retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.backtesting.downsample import equity_downsample
from app.domain.backtesting.models import Backtest
from app.domain.backtesting.portfolio import (
    PortfolioBars,
    PortfolioResult,
    portfolio_input_hash,
    run_portfolio,
)
from app.domain.backtesting.portfolio_service import (
    PORTFOLIO_RUN_JOB,
    build_plan,
    engine_options,
    load_portfolio_bars,
    spec_range,
)
from app.domain.backtesting.schemas import ACTIVE_STATUSES
from app.domain.backtesting.services import STORED_EQUITY_POINTS, load_bars
from app.domain.backtesting.tasks import (
    LOADED,
    SIMULATED,
    ProgressReporter,
    RunKwargs,
    attempt_failed,
    failed_for_good,
    interrupted,
    progress_writer,
    store_result,
)
from app.domain.backtesting.tear_sheet import tear_sheet_data
from app.domain.markets.models import Instrument
from app.lib.jobs import job
from app.lib.log import get_logger
from app.lib.metrics import BACKTEST_SECONDS, BACKTESTS

log = get_logger("app.backtests")

STORED_POSITION_POINTS = 500


def result_documents(
    bars: PortfolioBars, result: PortfolioResult
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(trades, equity, positions) as stored in backtest_results.

    Equity is downsampled like a single backtest's (with the benchmark's equity at the same bars);
    positions are the quantities and exposures (|q * close| / equity) at up to STORED_POSITION_POINTS
    evenly spaced bars; the tear sheet's series are computed here from the full curve.
    """
    ts, eq = equity_downsample(result.ts, result.equity, STORED_EQUITY_POINTS)
    idx = np.searchsorted(bars.ts, ts)
    equity: dict[str, Any] = {"bars": bars.n, "ts": ts.tolist(), "equity": eq.tolist()}
    if result.benchmark_equity is not None:
        equity["benchmark"] = result.benchmark_equity[idx].tolist()
    equity["tear_sheet"] = tear_sheet_data(result.ts, result.equity, result.periods_per_year)
    picks = np.unique(
        np.linspace(0, bars.n - 1, min(bars.n, STORED_POSITION_POINTS)).round().astype(np.int64)
    )
    qty = result.positions_at(picks)
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.abs(qty * bars.close[picks]) / result.equity[picks][:, None]
    positions = {
        "symbols": list(bars.symbols),
        "bars": bars.n,
        "ts": bars.ts[picks].tolist(),
        "quantities": qty.tolist(),
        "exposure": np.where(np.isfinite(exposure), exposure, 0.0).tolist(),
    }
    return [msgspec.to_builtins(t) for t in result.trades], equity, positions


async def _store(
    engine: AsyncEngine, backtest_id: uuid.UUID, bars: PortfolioBars, result: PortfolioResult
) -> bool:
    trades, equity, positions = result_documents(bars, result)
    return await store_result(
        engine,
        backtest_id,
        result.metrics,
        result.input_hash,
        trades=trades,
        equity=equity,
        positions=positions,
    )


async def simulate_spec(
    engine: AsyncEngine, spec: dict[str, Any], progress: Any = None
) -> tuple[PortfolioBars, PortfolioResult]:
    """Load what ``spec`` (a normalised portfolio request) needs and run it in a thread."""
    symbols = list(spec["symbols"])
    start, end = spec_range(spec)
    async with engine.connect() as conn:
        bars = await load_portfolio_bars(conn, symbols, spec["timeframe"], start, end)
        lots = dict(
            (
                await conn.execute(
                    select(Instrument.symbol, Instrument.lot_size).where(Instrument.symbol.in_(symbols))
                )
            ).all()
        )
        bench = None
        if spec.get("benchmark"):
            bbars = await load_bars(conn, spec["benchmark"], spec["timeframe"], start, end)
            if bbars.ts.shape != bars.ts.shape or not np.array_equal(bbars.ts, bars.ts):
                raise ValueError(
                    f"the benchmark {spec['benchmark']}'s candles do not line up with the portfolio's"
                )
            bench = bbars.close
    missing = [s for s in symbols if s not in lots]
    if missing:
        raise ValueError(f"instrument {missing[0]!r} no longer exists")
    options = engine_options(spec, [float(lots[s]) for s in symbols])

    # The input hash covers the bars, the allocation and every other setting of the run, the lot
    # sizes and the benchmark's closes: the same inputs give the same hash (and the same result).
    costs = {k: v for k, v in spec.items() if k != "allocation"}
    costs["lot_size"] = options["lot_size"]
    if bench is not None:
        costs["benchmark_close_sha256"] = hashlib.sha256(bench.astype("<f8").tobytes()).hexdigest()

    def run() -> PortfolioResult:
        plan = build_plan(bars, spec["allocation"])
        digest = portfolio_input_hash(bars, spec["allocation"], costs)
        return run_portfolio(
            bars, plan, benchmark_close=bench, progress=progress, input_hash=digest, **options
        )

    return bars, await asyncio.to_thread(run)


@job(PORTFOLIO_RUN_JOB, RunKwargs, timeout=1800, retries=2, public=False, heartbeat=120)
async def run_portfolio_job(ctx: dict[str, Any], *, backtest_id: Any) -> dict[str, Any]:
    """Run one portfolio backtest: load aligned bars, simulate with progress, store the result."""
    engine: AsyncEngine = ctx["engine"]
    saq_job = ctx.get("job")
    bid = backtest_id if isinstance(backtest_id, uuid.UUID) else uuid.UUID(str(backtest_id))
    async with engine.begin() as conn:
        spec = await conn.scalar(
            update(Backtest)
            .where(Backtest.id == bid, Backtest.status.in_(ACTIVE_STATUSES), Backtest.kind == "portfolio")
            .values(status="running", progress=0.0, started_at=func.now(), error=None)
            .returning(Backtest.params)
        )
    if spec is None:
        async with engine.connect() as conn:
            status = await conn.scalar(select(Backtest.status).where(Backtest.id == bid))
        log.info("backtest_run_skipped", backtest_id=str(bid), status=status)
        return {"backtest_id": str(bid), "status": status or "missing", "skipped": True}

    started = time.perf_counter()
    write = progress_writer(engine, bid, saq_job)
    try:
        reporter = ProgressReporter(asyncio.get_running_loop(), write, LOADED, SIMULATED, LOADED)
        bars, result = await simulate_spec(engine, spec, reporter)
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
        return {"backtest_id": str(bid), "status": "superseded", "skipped": True}
    BACKTESTS.labels(status="completed").inc()
    BACKTEST_SECONDS.observe(elapsed)
    log.info(
        "portfolio_backtest_completed",
        backtest_id=str(bid),
        bars=bars.n,
        symbols=bars.m,
        seconds=round(elapsed, 4),
    )
    return {
        "backtest_id": str(bid),
        "status": "completed",
        "bars": bars.n,
        "symbols": bars.m,
        "trades": len(result.trades),
        "seconds": round(elapsed, 4),
        "input_hash": result.input_hash,
    }
