"""Walk-forward runs: submission (validated up front, one job per window) and the tenant-scoped read.

Visibility is that of backtests: the owner and admins see a run, everyone else gets 404. Each window is
a `walkforward.window` job (walkforward_tasks.py), so the windows' sweeps spread over every worker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from saq import Queue
from sqlalchemy import BigInteger, ColumnElement, cast, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.models import WalkForward, WalkForwardWindow
from app.domain.backtesting.portfolio_schemas import WalkForwardCreate, WalkForwardOut, WindowOut
from app.domain.backtesting.portfolio_service import check_portfolio_market
from app.domain.backtesting.schemas import MAX_SWEEP_COMBINATIONS
from app.domain.backtesting.services import (
    candle_range,
    check_market,
    check_params,
    metrics_out,
    require_queue,
)
from app.domain.backtesting.strategies import STRATEGIES, UnknownStrategyError
from app.domain.backtesting.walkforward import grid_combinations, make_windows
from app.domain.identity.schemas import Principal
from app.domain.markets.models import Candle
from app.lib.db import tx
from app.lib.errors import QueueUnavailable, invalid, not_found
from app.lib.jobs import enqueue
from app.lib.log import get_logger

log = get_logger("app.backtests")

WINDOW_JOB = "walkforward.window"
MAX_WINDOWS = 200


def window_job_key(walkforward_id: uuid.UUID, index: int) -> str:
    return f"walkforward:{walkforward_id}:{index}"


def _visible(principal: Principal) -> ColumnElement[bool]:
    return true() if principal.is_admin else WalkForward.owner_id == principal.user_id


def _validate_grid(data: WalkForwardCreate) -> tuple[str, list[dict[str, Any]]]:
    """(strategy, every combination's full params) or a 422 naming the field."""
    portfolio = data.allocation is not None
    strategy = data.allocation.strategy if portfolio else data.strategy  # type: ignore[union-attr]
    base = data.allocation.params if portfolio else data.params  # type: ignore[union-attr]
    prefix = "allocation." if portfolio else ""
    if strategy not in STRATEGIES:
        raise invalid(str(UnknownStrategyError(str(strategy))), f"{prefix}strategy")
    for name in data.grid:
        if name in base:
            raise invalid(f"`{name}` is both fixed in params and swept in grid", f"grid.{name}")
    combos = grid_combinations(data.grid)
    if len(combos) > MAX_SWEEP_COMBINATIONS:
        raise invalid(
            f"The grid has {len(combos)} combinations; the limit is {MAX_SWEEP_COMBINATIONS}", "grid"
        )
    full = []
    for combo in combos:
        params = check_params(str(strategy), {**base, **combo}, prefix="grid")
        full.append(params)
    return str(strategy), full


async def _bar_times(conn: AsyncConnection, symbol: str, data: WalkForwardCreate) -> list[int]:
    epoch = cast(func.extract("epoch", Candle.ts), BigInteger)
    where = candle_range(symbol, data.timeframe, data.start, data.end)
    return list((await conn.scalars(select(epoch).where(*where).order_by(Candle.ts))).all())


async def create_walkforward(
    conn: AsyncConnection, queue: Queue | None, principal: Principal, data: WalkForwardCreate
) -> WalkForwardOut:
    queue = require_queue(queue)
    strategy, combos = _validate_grid(data)
    if data.symbols is not None:
        await check_portfolio_market(conn, data.symbols, data.timeframe, data.start, data.end)
        first = data.symbols[0]
    else:
        await check_market(conn, str(data.symbol), data.timeframe, data.start, data.end)
        first = str(data.symbol)
    times = await _bar_times(conn, first, data)
    try:
        windows = make_windows(len(times), data.train_bars, data.test_bars, data.step_bars)
    except ValueError as exc:
        raise invalid(str(exc), "step_bars") from exc
    if not windows:
        raise invalid(
            f"train_bars + test_bars ({data.train_bars + data.test_bars}) exceeds the "
            f"{len(times)} bars in range",
            "train_bars",
        )
    if len(windows) > MAX_WINDOWS:
        raise invalid(f"{len(windows)} windows; the limit is {MAX_WINDOWS} (raise step_bars)", "step_bars")

    spec = msgspec.to_builtins(data)
    spec["strategy_name"] = strategy
    spec["combinations"] = combos
    wf_id = uuid.uuid4()
    async with tx(conn):
        await conn.execute(
            insert(WalkForward).values(
                id=wf_id,
                owner_id=principal.user_id,
                spec=spec,
                objective=data.objective,
                status="running",
                windows_total=len(windows),
            )
        )
        await conn.execute(
            insert(WalkForwardWindow),
            [
                {
                    "walkforward_id": wf_id,
                    "index": w.index,
                    "status": "queued",
                    "train_start": times[w.train[0]],
                    "train_end": times[w.train[1] - 1],
                    "test_start": times[w.test[0]],
                    "test_end": times[w.test[1] - 1],
                }
                for w in windows
            ],
        )
    try:
        for w in windows:
            await enqueue(
                queue,
                WINDOW_JOB,
                {"walkforward_id": str(wf_id), "index": w.index},
                key=window_job_key(wf_id, w.index),
                meta={"user_id": str(principal.user_id), "source": "api"},
            )
    except Exception as exc:
        async with tx(conn):
            await conn.execute(
                update(WalkForward)
                .where(WalkForward.id == wf_id)
                .values(status="failed", error=f"could not enqueue: {exc!r}"[:500], finished_at=func.now())
            )
        raise QueueUnavailable("The job queue is unavailable; the walk-forward run was not started") from exc
    log.info(
        "walkforward_submitted", walkforward_id=str(wf_id), windows=len(windows), combinations=len(combos)
    )
    return await get_walkforward(conn, principal, wf_id)


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


async def get_walkforward(
    conn: AsyncConnection, principal: Principal, walkforward_id: uuid.UUID
) -> WalkForwardOut:
    wf = (
        await conn.execute(select(WalkForward).where(WalkForward.id == walkforward_id, _visible(principal)))
    ).first()
    if wf is None:
        raise not_found("Walk-forward run")
    rows = (
        await conn.execute(
            select(WalkForwardWindow)
            .where(WalkForwardWindow.walkforward_id == walkforward_id)
            .order_by(WalkForwardWindow.index)
        )
    ).all()
    windows = [
        WindowOut(
            index=r.index,
            train_start=_utc(r.train_start),
            train_end=_utc(r.train_end),
            test_start=_utc(r.test_start),
            test_end=_utc(r.test_end),
            params=r.params,
            in_sample=metrics_out(r.in_sample),
            out_of_sample=metrics_out(r.out_of_sample),
        )
        for r in rows
    ]
    result = wf.result or {}
    return WalkForwardOut(
        id=wf.id,
        status=wf.status,
        objective=wf.objective,
        windows_total=wf.windows_total,
        windows_done=sum(1 for r in rows if r.status == "completed"),
        error=wf.error,
        created_at=wf.created_at,
        finished_at=wf.finished_at,
        windows=windows,
        metrics=metrics_out(result.get("metrics")),
        equity=result.get("equity"),
    )
