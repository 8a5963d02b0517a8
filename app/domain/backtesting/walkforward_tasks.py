"""The `walkforward.window` job: one train/test window of a walk-forward run.

Each window runs its whole grid on its training bars and the winner on its test bars (in a thread, so
the worker keeps heartbeating). Finishing takes the walk-forward row's lock first: finishers run one
at a time, so the one that completes the last window sees every other window committed and stitches
the out-of-sample equity exactly once. A retried job whose window is already completed writes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.backtesting.downsample import equity_downsample
from app.domain.backtesting.engine import Bars, run_strategy
from app.domain.backtesting.models import WalkForward, WalkForwardWindow
from app.domain.backtesting.portfolio import PortfolioBars, SignalPlan, infer_periods_per_year, run_portfolio
from app.domain.backtesting.portfolio_service import (
    build_plan,
    engine_options,
    load_portfolio_bars,
    spec_range,
)
from app.domain.backtesting.services import clean_metrics, money
from app.domain.backtesting.tasks import bars_for
from app.domain.backtesting.walkforward import make_windows, run_window, stitch, stitched_metrics
from app.domain.backtesting.walkforward_service import WINDOW_JOB
from app.domain.markets.models import Instrument
from app.lib.jobs import job
from app.lib.log import get_logger

log = get_logger("app.backtests")

STITCHED_POINTS = 2_000

# run(bar_slice, params) -> (metrics, ts, equity)
# run(bar_slice, params, history) -> (metrics, ts, equity): `history` bars before the slice warm the
# strategy's signals up without being traded (walkforward.run_window).
Runner = Callable[[tuple[int, int], dict[str, Any], int], tuple[dict[str, Any], Any, Any]]


class WindowKwargs(msgspec.Struct, forbid_unknown_fields=True):
    walkforward_id: uuid.UUID
    index: int


async def _lot_sizes(engine: AsyncEngine, symbols: list[str]) -> list[float]:
    async with engine.connect() as conn:
        lots = dict(
            (
                await conn.execute(
                    select(Instrument.symbol, Instrument.lot_size).where(Instrument.symbol.in_(symbols))
                )
            ).all()
        )
    missing = [s for s in symbols if s not in lots]
    if missing:
        raise ValueError(f"instrument {missing[0]!r} no longer exists")
    return [float(lots[s]) for s in symbols]


async def make_runner(ctx: dict[str, Any], spec: dict[str, Any]) -> tuple[Runner, int, int]:
    """(run(bar_slice, params) -> (metrics, ts, equity), bar count, periods per year) for a spec."""
    engine: AsyncEngine = ctx["engine"]
    start, end = spec_range(spec)
    strategy = spec["strategy_name"]
    if spec.get("symbols"):
        symbols = list(spec["symbols"])
        async with engine.connect() as conn:
            bars = await load_portfolio_bars(conn, symbols, spec["timeframe"], start, end)
        options = engine_options(spec, await _lot_sizes(engine, symbols))
        options["periods_per_year"] = P = infer_periods_per_year(bars.ts)
        allocation = spec["allocation"]

        def portfolio_bars(a: int, b: int) -> PortfolioBars:
            return PortfolioBars(
                symbols=bars.symbols,
                ts=bars.ts[a:b],
                **{k: getattr(bars, k)[a:b] for k in ("open", "high", "low", "close", "volume")},
            )

        def run_portfolio_slice(bar_slice: tuple[int, int], params: dict[str, Any], history: int = 0) -> Any:
            a, b = bar_slice
            history = min(history, a)
            alloc = {**allocation, "type": "signals", "strategy": strategy, "params": params}
            plan = build_plan(portfolio_bars(a - history, b), alloc)
            if history:  # (the directions over the history warm the signals; the run trades from `a`)
                assert isinstance(plan, SignalPlan)
                plan = SignalPlan(plan.direction[history:], plan.sizing, plan.percent)
            result = run_portfolio(portfolio_bars(a, b), plan, **options)
            return result.metrics, result.ts, result.equity

        return run_portfolio_slice, bars.n, P

    symbol = spec["symbol"]
    single = await bars_for(ctx, symbol, spec["timeframe"], start, end)
    (lot,) = await _lot_sizes(engine, [symbol])
    P = infer_periods_per_year(single.ts)

    def run_single_slice(bar_slice: tuple[int, int], params: dict[str, Any], history: int = 0) -> Any:
        a, b = bar_slice
        history = min(history, a)
        columns = ("ts", "open", "high", "low", "close", "volume")
        sub = Bars(**{k: getattr(single, k)[a - history : b] for k in columns})
        result = run_strategy(
            sub,
            strategy,
            params,
            initial_cash=float(spec["initial_cash"]),
            commission=float(spec.get("commission") or 0),
            slippage_bps=float(spec.get("slippage_bps") or 0),
            lot_size=lot,
            periods_per_year=P,
            warmup=history,
        )
        return result.metrics, result.ts, result.equity

    return run_single_slice, len(single), P


async def _fail(engine: AsyncEngine, wid: uuid.UUID, index: int, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(WalkForwardWindow)
            .where(WalkForwardWindow.walkforward_id == wid, WalkForwardWindow.index == index)
            .values(status="failed", error=error[:2000])
        )
        await conn.execute(
            update(WalkForward)
            .where(WalkForward.id == wid, WalkForward.status == "running")
            .values(status="failed", error=f"window {index}: {error}"[:2000], finished_at=func.now())
        )


async def _finish(engine: AsyncEngine, wid: uuid.UUID, index: int, result: dict[str, Any], P: int) -> bool:
    async with engine.begin() as conn:
        wf = (
            await conn.execute(
                select(WalkForward.status, WalkForward.spec).where(WalkForward.id == wid).with_for_update()
            )
        ).first()
        if wf is None or wf.status != "running":
            return False
        done = (
            await conn.execute(
                update(WalkForwardWindow)
                .where(
                    WalkForwardWindow.walkforward_id == wid,
                    WalkForwardWindow.index == index,
                    WalkForwardWindow.status != "completed",
                )
                .values(
                    status="completed",
                    params=result["params"],
                    in_sample=clean_metrics(result["in_sample"]),
                    out_of_sample=clean_metrics(result["out_of_sample"]),
                    equity={"ts": result["ts"].tolist(), "equity": result["equity"].tolist()},
                    error=None,
                )
                .returning(WalkForwardWindow.index)
            )
        ).first()
        if done is None:
            return False
        pending = await conn.scalar(
            select(func.count()).where(
                WalkForwardWindow.walkforward_id == wid, WalkForwardWindow.status != "completed"
            )
        )
        if pending:
            return True
        pieces = (
            await conn.scalars(
                select(WalkForwardWindow.equity)
                .where(WalkForwardWindow.walkforward_id == wid)
                .order_by(WalkForwardWindow.index)
            )
        ).all()
        ts, equity = stitch([(p["ts"], p["equity"]) for p in pieces], float(wf.spec["initial_cash"]))
        metrics = clean_metrics(stitched_metrics(equity, P))
        metrics["periods_per_year"] = P
        metrics["final_equity"] = float(equity[-1])
        metrics["initial_cash"] = float(wf.spec["initial_cash"])
        dts, deq = equity_downsample(ts, equity, STITCHED_POINTS)
        points = [
            {"ts": datetime.fromtimestamp(int(t), UTC).isoformat().replace("+00:00", "Z"), "equity": money(e)}
            for t, e in zip(dts.tolist(), deq.tolist(), strict=True)
        ]
        await conn.execute(
            update(WalkForward)
            .where(WalkForward.id == wid)
            .values(status="completed", result={"metrics": metrics, "equity": points}, finished_at=func.now())
        )
    log.info("walkforward_completed", walkforward_id=str(wid), bars=int(ts.size))
    return True


@job(WINDOW_JOB, WindowKwargs, timeout=1800, retries=2, public=False, heartbeat=120)
async def run_window_job(ctx: dict[str, Any], *, walkforward_id: Any, index: Any) -> dict[str, Any]:
    """Run one walk-forward window: the grid on its training bars, the winner on its test bars."""
    engine: AsyncEngine = ctx["engine"]
    wid = walkforward_id if isinstance(walkforward_id, uuid.UUID) else uuid.UUID(str(walkforward_id))
    index = int(index)
    async with engine.begin() as conn:
        spec = await conn.scalar(
            select(WalkForward.spec).where(WalkForward.id == wid, WalkForward.status == "running")
        )
        claimed = await conn.scalar(
            update(WalkForwardWindow)
            .where(
                WalkForwardWindow.walkforward_id == wid,
                WalkForwardWindow.index == index,
                WalkForwardWindow.status.in_(("queued", "running")),
            )
            .values(status="running")
            .returning(WalkForwardWindow.index)
        )
    if spec is None or claimed is None:
        return {"walkforward_id": str(wid), "index": index, "skipped": True}
    try:
        run, n_bars, P = await make_runner(ctx, spec)
        windows = make_windows(n_bars, spec["train_bars"], spec["test_bars"], spec.get("step_bars"))
        if index >= len(windows):
            raise ValueError("the range has fewer bars than when the run was submitted")
        result = await asyncio.to_thread(
            run_window, windows[index], spec["combinations"], run, spec["objective"]
        )
        await _finish(engine, wid, index, result, P)
    except ValueError as exc:
        await _fail(engine, wid, index, str(exc))
        log.warning("walkforward_window_failed", walkforward_id=str(wid), index=index, error=str(exc)[:300])
        return {"walkforward_id": str(wid), "index": index, "status": "failed", "error": str(exc)}
    return {"walkforward_id": str(wid), "index": index, "status": "completed", "params": result["params"]}
