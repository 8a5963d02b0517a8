"""Replays and simulations: submission, one feed per symbol, reads and stop requests.

The feeding itself runs as a SAQ job (feed_jobs.py) through the live price path (services.feed_prices).
A feed's row is its state; `DELETE` sets `stop_requested`, which the job reads between two price
updates, so a stopped feed never leaves a price update half done (each one is its own transaction).

One feed per symbol: a feed claims its symbols in `market_feed_symbols` in the transaction that creates
it (the primary key makes a second claim wait for the first and then find the symbol taken: 409) and
releases them when it ends. A replay and a simulation exclude each other too: two sources of last prices
on one symbol would make neither meaningful. A claim whose feed has shown no heartbeat for
STALE_AFTER_SECONDS (a worker killed mid-feed) is taken over instead of blocking the symbol forever.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from saq import Queue
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.candles import TIMEFRAMES
from app.domain.markets.models import Exchange, Instrument, MarketFeed, MarketFeedSymbol
from app.domain.markets.schemas import (
    ExchangeClock,
    MarketClock,
    MarketFeedOut,
    ReplayCreate,
    SimulationCreate,
)
from app.lib.db import tx
from app.lib.errors import Conflict, Invalid, NotFound, QueueUnavailable
from app.lib.log import get_logger

log = get_logger("app.markets.feeds")

REPLAY_JOB = "markets.replay"
SIMULATION_JOB = "markets.simulate"
ACTIVE = ("queued", "running")
STALE_AFTER_SECONDS = 60
MAX_SPEED = 1e9
# How long DELETE waits for a running job to acknowledge the stop before answering with "stopping".
STOP_WAIT_SECONDS = 3.0

FEED_COLS = (
    MarketFeed.id,
    MarketFeed.kind,
    MarketFeed.status,
    MarketFeed.progress,
    MarketFeed.symbols,
    MarketFeed.params,
    MarketFeed.prices_fed,
    MarketFeed.bars_fed,
    MarketFeed.fills,
    MarketFeed.total_prices,
    MarketFeed.market_ts,
    MarketFeed.error,
    MarketFeed.label,
    MarketFeed.created_at,
    MarketFeed.started_at,
    MarketFeed.finished_at,
    MarketFeed.stop_requested,
)


def feed_out(row: Any) -> MarketFeedOut:
    status = "stopping" if row.stop_requested and row.status in ACTIVE else row.status
    return MarketFeedOut(
        id=str(row.id),
        kind=row.kind,
        status=status,
        progress=float(row.progress),
        symbols=list(row.symbols),
        params=row.params,
        prices_fed=row.prices_fed,
        bars_fed=row.bars_fed,
        fills=row.fills,
        total_prices=row.total_prices,
        market_ts=row.market_ts,
        error=row.error,
        label=row.label,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def job_key(feed_id: uuid.UUID) -> str:
    return f"market-feed:{feed_id}"


# ------------------------------------------------------------------------------------------------- clock


async def market_clock(conn: AsyncConnection, now: datetime | None = None) -> MarketClock:
    from app.domain.markets.clock import session_state

    now = now or datetime.now(UTC)
    rows = await conn.execute(
        select(
            Exchange.code,
            Exchange.timezone,
            Exchange.session_open,
            Exchange.session_close,
            Exchange.session_days,
            Exchange.status,
        ).order_by(Exchange.code)
    )
    items = []
    for code, tz, opens, closes, days, status in rows:
        state = session_state(now, tz, opens, closes, list(days), status)
        items.append(
            ExchangeClock(
                code=code,
                is_open=state.is_open,
                next_open=state.next_open,
                next_close=state.next_close,
                timezone=tz,
                session_open=opens.strftime("%H:%M:%S"),
                session_close=closes.strftime("%H:%M:%S"),
                session_days=list(days),
            )
        )
    return MarketClock(now=now, exchanges=items)


# ------------------------------------------------------------------------------------------------ checks


async def _instruments(conn: AsyncConnection, symbols: list[str]) -> dict[str, Any]:
    if len(set(symbols)) != len(symbols):
        raise Invalid("symbols lists a symbol twice", "symbols")
    rows = (
        await conn.execute(
            select(Instrument.symbol, Instrument.tick_size, Instrument.last_price).where(
                Instrument.symbol.in_(symbols)
            )
        )
    ).all()
    found = {r.symbol: r for r in rows}
    for index, symbol in enumerate(symbols):
        if symbol not in found:
            raise Invalid(f"Unknown symbol {symbol!r} (symbols[{index}])", "symbols", slug="unknown-symbol")
    return found


def check_speed(speed: float | str) -> float | None:
    """Bar-time seconds per wall second; None for "max" (no pacing). 422 naming `speed` otherwise."""
    if speed == "max":
        return None
    if isinstance(speed, str):
        raise Invalid(f'speed must be a positive number or "max", not {speed!r}', "speed")
    if isinstance(speed, bool) or not math.isfinite(speed) or speed <= 0 or speed > MAX_SPEED:
        raise Invalid(f'speed must be greater than 0 and at most {MAX_SPEED:g} (or "max")', "speed")
    return float(speed)


_COUNT_SQL = text(
    """
    SELECT s.symbol, (SELECT count(*) FROM candles c
                       WHERE c.symbol = s.symbol AND c.timeframe = :timeframe
                         AND (CAST(:start AS timestamptz) IS NULL OR c.ts >= :start)
                         AND (CAST(:end AS timestamptz) IS NULL OR c.ts <= :end)) AS bars
      FROM unnest(CAST(:symbols AS text[])) AS s(symbol)
    """
)


async def _bars_in_range(conn: AsyncConnection, data: ReplayCreate) -> int:
    rows = (
        await conn.execute(
            _COUNT_SQL,
            {"symbols": data.symbols, "timeframe": data.timeframe, "start": data.start, "end": data.end},
        )
    ).all()
    for symbol, bars in rows:
        if not bars:
            field = "start" if data.start is not None or data.end is not None else "timeframe"
            raise Invalid(
                f"{symbol} has no {data.timeframe} candles in the requested range", field, slug="no-candles"
            )
    return sum(bars for _, bars in rows)


# ------------------------------------------------------------------------------------------------ claims


async def _claim(conn: AsyncConnection, feed_id: uuid.UUID, symbols: list[str]) -> None:
    """Claim every symbol for `feed_id` inside the caller's transaction, or raise 409 naming the holder."""
    await conn.execute(
        text(
            """
            WITH stale AS (
              UPDATE market_feeds f SET status = 'failed', finished_at = now(),
                     error = 'no heartbeat for ' || CAST(:stale AS text) || ' s: its worker stopped'
               WHERE f.id IN (SELECT feed_id FROM market_feed_symbols WHERE symbol = ANY(:symbols))
                 AND f.status IN ('queued', 'running')
                 AND coalesce(f.heartbeat_at, f.created_at) < now() - make_interval(secs => :stale)
              RETURNING f.id
            )
            DELETE FROM market_feed_symbols s
             USING market_feeds f
             WHERE s.feed_id = f.id AND s.symbol = ANY(:symbols)
               AND (f.status NOT IN ('queued', 'running') OR f.id IN (SELECT id FROM stale))
            """
        ),
        {"symbols": symbols, "stale": STALE_AFTER_SECONDS},
    )
    claimed = set(
        (
            await conn.execute(
                text(
                    "INSERT INTO market_feed_symbols (symbol, feed_id) SELECT unnest(CAST(:symbols AS text[])), :feed_id "
                    "ON CONFLICT (symbol) DO NOTHING RETURNING symbol"
                ),
                {"symbols": symbols, "feed_id": feed_id},
            )
        ).scalars()
    )
    taken = [s for s in symbols if s not in claimed]
    if taken:
        holder = await conn.scalar(
            select(MarketFeedSymbol.feed_id).where(MarketFeedSymbol.symbol == taken[0])
        )
        raise Conflict(
            f"{taken[0]} is already fed by market feed {holder} (one replay or simulation per symbol; stop it first)",
            symbol=taken[0],
            feed_id=str(holder),
        )


