"""Backtests and sweeps: submission, tenant-scoped reads, cancellation, results and report links.

Visibility: a backtest (and a sweep) is visible to its owner and to admins; everyone else gets 404, as
if it did not exist. The filter is part of every SQL statement, never applied after loading.

The simulation runs on a worker (tasks.py). Everything a run needs is validated here, before a row or a
job exists: the strategy, each parameter (a bad one is a 422 naming it, never a failed job), the
instrument and that it has candles in the requested range.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

import msgspec
import numpy as np
from saq import Queue
from saq.job import TERMINAL_STATUSES, Status
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.engine import Bars, equity_downsample
from app.domain.backtesting.models import Backtest, BacktestResult, Sweep
from app.domain.backtesting.quotas import enforce_active_quota
from app.domain.backtesting.report import render_report
from app.domain.backtesting.report_portfolio import render_sweep_heatmap, render_tear_sheet
from app.domain.backtesting.schemas import (
    ACTIVE_STATUSES,
    ASCENDING_METRICS,
    MAX_SWEEP_COMBINATIONS,
    MONEY_METRICS,
    BacktestCreate,
    BacktestOut,
    EquityOut,
    EquityPoint,
    ReportTokenOut,
    SkippedCombination,
    StrategyList,
    StrategyOut,
    SweepCreate,
    SweepCreated,
    SweepOut,
    SweepRun,
    TradeOut,
)
from app.domain.backtesting.strategies import (
    STRATEGIES,
    UnknownStrategyError,
    params_json_schema,
    parse_params,
)
from app.domain.identity.schemas import Principal
from app.domain.markets.candles import timeframe_seconds
from app.domain.markets.models import Candle, Instrument
from app.lib.cache import Cache
from app.lib.db import tx
from app.lib.decimals import plain
from app.lib.errors import ApiError, conflict, invalid, not_found
from app.lib.jobs import enqueue
from app.lib.kv import KV
from app.lib.log import get_logger
from app.lib.metrics import BACKTESTS
from app.lib.pagination import decode_cursor, decode_int_cursor, encode_cursor

log = get_logger("app.backtests")

RUN_JOB = "backtest.run"
FAN_OUT_JOB = "backtest.fan_out"
# Stored equity curves are downsampled to this many points; the equity endpoint and the report
# downsample further from there.
STORED_EQUITY_POINTS = 5_000
RESULT_CACHE_TTL = 600
REPORT_TOKEN_TTL = 300
# Trading days of 24 hours, the convention of app/domain/markets/synthetic.py: 1d -> 252, 1h -> 6048.
TRADING_DAYS_PER_YEAR = 252

BACKTEST_COLS = (
    Backtest.id,
    Backtest.status,
    Backtest.progress,
    Backtest.strategy,
    Backtest.params,
    Backtest.symbol,
    Backtest.timeframe,
    Backtest.start,
    Backtest.end,
    Backtest.initial_cash,
    Backtest.commission,
    Backtest.slippage_bps,
    Backtest.metrics,
    Backtest.error,
    Backtest.input_hash,
    Backtest.job_key,
    Backtest.sweep_id,
    Backtest.owner_id,
    Backtest.created_at,
    Backtest.started_at,
    Backtest.finished_at,
    Backtest.kind,
)


def job_key(backtest_id: uuid.UUID) -> str:
    return f"backtest:{backtest_id}"


def sweep_job_key(sweep_id: uuid.UUID) -> str:
    return f"sweep:{sweep_id}"


def periods_per_year(timeframe: str) -> int:
    return round(TRADING_DAYS_PER_YEAR * 86_400 / timeframe_seconds(timeframe))


# ------------------------------------------------------------------------------------------------ rendering


# Money amounts of a backtest (PnL, commission, equity metrics) are rounded to the fee scale of live
# trading (app/domain/trading/rules.py: FEE_QUANTUM): the engine computes in floats, whose last bits are
# noise once printed as decimals ("198.40075000000002").
MONEY_PLACES = 8
_WIDE = Context(prec=60)  # quantize() at 8 places needs more than the default 28 digits for big amounts


def decimal_places(step: Decimal | None, default: int = MONEY_PLACES) -> int:
    """Decimal places of an instrument's tick or lot size ("0.05" -> 2, "1" -> 0, "10" -> 0)."""
    if step is None or not step.is_finite() or step <= 0:
        return default
    return max(0, -int(step.normalize().as_tuple().exponent))


