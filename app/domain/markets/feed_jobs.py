"""The replay and simulation jobs: prices from stored candles or a random walk, through the price path.

Every price goes through `services.feed_mixed_prices`, the function behind `POST /instruments/{symbol}/price`,
so resting and stop orders fill exactly as they would live, and a feed's price update never interleaves
with a live one (both hold the instrument row for their whole update). A replay hands the path runs of
consecutive prices, its symbols interleaved in time order (up to MAX_RUN, or what is due at the requested
speed), which lets the path store a run that crosses no resting order with one UPDATE per symbol; a run
that reaches one is matched price by price. A simulation hands it each step's prices together.

The job reports through its row (progress, counters, heartbeat) at most every REPORT_SECONDS and reads
the stop request in the same statement; a stop therefore lands between two price updates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets import feeds
from app.domain.markets.candles import TIMEFRAMES
from app.domain.markets.feed_paths import PricePoint, bar_path, random_walks
from app.domain.markets.models import Instrument, MarketFeed
from app.domain.markets.services import feed_mixed_prices
from app.lib.jobs import job
from app.lib.log import get_logger

log = get_logger("app.markets.feed_jobs")

MAX_RUN = 4096  # prices per call of the price path (one transaction holds the instrument for these)
PAGE_BARS = 20_000  # candles read per query
REPORT_SECONDS = 0.25
SAQ_UPDATE_SECONDS = 5.0  # the SAQ job's own heartbeat (its `heartbeat` is 60 s)
SLEEP_SLICE = 0.25  # the longest a paced feed sleeps before looking at its stop request again


class FeedKwargs(msgspec.Struct, forbid_unknown_fields=True):
    feed_id: str


class _Stopped(Exception):
    """The feed's row says stop (DELETE), or it was ended elsewhere (taken over as stale)."""


class Reporter:
    """Writes the feed's counters and heartbeat, and learns whether it must stop, in one statement."""

    def __init__(self, conn: AsyncConnection, feed_id: uuid.UUID, saq_job: Any, total: int | None) -> None:
        self.conn, self.feed_id, self.saq_job, self.total = conn, feed_id, saq_job, total
        self.prices = self.bars = self.fills = 0
        self.market_ts: datetime | None = None
        self._last = self._last_saq = 0.0

    def counters(self) -> dict[str, Any]:
        progress = min(self.prices / self.total, 1.0) if self.total else 0.0
        return {
            "prices_fed": self.prices,
            "bars_fed": self.bars,
            "fills": self.fills,
            "market_ts": self.market_ts,
            "progress": round(progress, 6),
        }

    async def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < REPORT_SECONDS:
            return
        self._last = now
        row = (
            await self.conn.execute(
                update(MarketFeed)
                .where(MarketFeed.id == self.feed_id)
                .values(heartbeat_at=datetime.now(UTC), **self.counters())
                .returning(MarketFeed.stop_requested, MarketFeed.status)
            )
        ).one()
        await self.conn.commit()
        if self.saq_job is not None and now - self._last_saq >= SAQ_UPDATE_SECONDS:
            self._last_saq = now
            await self.saq_job.update(progress=self.counters()["progress"])
        if row.stop_requested or row.status != "running":
            raise _Stopped


async def _feed_run(
    conn: AsyncConnection, symbols: list[str], run: list[PricePoint], reporter: Reporter
) -> None:
    """Feed consecutive prices (`run[i]` of `symbols[i]`: one symbol or several, in time order) through
    the price path, reporting between transactions."""
    done = 0
    while done < len(run):
        step = await feed_mixed_prices(conn, symbols[done:] if done else symbols, run[done:] if done else run)
        reporter.bars += sum(p.ends_bar for p in run[done : done + step.consumed])
        done += step.consumed
        reporter.prices += step.consumed
        reporter.fills += step.fills
        reporter.market_ts = run[done - 1].ts
        await reporter.report()


async def _sleep_until(deadline: float, reporter: Reporter) -> None:
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, SLEEP_SLICE))
        await reporter.report()


# -------------------------------------------------------------------------------------------------- replay