async def release(conn: AsyncConnection, feed_id: uuid.UUID) -> None:
    await conn.execute(delete(MarketFeedSymbol).where(MarketFeedSymbol.feed_id == feed_id))


# ---------------------------------------------------------------------------------------------- submission


async def _submit(
    conn: AsyncConnection,
    queue: Queue | None,
    owner_id: uuid.UUID | None,
    kind: str,
    symbols: list[str],
    params: dict[str, Any],
    total_prices: int | None,
    label: str | None = None,
    run_here: bool = False,
) -> MarketFeedOut:
    """Create the feed and claim its symbols; enqueue its job, or with `run_here` leave it queued for the
    caller to run in its own process (the CLI: feed_jobs.run_feed)."""
    from app.lib.jobs import enqueue

    if queue is None and not run_here:
        raise QueueUnavailable("No job queue is configured")
    feed_id = uuid.uuid4()
    key = None if run_here else job_key(feed_id)
    async with tx(conn):
        await conn.execute(
            MarketFeed.__table__.insert().values(
                id=feed_id,
                kind=kind,
                owner_id=owner_id,
                symbols=symbols,
                params=params,
                status="queued",
                total_prices=total_prices,
                job_key=key,
                label=label,
            )
        )
        await _claim(conn, feed_id, symbols)
    if run_here:
        return await get_feed(conn, kind, feed_id)
    assert queue is not None
    try:
        await enqueue(
            queue,
            REPLAY_JOB if kind == "replay" else SIMULATION_JOB,
            {"feed_id": str(feed_id)},
            key=key,
            meta={"user_id": str(owner_id), "source": "api"},
        )
    except Exception as exc:
        log.warning("market_feed_enqueue_failed", feed_id=str(feed_id), error=repr(exc)[:300])
        await finish(conn, feed_id, "failed", error=f"could not enqueue: {exc!r}"[:500])
        raise QueueUnavailable("The job queue is unavailable; the feed was not started") from exc
    log.info("market_feed_submitted", feed_id=str(feed_id), kind=kind, symbols=symbols)
    return await get_feed(conn, kind, feed_id)


