"""Backtests: submission, listing, cancellation, and the results of a completed run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
from saq import Queue
from saq.job import TERMINAL_STATUSES, Status
from sqlalchemy import ColumnElement, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.downsample import equity_downsample
from app.domain.backtesting.models import Backtest, BacktestResult
from app.domain.backtesting.quotas import enforce_active_quota
from app.domain.backtesting.schemas import (
    ACTIVE_STATUSES,
    RUN_SETTINGS_KEY,
    BacktestCreate,
    BacktestOut,
    EquityOut,
    EquityPoint,
    TradeOut,
)
from app.domain.backtesting.services.access import require_queue, visible
from app.domain.backtesting.services.bars import check_market
from app.domain.backtesting.services.common import BACKTEST_COLS, RESULT_CACHE_TTL, RUN_JOB, job_key, log
from app.domain.backtesting.services.rendering import backtest_out, decimal_places, money, trade_out
from app.domain.backtesting.services.strategy_params import check_params, check_strategy
from app.domain.identity.schemas import Principal
from app.domain.markets.models import Instrument
from app.lib.cache import Cache
from app.lib.db import tx
from app.lib.errors import QueueUnavailable, conflict, not_found
from app.lib.jobs import enqueue
from app.lib.metrics import BACKTESTS
from app.lib.pagination import decode_cursor, decode_int_cursor, encode_cursor


def slippage_or_zero(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


async def mark_unqueued(conn: AsyncConnection, where: ColumnElement[bool], exc: Exception) -> None:
    """The rows were committed but the job could not be enqueued: fail them instead of leaving them
    queued forever."""
    async with tx(conn):
        await conn.execute(
            update(Backtest)
            .where(where, Backtest.status == "queued")
            .values(status="failed", error=f"could not enqueue: {exc!r}"[:500], finished_at=func.now())
        )


async def enqueue_run(
    conn: AsyncConnection, queue: Queue, principal: Principal, backtest_id: uuid.UUID, job: str
) -> None:
    """Enqueue a committed backtest row's run, or fail the row and answer 503."""
    try:
        await enqueue(
            queue,
            job,
            {"backtest_id": str(backtest_id)},
            key=job_key(backtest_id),
            meta={"user_id": str(principal.user_id), "source": "api"},
        )
    except Exception as exc:
        log.warning("backtest_enqueue_failed", backtest_id=str(backtest_id), error=repr(exc)[:300])
        await mark_unqueued(conn, Backtest.id == backtest_id, exc)
        raise QueueUnavailable("The job queue is unavailable; the backtest was not started") from exc


def run_settings(data: BacktestCreate) -> dict[str, Any]:
    """The run settings a one-instrument row keeps beside its strategy parameters (only those given,
    so a run without them stores what it always did)."""
    settings: dict[str, Any] = {}
    if data.exits is not None:
        exits = {k: v for k, v in msgspec.to_builtins(data.exits).items() if v is not None}
        if exits:
            settings["exits"] = exits
    if data.periods_per_year is not None:
        settings["periods_per_year"] = data.periods_per_year
    return settings


async def create_backtest(
    conn: AsyncConnection,
    queue: Queue | None,
    principal: Principal,
    data: BacktestCreate,
    max_active: int | None = None,
) -> BacktestOut:
    queue = require_queue(queue)
    check_strategy(data.strategy)
    params = check_params(data.strategy, data.params)
    settings = run_settings(data)
    if settings:
        params = {**params, RUN_SETTINGS_KEY: settings}
    await check_market(conn, data.symbol, data.timeframe, data.start, data.end)
    backtest_id = uuid.uuid4()
    key = job_key(backtest_id)
    async with tx(conn):
        if max_active is not None:
            await enforce_active_quota(conn, principal.user_id, "backtests", max_active)
        row = (
            await conn.execute(
                insert(Backtest)
                .values(
                    id=backtest_id,
                    owner_id=principal.user_id,
                    strategy=data.strategy,
                    params=params,
                    symbol=data.symbol,
                    timeframe=data.timeframe,
                    start=data.start,
                    end=data.end,
                    initial_cash=data.initial_cash,
                    commission=data.commission,
                    slippage_bps=slippage_or_zero(data.slippage_bps),
                    status="queued",
                    progress=0.0,
                    job_key=key,
                )
                .returning(*BACKTEST_COLS)
            )
        ).one()
    await enqueue_run(conn, queue, principal, backtest_id, RUN_JOB)
    log.info("backtest_submitted", backtest_id=str(backtest_id), strategy=data.strategy, symbol=data.symbol)
    return backtest_out(row)