# A page of candles, with whether each is on its instrument's tick grid already (almost always: then the
# bar path needs no rounding in Python; the prices are written at the tick's scale either way). Read with asyncpg directly: SQLAlchemy's per-row processing
# costs more than the rest of a replay's per-bar work.
_PAGE_SQL = """
SELECT c.symbol, c.ts, round(c.open, scale(i.tick_size)), round(c.high, scale(i.tick_size)),
       round(c.low, scale(i.tick_size)), round(c.close, scale(i.tick_size)),
       (mod(c.open, i.tick_size) = 0 AND mod(c.high, i.tick_size) = 0 AND mod(c.low, i.tick_size) = 0
        AND mod(c.close, i.tick_size) = 0) AS on_grid, i.tick_size, c.volume
  FROM candles c JOIN instruments i ON i.symbol = c.symbol
 WHERE c.symbol = ANY($1::text[]) AND c.timeframe = $2
   AND ($3::timestamptz IS NULL OR c.ts >= $3) AND ($4::timestamptz IS NULL OR c.ts <= $4)
   AND ($5::timestamptz IS NULL OR c.ts > $5)
 ORDER BY c.ts
 LIMIT $6
"""


async def replay_prices(
    conn: AsyncConnection, symbols: list[str], params: dict[str, Any]
) -> AsyncIterator[tuple[str, PricePoint]]:
    """Every price of the replay in time order (ties: the order of `symbols`), read a page at a time."""
    from app.lib.db import driver_connection

    position = {s: i for i, s in enumerate(symbols)}
    bar_seconds, path = TIMEFRAMES[params["timeframe"]], params["path"]
    start = datetime.fromisoformat(params["start"]) if params["start"] else None
    end = datetime.fromisoformat(params["end"]) if params["end"] else None
    after: datetime | None = None
    while True:
        apg = await driver_connection(conn)
        rows = await apg.fetch(_PAGE_SQL, symbols, params["timeframe"], start, end, after, PAGE_BARS)
        if len(rows) == PAGE_BARS:  # never split the bars of one timestamp across pages
            cut = rows[-1]["ts"]
            rows = [r for r in rows if r["ts"] < cut] or rows
        if not rows:
            return
        after = rows[-1]["ts"]
        timeframe = params["timeframe"]
        if len(symbols) == 1:
            (symbol,) = symbols
            for _, ts, o, h, lo, c, on_grid, tick, v in rows:
                bar = (timeframe, ts, o, h, lo, c, v)
                for point in bar_path(ts, o, h, lo, c, bar_seconds, path, None if on_grid else tick, bar):
                    yield symbol, point
            continue
        prices = [
            (point.ts, position[sym], sym, point)
            for sym, ts, o, h, lo, c, on_grid, tick, v in rows
            for point in bar_path(
                ts, o, h, lo, c, bar_seconds, path, None if on_grid else tick, (timeframe, ts, o, h, lo, c, v)
            )
        ]
        prices.sort(key=lambda item: (item[0], item[1]))
        for _, _, sym, point in prices:
            yield sym, point


async def _run_replay(conn: AsyncConnection, reader: AsyncConnection, feed: Any, reporter: Reporter) -> None:
    speed = feed.params["speed"]
    paced = speed != "max"
    first_ts: datetime | None = None
    wall_start = time.monotonic()
    # Runs mix the symbols in time order: cut at every change of symbol, a replay of symbols whose bars
    # interleave would be one transaction per price.
    symbols: list[str] = []
    run: list[PricePoint] = []
    async for symbol, price in replay_prices(reader, list(feed.symbols), feed.params):
        if paced:
            first_ts = first_ts or price.ts
            due = wall_start + (price.ts - first_ts).total_seconds() / speed
            if due > time.monotonic():
                if run:
                    await _feed_run(conn, symbols, run, reporter)
                    symbols, run = [], []
                await _sleep_until(due, reporter)
        if len(run) >= MAX_RUN:
            await _feed_run(conn, symbols, run, reporter)
            symbols, run = [], []
        symbols.append(symbol)
        run.append(price)
    if run:
        await _feed_run(conn, symbols, run, reporter)


# ---------------------------------------------------------------------------------------------- simulation