async def create_replay(
    conn: AsyncConnection, queue: Queue | None, owner_id: uuid.UUID | None, data: ReplayCreate, *,
    run_here: bool = False,
) -> MarketFeedOut:
    if data.timeframe not in TIMEFRAMES:
        raise Invalid(f"timeframe must be one of {', '.join(TIMEFRAMES)}", "timeframe")
    speed = check_speed(data.speed)
    start = data.start.astimezone(UTC) if data.start else None
    end = data.end.astimezone(UTC) if data.end else None
    if start and end and start > end:
        raise Invalid("end is before start", "end")
    await _instruments(conn, data.symbols)
    bars = await _bars_in_range(conn, data)
    await conn.rollback()
    params = {
        "timeframe": data.timeframe,
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
        "speed": "max" if speed is None else speed,
        "path": data.path,
        "bars": bars,
    }
    per_bar = 4 if data.path == "ohlc" else 1
    return await _submit(
        conn, queue, owner_id, "replay", data.symbols, params, bars * per_bar, run_here=run_here
    )


async def create_simulation(
    conn: AsyncConnection,
    queue: Queue | None,
    owner_id: uuid.UUID | None,
    data: SimulationCreate,
    label: str | None = None,
    run_here: bool = False,
) -> MarketFeedOut:
    if not 10 <= data.interval_ms <= 3_600_000:
        raise Invalid("interval_ms must be between 10 and 3600000", "interval_ms")
    if not (math.isfinite(data.annual_volatility) and 0 < data.annual_volatility <= 10):
        raise Invalid("annual_volatility must be greater than 0 and at most 10 (1000 %)", "annual_volatility")
    if not (math.isfinite(data.drift) and abs(data.drift) <= 10):
        raise Invalid("drift must be between -10 and 10", "drift")
    if data.seed is not None and not 0 <= data.seed < 2**63:
        raise Invalid("seed must be between 0 and 2^63 - 1", "seed")
    found = await _instruments(conn, data.symbols)
    for symbol in data.symbols:
        if found[symbol].last_price is None:
            raise Invalid(
                f"{symbol} has no last price to start the walk from", "symbols", slug="no-market-price"
            )
    await conn.rollback()
    params = {
        "interval_ms": data.interval_ms,
        "annual_volatility": data.annual_volatility,
        "drift": data.drift,
        # A seed is always recorded, so any simulation can be run again exactly.
        "seed": data.seed if data.seed is not None else secrets.randbits(62),
    }
    return await _submit(conn, queue, owner_id, "simulation", data.symbols, params, None, label, run_here)