def money(value: float | None, places: int = MONEY_PLACES, *, keep_zeros: bool = False) -> str | None:
    """A float amount as a plain decimal string rounded half-even to `places`; trailing zeros dropped
    unless `keep_zeros` (prices keep their tick's places: "198.40")."""
    if value is None or not math.isfinite(value):
        return None
    with localcontext(_WIDE):
        rounded = Decimal(repr(float(value) + 0.0)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
        return plain(rounded if keep_zeros else rounded.normalize())


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics for storage: NaN and infinities become null, numpy scalars plain numbers."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, int | np.integer):
            out[key] = int(value)
        else:
            f = float(value)
            out[key] = f if math.isfinite(f) else None
    return out


def metrics_out(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {k: money(v) if k in MONEY_METRICS and v is not None else v for k, v in metrics.items()}


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 6) if a is not None and b is not None else None


def backtest_out(row: Any) -> BacktestOut:
    m = row._mapping
    return BacktestOut(
        id=m["id"],
        status=m["status"],
        progress=float(m["progress"]),
        strategy=m["strategy"],
        params=m["params"],
        symbol=m["symbol"],
        timeframe=m["timeframe"],
        start=m["start"],
        end=m["end"],
        initial_cash=m["initial_cash"],
        commission=m["commission"],
        slippage_bps=m["slippage_bps"],
        metrics=metrics_out(m["metrics"]),
        error=m["error"],
        input_hash=m["input_hash"],
        job_key=m["job_key"],
        sweep_id=m["sweep_id"],
        owner_id=m["owner_id"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        queued_seconds=_seconds(m["created_at"], m["started_at"]),
        run_seconds=_seconds(m["started_at"], m["finished_at"]),
        kind=m["kind"],
        symbols=list(m["params"].get("symbols") or []) if m["kind"] == "portfolio" else None,
    )


def _utc(epoch_seconds: int | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)


def trade_out(
    index: int, t: dict[str, Any], price_places: int = MONEY_PLACES, qty_places: int = MONEY_PLACES
) -> TradeOut:
    """One stored trade; prices rounded to the instrument's tick places and the quantity to its lot's
    (slippage moves fills off the tick grid, so prices are rounded for display, not snapped)."""
    return TradeOut(
        index=index,
        side=t["side"],
        quantity=money(t["quantity"], qty_places),
        entry_ts=_utc(t["entry_ts"]),  # type: ignore[arg-type]
        entry_price=money(t["entry_price"], price_places, keep_zeros=True),
        exit_ts=_utc(t["exit_ts"]),
        exit_price=money(t["exit_price"], price_places, keep_zeros=True),  # type: ignore[arg-type]
        pnl=money(t["pnl"]),
        return_pct=t["return_pct"],
        commission=money(t["commission"]),  # type: ignore[arg-type]
        is_open=t["is_open"],
        entry_bar=t["entry_bar"],
        exit_bar=t["exit_bar"],
        symbol=t.get("symbol"),
        exit_reason=t.get("exit_reason"),
    )


# ------------------------------------------------------------------------------------------------ strategies


def list_strategies() -> StrategyList:
    items = []
    for name in sorted(STRATEGIES):
        spec = STRATEGIES[name]
        items.append(
            StrategyOut(
                name=name,
                description=spec.description,
                params_schema=params_json_schema(name),
                defaults=msgspec.to_builtins(spec.default_params()),
                warmup_bars=spec.periods_needed(),
            )
        )
    return StrategyList(items=items)


def _param_field(message: str) -> str | None:
    """The parameter a strategy-params error is about: msgspec's path (`$.fast`), else the first name
    in backticks ("`fast` (30) must be less than `slow` (10)", "unknown field `foo`")."""
    if (m := re.search(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)", message)) is not None:
        return m.group(1)
    if (m := re.search(r"`([A-Za-z_][A-Za-z0-9_]*)`", message)) is not None:
        return m.group(1)
    return None


def check_params(strategy: str, params: dict[str, Any], prefix: str = "params") -> dict[str, Any]:
    """Validated params with defaults filled in (what the run will use), or a 422 naming the field."""
    try:
        return msgspec.to_builtins(parse_params(strategy, params))
    except UnknownStrategyError as exc:
        raise invalid(str(exc), "strategy") from exc
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        name = _param_field(str(exc))
        raise invalid(f"Invalid strategy parameter: {exc}", f"{prefix}.{name}" if name else prefix) from exc


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise invalid(str(UnknownStrategyError(strategy)), "strategy")


# ------------------------------------------------------------------------------------------------ bars


def candle_range(symbol: str, timeframe: str, start: datetime | None, end: datetime | None) -> list[Any]:
    where: list[Any] = [Candle.symbol == symbol, Candle.timeframe == timeframe]
    if start is not None:
        where.append(Candle.ts >= start)
    if end is not None:
        where.append(Candle.ts <= end)
    return where


async def check_market(
    conn: AsyncConnection, symbol: str, timeframe: str, start: datetime | None, end: datetime | None
) -> None:
    """422 unless the instrument exists and has at least two candles in the range (one bar has no
    returns: nothing to simulate)."""
    if await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol)) is None:
        raise invalid(f"Unknown instrument {symbol!r}", "symbol")
    # LIMIT inside: a range of millions of candles must not be counted just to know it is not empty.
    found = await conn.scalar(
        select(func.count()).select_from(
            select(literal(1)).where(*candle_range(symbol, timeframe, start, end)).limit(2).subquery()
        )
    )
    if (found or 0) < 2:
        field = "start" if start is not None or end is not None else "timeframe"
        raise invalid(f"{symbol} has fewer than two {timeframe} candles in the requested range", field)


async def load_bars(
    conn: AsyncConnection, symbol: str, timeframe: str, start: datetime | None, end: datetime | None
) -> Bars:
    """The candles of a range as float64 arrays, in one query.

    NUMERIC is converted to float8 by PostgreSQL (correctly rounded, the same value Python's
    ``float(Decimal)`` gives); the simulation runs in float64 from here on. Timestamps are epoch seconds.
    One row of six arrays instead of one row per candle: asyncpg decodes float8[] far faster than it
    builds a Row per candle. The arrays are aggregated from one ordered subquery, so they share its row
    order; should that order ever not be time order, ``Bars`` rejects the unsorted timestamps (the run
    fails) rather than simulating shuffled bars.
    """
    where = candle_range(symbol, timeframe, start, end)
    epoch = cast(func.extract("epoch", Candle.ts), BigInteger)
    cols = [
        epoch,
        *(cast(c, Double) for c in (Candle.open, Candle.high, Candle.low, Candle.close, Candle.volume)),
    ]
    inner = (
        select(*(c.label(f"c{i}") for i, c in enumerate(cols))).where(*where).order_by(Candle.ts).subquery()
    )
    row = (await conn.execute(select(*(func.array_agg(inner.c[f"c{i}"]) for i in range(6))))).one()
    if row[0] is None:
        return Bars(ts=np.empty(0, np.int64), open=[], high=[], low=[], close=[], volume=[])
    return Bars(
        ts=np.asarray(row[0], dtype=np.int64),
        open=np.asarray(row[1], dtype=np.float64),
        high=np.asarray(row[2], dtype=np.float64),
        low=np.asarray(row[3], dtype=np.float64),
        close=np.asarray(row[4], dtype=np.float64),
        volume=np.asarray(row[5], dtype=np.float64),
    )


# ------------------------------------------------------------------------------------------------ access


def visible(principal: Principal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    return Backtest.owner_id == principal.user_id


def _sweep_visible(principal: Principal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    return Sweep.owner_id == principal.user_id


def require_queue(queue: Queue | None) -> Queue:
    if queue is None:
        raise ApiError(503, "No job queue is configured")
    return queue


# ------------------------------------------------------------------------------------------------ backtests


def _slippage(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


async def _mark_unqueued(conn: AsyncConnection, where: ColumnElement[bool], exc: Exception) -> None:
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
        await _mark_unqueued(conn, Backtest.id == backtest_id, exc)
        raise ApiError(503, "The job queue is unavailable; the backtest was not started") from exc


async def create_backtest(
    conn: AsyncConnection,
    queue: Queue | None,
    principal: Principal,
    data: BacktestCreate,
    max_active: int | None = None,
) -> BacktestOut:
    queue = require_queue(queue)
    _check_strategy(data.strategy)
    params = check_params(data.strategy, data.params)
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
                    slippage_bps=_slippage(data.slippage_bps),
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


async def _stored_result(conn: AsyncConnection, backtest_id: uuid.UUID) -> tuple[dict[str, Any], list[Any]]:
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
        stored, _ = await _stored_result(conn, backtest_id)
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


async def _report_html(conn: AsyncConnection, cache: Cache, backtest_id: uuid.UUID) -> str:
    async def load() -> str:
        row = (await conn.execute(select(*BACKTEST_COLS).where(Backtest.id == backtest_id))).one()
        stored, trades = await _stored_result(conn, backtest_id)
        if row.kind == "portfolio":
            positions = await conn.scalar(
                select(BacktestResult.positions).where(BacktestResult.backtest_id == backtest_id)
            )
            return render_tear_sheet(backtest_out(row), stored, positions or {}, trades)
        return render_report(backtest_out(row), stored, trades)

    payload = await cache.get_json("backtests", f"{backtest_id}:report", load, ttl=RESULT_CACHE_TTL)
    return msgspec.json.decode(payload, type=str)


async def report_page(
    conn: AsyncConnection, cache: Cache, principal: Principal, backtest_id: uuid.UUID
) -> str:
    await require_completed(conn, principal, backtest_id)
    return await _report_html(conn, cache, backtest_id)


def _token_key(token: str) -> str:
    return "report-token:" + hashlib.sha256(token.encode()).hexdigest()


async def create_report_token(
    conn: AsyncConnection, kv: KV, principal: Principal, backtest_id: uuid.UUID
) -> ReportTokenOut:
    """A link to one backtest's report, for clients that cannot send headers (a browser tab, a headless
    screenshot). Only the token's hash is stored; it expires after REPORT_TOKEN_TTL seconds, is bound to
    this backtest and grants nothing else. Until then the link can be reopened (a reload, a second tab)."""
    await require_completed(conn, principal, backtest_id)
    token = secrets.token_urlsafe(32)
    await kv.set(_token_key(token), str(backtest_id).encode(), ttl=REPORT_TOKEN_TTL)
    expires = datetime.now(UTC) + timedelta(seconds=REPORT_TOKEN_TTL)
    return ReportTokenOut(token=token, url=f"/static/reports/{backtest_id}?token={token}", expires_at=expires)


async def redeem_report_token(
    conn: AsyncConnection, kv: KV, cache: Cache, backtest_id: uuid.UUID, token: str
) -> str:
    stored = await kv.get(_token_key(token))
    if stored is None or stored.decode() != str(backtest_id):
        raise ApiError(401, "Invalid or expired report token")
    await require_completed(conn, None, backtest_id)
    return await _report_html(conn, cache, backtest_id)


# ------------------------------------------------------------------------------------------------ sweeps


def _combo_label(combo: dict[str, Any]) -> str:
    return msgspec.json.encode(combo).decode()


def expand_grid(data: SweepCreate) -> tuple[list[dict[str, Any]], list[SkippedCombination]]:
    """Every combination of the grid over the base params, validated. Invalid ones are a 422 naming
    the combination and the parameter, or (skip_invalid) dropped and reported."""
    _check_strategy(data.strategy)
    errors: list[dict[str, str]] = []
    for name, values in data.grid.items():
        if name in data.params:
            errors.append(
                {"field": f"grid.{name}", "message": f"`{name}` is both fixed in params and swept in grid"}
            )
        seen: set[bytes] = set()
        for v in values:
            enc = msgspec.json.encode(v)
            if enc in seen:
                errors.append(
                    {"field": f"grid.{name}", "message": f"`{name}` lists the value {enc.decode()} twice"}
                )
                break
            seen.add(enc)
    if errors:
        raise ApiError(422, "Invalid parameter grid", errors=errors)
    total = math.prod(len(v) for v in data.grid.values())
    if total > MAX_SWEEP_COMBINATIONS:
        raise invalid(f"The grid has {total} combinations; the limit is {MAX_SWEEP_COMBINATIONS}", "grid")

    names = list(data.grid)
    valid: list[dict[str, Any]] = []
    skipped: list[SkippedCombination] = []
    bad: list[dict[str, str]] = []
    for values in itertools.product(*(data.grid[n] for n in names)):
        combo = dict(zip(names, values, strict=True))
        try:
            valid.append(msgspec.to_builtins(parse_params(data.strategy, {**data.params, **combo})))
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            field = _param_field(str(exc))
            prefix = "grid" if field in combo else "params"
            skipped.append(SkippedCombination(params=combo, error=str(exc)))
            bad.append(
                {
                    "field": f"{prefix}.{field}" if field else "grid",
                    "message": f"{_combo_label(combo)}: {exc}",
                }
            )
    if bad and not data.skip_invalid:
        raise ApiError(
            422,
            f"{len(bad)} of {total} parameter combinations are invalid (set skip_invalid to run the others)",
            errors=bad[:20],
        )
    if not valid:
        raise ApiError(422, "No valid parameter combination in the grid", errors=bad[:20])
    return valid, skipped


async def create_sweep(
    conn: AsyncConnection,
    queue: Queue | None,
    principal: Principal,
    data: SweepCreate,
    max_active: int | None = None,
) -> SweepCreated:
    queue = require_queue(queue)
    combos, skipped = expand_grid(data)
    await check_market(conn, data.symbol, data.timeframe, data.start, data.end)
    sweep_id = uuid.uuid4()
    rows = []
    for params in combos:
        bid = uuid.uuid4()
        rows.append(
            {
                "id": bid,
                "owner_id": principal.user_id,
                "sweep_id": sweep_id,
                "strategy": data.strategy,
                "params": params,
                "symbol": data.symbol,
                "timeframe": data.timeframe,
                "start": data.start,
                "end": data.end,
                "initial_cash": data.initial_cash,
                "commission": data.commission,
                "slippage_bps": _slippage(data.slippage_bps),
                "status": "queued",
                "progress": 0.0,
                "job_key": job_key(bid),
            }
        )
    async with tx(conn):
        if max_active is not None:
            await enforce_active_quota(conn, principal.user_id, "sweeps", max_active)
        created_at = (
            await conn.execute(
                insert(Sweep)
                .values(
                    id=sweep_id,
                    owner_id=principal.user_id,
                    strategy=data.strategy,
                    grid=data.grid,
                    rank_by=data.rank_by,
                    total=len(rows),
                )
                .returning(Sweep.created_at)
            )
        ).scalar_one()
        # One executemany: SQLAlchemy batches it into multi-row INSERTs.
        await conn.execute(insert(Backtest), rows)
    key = sweep_job_key(sweep_id)
    try:
        # Enqueueing thousands of runs is the fan-out job's work, so this request stays fast.
        await enqueue(
            queue,
            FAN_OUT_JOB,
            {"sweep_id": str(sweep_id)},
            key=key,
            meta={"user_id": str(principal.user_id), "source": "api"},
        )
    except Exception as exc:
        log.warning("sweep_enqueue_failed", sweep_id=str(sweep_id), error=repr(exc)[:300])
        await _mark_unqueued(conn, Backtest.sweep_id == sweep_id, exc)
        raise ApiError(503, "The job queue is unavailable; the sweep was not started") from exc
    log.info("sweep_submitted", sweep_id=str(sweep_id), runs=len(rows), skipped=len(skipped))
    return SweepCreated(
        id=sweep_id,
        status="queued",
        strategy=data.strategy,
        symbol=data.symbol,
        timeframe=data.timeframe,
        rank_by=data.rank_by,
        total=len(rows),
        skipped=skipped,
        job_key=key,
        created_at=created_at,
    )


async def get_sweep(
    conn: AsyncConnection, principal: Principal, sweep_id: uuid.UUID, limit: int, rank_by: str | None = None
) -> SweepOut:
    sweep = (await conn.execute(select(Sweep).where(Sweep.id == sweep_id, _sweep_visible(principal)))).first()
    if sweep is None:
        raise not_found("Sweep")
    market = (
        await conn.execute(
            select(Backtest.symbol, Backtest.timeframe).where(Backtest.sweep_id == sweep_id).limit(1)
        )
    ).first()
    metric = rank_by or sweep.rank_by
    counts = dict.fromkeys(("queued", "running", "completed", "failed", "canceled"), 0)
    for status, n in (
        await conn.execute(
            select(Backtest.status, func.count())
            .where(Backtest.sweep_id == sweep_id)
            .group_by(Backtest.status)
        )
    ).all():
        counts[status] = int(n)
    value = cast(Backtest.metrics[metric].astext, Double)
    order = value.asc() if metric in ASCENDING_METRICS else value.desc()
    rows = (
        await conn.execute(
            select(Backtest.id, Backtest.params, Backtest.metrics)
            .where(Backtest.sweep_id == sweep_id, Backtest.status == "completed")
            .order_by(order.nulls_last(), Backtest.id)
            .limit(limit)
        )
    ).all()
    ranked = []
    for i, r in enumerate(rows, start=1):
        shown = metrics_out(r.metrics)
        ranked.append(
            SweepRun(rank=i, id=r.id, params=r.params, value=(shown or {}).get(metric), metrics=shown)
        )
    active = counts["queued"] + counts["running"]
    total = sum(counts.values())
    if active == 0:
        status = (
            "completed" if counts["completed"] else ("canceled" if counts["canceled"] == total else "failed")
        )
    else:
        status = "queued" if counts["queued"] == total else "running"
    return SweepOut(
        id=sweep.id,
        status=status,
        strategy=sweep.strategy,
        symbol=market.symbol if market else "",
        timeframe=market.timeframe if market else "",
        grid=sweep.grid,
        rank_by=metric,
        total=sweep.total,
        counts=counts,
        progress=(total - active) / total if total else 1.0,
        created_at=sweep.created_at,
        ranked=ranked,
    )


async def sweep_heatmap(
    conn: AsyncConnection, principal: Principal, sweep_id: uuid.UUID, rank_by: str | None = None
) -> str:
    """The HTML heatmap of a sweep over exactly two parameters (the ranking metric per combination)."""
    sweep = (await conn.execute(select(Sweep).where(Sweep.id == sweep_id, _sweep_visible(principal)))).first()
    if sweep is None:
        raise not_found("Sweep")
    names = list(sweep.grid)
    if len(names) != 2:
        raise invalid(f"A heatmap needs a sweep over exactly two parameters, not {len(names)}", "grid")
    metric = rank_by or sweep.rank_by
    rows = (
        await conn.execute(
            select(Backtest.params, Backtest.metrics).where(
                Backtest.sweep_id == sweep_id, Backtest.status == "completed"
            )
        )
    ).all()
    runs = [(r.params.get(names[0]), r.params.get(names[1]), (r.metrics or {}).get(metric)) for r in rows]
    return render_sweep_heatmap(
        str(sweep_id), sweep.strategy, metric, names[0], names[1], runs, metric in ASCENDING_METRICS
    )