async def _run_simulation(
    conn: AsyncConnection, reader: AsyncConnection, feed: Any, reporter: Reporter
) -> None:
    from sqlalchemy import select

    symbols = list(feed.symbols)
    rows = {
        r.symbol: r
        for r in (
            await reader.execute(
                select(Instrument.symbol, Instrument.tick_size, Instrument.last_price).where(
                    Instrument.symbol.in_(symbols)
                )
            )
        )
    }
    await reader.commit()
    params = feed.params
    walks = random_walks(
        [rows[s].last_price for s in symbols],
        [rows[s].tick_size for s in symbols],
        seed=params["seed"],
        annual_volatility=params["annual_volatility"],
        drift=params["drift"],
        interval_ms=params["interval_ms"],
    )
    interval = params["interval_ms"] / 1000
    next_step = time.monotonic()
    while True:
        now = datetime.now(UTC)
        step = [PricePoint(walk.step(), now) for walk in walks]
        await _feed_run(conn, symbols, step, reporter)  # (one transaction for the step, if none matches)
        # On schedule, without catching up in a burst when a step ran late.
        next_step = max(next_step + interval, time.monotonic())
        await _sleep_until(next_step, reporter)


# ------------------------------------------------------------------------------------------------- the job


async def run_feed(ctx: dict[str, Any], feed_id: str) -> dict[str, Any]:
    engine = ctx["engine"]
    fid = uuid.UUID(feed_id)
    async with engine.connect() as conn, engine.connect() as reader:
        feed = (
            await conn.execute(
                update(MarketFeed)
                .where(
                    MarketFeed.id == fid, MarketFeed.status == "queued", MarketFeed.stop_requested.is_(False)
                )
                .values(status="running", started_at=datetime.now(UTC), heartbeat_at=datetime.now(UTC))
                .returning(MarketFeed.kind, MarketFeed.symbols, MarketFeed.params, MarketFeed.total_prices)
            )
        ).first()
        await conn.commit()
        if feed is None:  # stopped before it started, or another attempt has it
            log.info("market_feed_not_started", feed_id=feed_id)
            return {"status": "not started"}
        reporter = Reporter(conn, fid, ctx.get("job"), feed.total_prices)
        runner = _run_replay if feed.kind == "replay" else _run_simulation
        status, error = "completed", None
        try:
            await runner(conn, reader, feed, reporter)
        except _Stopped:
            status = "stopped"
        except asyncio.CancelledError:
            await _finish_after_cancel(engine, fid, reporter)
            raise
        except Exception as exc:
            log.exception("market_feed_failed", feed_id=feed_id)
            status, error = "failed", str(getattr(exc, "detail", None) or exc)[:500]
        counters = reporter.counters()
        if status == "completed":
            counters["progress"] = 1.0
        await feeds.finish(conn, fid, status, error=error, counters=counters)
    log.info(
        "market_feed_finished", feed_id=feed_id, status=status, prices=reporter.prices, fills=reporter.fills
    )
    return {"status": status, **{k: v for k, v in reporter.counters().items() if k != "market_ts"}}


async def _finish_after_cancel(engine: Any, feed_id: uuid.UUID, reporter: Reporter) -> None:
    """SAQ cancelled the job (abort, worker shutdown): end the row on a fresh connection, since the
    job's own may be mid-statement."""
    try:
        async with engine.connect() as conn:
            await asyncio.shield(
                feeds.finish(conn, feed_id, "stopped", error="job cancelled", counters=reporter.counters())
            )
    except Exception as exc:  # the stale-claim takeover covers a row left active
        log.warning("market_feed_finish_failed", feed_id=str(feed_id), error=repr(exc)[:300])


@job(feeds.REPLAY_JOB, FeedKwargs, timeout=0, retries=1, heartbeat=60, public=False)
async def replay_job(ctx: dict[str, Any], *, feed_id: str) -> dict[str, Any]:
    """Replay stored candles through the price path (POST /api/v1/market/replays)."""
    return await run_feed(ctx, feed_id)


@job(feeds.SIMULATION_JOB, FeedKwargs, timeout=0, retries=1, heartbeat=60, public=False)
async def simulation_job(ctx: dict[str, Any], *, feed_id: str) -> dict[str, Any]:
    """Feed a seeded random walk through the price path until stopped (POST /api/v1/market/simulations)."""
    return await run_feed(ctx, feed_id)