# ---------------------------------------------------------------------------------------------- reads, stop


async def get_feed(conn: AsyncConnection, kind: str, feed_id: uuid.UUID) -> MarketFeedOut:
    row = (
        await conn.execute(select(*FEED_COLS).where(MarketFeed.id == feed_id, MarketFeed.kind == kind))
    ).first()
    if row is None:
        raise NotFound("Replay" if kind == "replay" else "Simulation")
    return feed_out(row)


async def list_feeds(conn: AsyncConnection, kind: str, limit: int, status: str | None) -> list[MarketFeedOut]:
    stmt = (
        select(*FEED_COLS).where(MarketFeed.kind == kind).order_by(MarketFeed.created_at.desc()).limit(limit)
    )
    if status is not None:
        stmt = stmt.where(MarketFeed.status == status)
    return [feed_out(r) for r in await conn.execute(stmt)]


async def finish(
    conn: AsyncConnection,
    feed_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    counters: dict[str, Any] | None = None,
) -> bool:
    """End a feed (if it is still active) and release its symbols, in one transaction."""
    async with tx(conn):
        done = await conn.scalar(
            update(MarketFeed)
            .where(MarketFeed.id == feed_id, MarketFeed.status.in_(ACTIVE))
            .values(
                status=status,
                error=error,
                finished_at=func.now(),
                heartbeat_at=func.now(),
                **(counters or {}),
            )
            .returning(MarketFeed.id)
        )
        await release(conn, feed_id)
    return done is not None


async def stop_feed(
    conn: AsyncConnection, queue: Queue | None, kind: str, feed_id: uuid.UUID
) -> MarketFeedOut:
    """Ask the feed to stop. A queued one stops at once; a running one stops between two price updates,
    which this waits for (up to STOP_WAIT_SECONDS) so that the answer is usually final."""
    async with tx(conn):
        row = (
            await conn.execute(
                update(MarketFeed)
                .where(MarketFeed.id == feed_id, MarketFeed.kind == kind)
                .values(stop_requested=True)
                .returning(MarketFeed.status, MarketFeed.job_key)
            )
        ).first()
    if row is None:
        raise NotFound("Replay" if kind == "replay" else "Simulation")
    if row.status == "queued":
        from app.domain.backtesting.services import abort_saq_job

        if await finish(conn, feed_id, "stopped", error="stopped before it started"):
            await abort_saq_job(queue, row.job_key, "stopped")
    elif row.status == "running":
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            status = await conn.scalar(select(MarketFeed.status).where(MarketFeed.id == feed_id))
            await conn.rollback()
            if status not in ACTIVE:
                break
            await asyncio.sleep(0.05)
    log.info("market_feed_stop_requested", feed_id=str(feed_id), kind=kind)
    return await get_feed(conn, kind, feed_id)


async def stop_labelled(conn: AsyncConnection, label: str) -> int:
    """Stop every active feed carrying `label` (the demo's simulation, restarted with each `make run`)."""
    ids = (
        (
            await conn.execute(
                select(MarketFeed.id).where(MarketFeed.label == label, MarketFeed.status.in_(ACTIVE))
            )
        )
        .scalars()
        .all()
    )
    await conn.rollback()
    for feed_id in ids:
        await finish(conn, feed_id, "stopped", error="replaced by a new demo simulation")
    return len(ids)