async def list_backtests(
    conn: AsyncConnection,
    principal: Principal,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    sweep_id: uuid.UUID | None = None,
) -> tuple[list[BacktestOut], str | None]:
    stmt = (
        select(*BACKTEST_COLS)
        .where(Backtest.owner_id == principal.user_id)
        .order_by(Backtest.created_at.desc(), Backtest.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(Backtest.status == status)
    if sweep_id is not None:
        stmt = stmt.where(Backtest.sweep_id == sweep_id)
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(Backtest.created_at, Backtest.id) < func.row(ts, last))
    rows = (await conn.execute(stmt)).all()
    items = [backtest_out(r) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return items, nxt


async def get_backtest(conn: AsyncConnection, principal: Principal, backtest_id: uuid.UUID) -> BacktestOut:
    row = (
        await conn.execute(select(*BACKTEST_COLS).where(Backtest.id == backtest_id, visible(principal)))
    ).first()
    if row is None:
        raise not_found("Backtest")
    return backtest_out(row)


async def abort_saq_job(queue: Queue | None, key: str | None, reason: str) -> None:
    """Best effort: the row's status is what counts (a job that still runs finds it canceled and
    writes nothing), aborting only saves the worker the CPU."""
    if queue is None or not key:
        return
    try:
        saq_job = await queue.job(key)
        if saq_job is None or saq_job.status in TERMINAL_STATUSES or saq_job.status == Status.ABORTING:
            return
        waiting = saq_job.status in (Status.NEW, Status.QUEUED)
        await queue.abort(saq_job, reason)
        current = await queue.job(key)
        if waiting and current is not None and current.status == Status.ABORTING:
            # SAQ completes an abort itself only for a job a worker holds or one in the ready list.
            await queue.finish(current, Status.ABORTED, error=reason)
    except Exception as exc:
        log.warning("backtest_abort_failed", key=key, error=repr(exc)[:300])


async def cancel_backtest(
    conn: AsyncConnection, queue: Queue | None, principal: Principal, backtest_id: uuid.UUID
) -> BacktestOut:
    async with tx(conn):
        current = (
            await conn.execute(
                select(Backtest.status, Backtest.job_key)
                .where(Backtest.id == backtest_id, visible(principal))
                .with_for_update()
            )
        ).first()
        if current is None:
            raise not_found("Backtest")
        if current.status not in ACTIVE_STATUSES:
            raise conflict(f"Backtest already finished ({current.status})", current_status=current.status)
        await conn.execute(
            update(Backtest)
            .where(Backtest.id == backtest_id)
            .values(status="canceled", error="canceled", finished_at=func.now())
        )
    BACKTESTS.labels(status="canceled").inc()
    await abort_saq_job(queue, current.job_key, f"canceled by {principal.email}")
    log.info("backtest_canceled", backtest_id=str(backtest_id), by=str(principal.user_id))
    return await get_backtest(conn, principal, backtest_id)


async def require_completed(
    conn: AsyncConnection, principal: Principal | None, backtest_id: uuid.UUID
) -> None:
    where = [Backtest.id == backtest_id]
    if principal is not None:
        where.append(visible(principal))
    status = await conn.scalar(select(Backtest.status).where(*where))
    if status is None:
        raise not_found("Backtest")
    if status != "completed":
        raise conflict(f"Backtest has no results (status: {status})", current_status=status)


async def backtest_trades(
    conn: AsyncConnection,
    principal: Principal,
    backtest_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    sort: str = "desc",
) -> tuple[list[TradeOut], str | None, int]:
    """A page of the stored trade list. The cursor is the index of the next trade; the slice is cut
    inside PostgreSQL, so a page never ships the whole list to the API."""
    await require_completed(conn, principal, backtest_id)
    total = int(
        await conn.scalar(
            select(func.jsonb_array_length(BacktestResult.trades)).where(
                BacktestResult.backtest_id == backtest_id
            )
        )
        or 0
    )
    if cursor:
        start = decode_int_cursor(cursor)[1]
        if not 0 <= start < max(total, 1):
            start = total if sort == "asc" else -1
    else:
        start = 0 if sort == "asc" else total - 1
    if sort == "asc":
        lo, hi = start, min(start + limit, total) - 1
    else:
        lo, hi = max(start - limit + 1, 0), start
    if total == 0 or hi < lo or lo < 0:
        return [], None, total
    # lo and hi are ints computed here, so the jsonpath literal cannot carry anything else.
    path = literal_column(f"'$[{int(lo)} to {int(hi)}]'::jsonpath")
    chunk = await conn.scalar(
        select(func.jsonb_path_query_array(BacktestResult.trades, path)).where(
            BacktestResult.backtest_id == backtest_id
        )
    )
    steps = (
        await conn.execute(
            select(Instrument.tick_size, Instrument.lot_size)
            .join(Backtest, Backtest.symbol == Instrument.symbol)
            .where(Backtest.id == backtest_id)
        )
    ).first()
    places = (decimal_places(steps.tick_size), decimal_places(steps.lot_size)) if steps else ()
    items = [trade_out(lo + i, t, *places) for i, t in enumerate(chunk or [])]
    if sort != "asc":
        items.reverse()
    nxt_index = hi + 1 if sort == "asc" else lo - 1
    more = nxt_index < total if sort == "asc" else nxt_index >= 0
    anchor = items[-1].entry_ts if items else datetime.now(UTC)
    nxt = encode_cursor(anchor, nxt_index) if more else None  # type: ignore[arg-type]
    return items, nxt, total


async def stored_result(conn: AsyncConnection, backtest_id: uuid.UUID) -> tuple[dict[str, Any], list[Any]]:
    row = (
        await conn.execute(
            select(BacktestResult.equity, BacktestResult.trades).where(
                BacktestResult.backtest_id == backtest_id
            )
        )
    ).first()
    if row is None:  # completed rows always have a result (same transaction); only a manual delete gets here
        raise not_found("Backtest result")
    return row.equity, row.trades


def equity_series(stored: dict[str, Any], max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts, equity, drawdown) downsampled from the stored curve. The downsampler keeps each bucket's
    minimum and maximum, so the running peak and the drawdown troughs survive."""
    ts = np.asarray(stored["ts"], dtype=np.int64)
    eq = np.asarray(stored["equity"], dtype=np.float64)
    ts, eq = equity_downsample(ts, eq, max_points)
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, eq / peak - 1.0, 0.0)
    return ts, eq, np.minimum(dd, 0.0)


async def backtest_equity(
    conn: AsyncConnection, cache: Cache, principal: Principal, backtest_id: uuid.UUID, max_points: int
) -> bytes:
    await require_completed(conn, principal, backtest_id)

    async def load() -> EquityOut:
        stored, _ = await stored_result(conn, backtest_id)
        ts, eq, dd = equity_series(stored, max_points)
        items = [
            EquityPoint(
                ts=datetime.fromtimestamp(int(t), UTC),
                equity=money(float(e)),  # type: ignore[arg-type]
                drawdown=float(d) + 0.0,
            )
            for t, e, d in zip(ts.tolist(), eq.tolist(), dd.tolist(), strict=True)
        ]
        return EquityOut(
            backtest_id=backtest_id, bars=int(stored.get("bars", len(items))), points=len(items), items=items
        )

    # A completed backtest never changes, so its derived views are cached (after the access check).
    return await cache.get_json("backtests", f"{backtest_id}:equity:{max_points}", load, ttl=RESULT_CACHE_TTL)
