"""Candle loads (JSON or streamed CSV: staged by COPY, merged by upsert) and candle reads."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists as exists_
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.candle_csv import parse_csv_stream
from app.domain.markets.candles import (
    COPY_COLUMNS,
    CandleRow,
    CandleValidationError,
    to_copy_csv,
    validate_batch,
)
from app.domain.markets.feed_paths import to_tick
from app.domain.markets.models import Candle, Instrument
from app.domain.markets.schemas import CandleOut, LoadResult
from app.domain.markets.services.prices import store_price
from app.domain.streams import publish as streams
from app.domain.streams.messages import BarUpdate, PriceUpdate
from app.domain.streams.messages import encode as encode_message
from app.lib.db import driver_connection, tx
from app.lib.errors import Invalid, NotFound

_STAGE_DDL = text(
    "CREATE TEMP TABLE candle_stage (ts timestamptz NOT NULL, open numeric NOT NULL, high numeric NOT NULL, "
    "low numeric NOT NULL, close numeric NOT NULL, volume numeric NOT NULL) ON COMMIT DROP"
)
_MERGE = text(
    "INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume) "
    "SELECT :symbol, :timeframe, ts, open, high, low, close, volume FROM candle_stage "
    "ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, "
    "low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume"
)


def candle_error(exc: CandleValidationError, *, json_body: bool = False) -> Invalid:
    """The 422 of an invalid candle: `row` as CandleValidationError counts it (a CSV line number minus one,
    or a JSON candle's 1-based position); the field names a JSON candle by its 0-based index in
    `candles`, as every other field path of a JSON body does."""
    index = exc.row - 1 if json_body else exc.row
    return Invalid(
        str(exc),
        slug="invalid-candles",
        errors=[{"field": f"candles[{index}]" + (f".{exc.field}" if exc.field else ""), "message": exc.reason}],
        row=exc.row,
    )


async def load_candles(
    conn: AsyncConnection, symbol: str, timeframe: str, batches: AsyncIterator[list[CandleRow]]
) -> LoadResult:
    """COPY every batch, all or nothing, in one transaction.

    A bad row anywhere (raised by the parser while streaming) rolls the transaction back, so nothing is
    written. Upsert semantics: a reload replaces the OHLCV of existing timestamps. The first load of a
    series (the bulk case) is COPYed straight into `candles`; a reload is staged in a temp table and
    merged with INSERT ... ON CONFLICT, which costs a second write pass. Loads of one instrument are
    serialised by its row lock, so the "series is empty" check cannot race.
    """
    async with tx(conn):
        exists = await conn.scalar(
            select(Instrument.symbol).where(Instrument.symbol == symbol).with_for_update()
        )
        if exists is None:
            raise NotFound("Instrument")
        fresh = not await conn.scalar(
            select(exists_(select(Candle.ts).where(Candle.symbol == symbol, Candle.timeframe == timeframe)))
        )
        previous_newest = (
            None
            if fresh
            else await conn.scalar(
                select(func.max(Candle.ts)).where(Candle.symbol == symbol, Candle.timeframe == timeframe)
            )
        )
        if fresh:
            target, columns, prefix = "candles", ["symbol", "timeframe", *COPY_COLUMNS], (symbol, timeframe)
        else:
            await conn.execute(_STAGE_DDL)
            target, columns, prefix = "candle_stage", list(COPY_COLUMNS), ()
        driver = await driver_connection(conn)
        rows = 0
        first_ts: datetime | None = None
        last: CandleRow | None = None
        try:
            async for batch in batches:
                if not batch:
                    continue
                await driver.copy_to_table(
                    target, source=io.BytesIO(to_copy_csv(batch, prefix)), columns=columns, format="csv"
                )
                rows += len(batch)
                if first_ts is None or batch[0].ts < first_ts:
                    first_ts = (
                        min(c.ts for c in batch)
                        if first_ts is None
                        else min(first_ts, min(c.ts for c in batch))
                    )
                newest = max(batch, key=lambda c: c.ts)
                if last is None or newest.ts > last.ts:
                    last = newest
        except CandleValidationError as exc:
            raise candle_error(exc) from exc
        if rows == 0:
            raise Invalid("The upload contains no candles", "candles")
        if not fresh:
            await conn.execute(_MERGE, {"symbol": symbol, "timeframe": timeframe})
        last_price = None
        if last is not None:
            last_price = await set_price_from_candle(conn, symbol, last)
            if previous_newest is None or last.ts > previous_newest:
                # `bars:<symbol>:<timeframe>`: the upload's newest bar, when it extends the series (a feed
                # storing each bar as it closes); the older bars of a bulk load are history, not news.
                bar = BarUpdate(
                    symbol=symbol,
                    timeframe=timeframe,
                    ts=last.ts,
                    open=last.open,
                    high=last.high,
                    low=last.low,
                    close=last.close,
                    volume=last.volume,
                )
                streams.defer(conn, f"bars:{symbol}:{timeframe}", encode_message(bar))
    return LoadResult(
        symbol=symbol,
        timeframe=timeframe,
        rows=rows,
        first_ts=first_ts,
        last_ts=last.ts if last else None,
        last_price=last_price,
    )


async def set_price_from_candle(conn: AsyncConnection, symbol: str, candle: CandleRow) -> Decimal | None:
    """A candle load sets the last price to the newest close, unless a newer price is already known. The
    close goes on the tick grid first (half-even, at least one tick), as a replay's prices do: candles from
    elsewhere may carry more decimals than the tick, and a last price off the grid would be one the price
    endpoint refuses, quoted to every order and position."""
    current = (
        await conn.execute(
            select(Instrument.last_price, Instrument.last_price_at, Instrument.tick_size).where(
                Instrument.symbol == symbol
            )
        )
    ).one()
    if current.last_price_at is not None and current.last_price_at > candle.ts:
        return current.last_price
    close = candle.close
    if close % current.tick_size:  # (a close on the grid keeps its digits: "11" stays "11")
        close = max(to_tick(close, current.tick_size), current.tick_size)
    await store_price(conn, symbol, close, None, candle.ts)
    price = PriceUpdate(symbol=symbol, price=close, ts=candle.ts)
    streams.defer(conn, f"prices:{symbol}", encode_message(price))  # after the load commits
    return close


async def one_batch(rows: list[CandleRow]) -> AsyncIterator[list[CandleRow]]:
    yield rows


async def load_candles_json(
    conn: AsyncConnection, symbol: str, timeframe: str, candles: list[Any]
) -> LoadResult:
    try:
        rows = validate_batch(({f: getattr(c, f) for f in c.__struct_fields__} for c in candles), timeframe)
    except CandleValidationError as exc:
        raise candle_error(exc, json_body=True) from exc
    return await load_candles(conn, symbol, timeframe, one_batch(rows))


async def load_candles_csv(
    conn: AsyncConnection, symbol: str, timeframe: str, chunks: AsyncIterator[bytes]
) -> LoadResult:
    return await load_candles(conn, symbol, timeframe, parse_csv_stream(chunks, timeframe))


CANDLES_SQL = """
SELECT i.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume
  FROM instruments i
  LEFT JOIN LATERAL (
    SELECT ts, open, high, low, close, volume FROM candles
     WHERE symbol = i.symbol AND timeframe = $2
       AND ($3::timestamptz IS NULL OR ts >= $3) AND ($4::timestamptz IS NULL OR ts <= $4)
     ORDER BY ts
     LIMIT $5
  ) c ON true
 WHERE i.symbol = $1
"""
# Without a start: the newest `limit` candles up to the end (or the newest of all), answered in ascending
# order like the other. A bot asking for "the last 500 bars" must not get the oldest 500 of a longer
# history. Read newest first (a backward scan of the index) and reversed in Python: a sort of the rows
# in the statement cost ~10% of a 1,000-candle answer.
LATEST_CANDLES_SQL = """
SELECT i.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume
  FROM instruments i
  LEFT JOIN LATERAL (
    SELECT ts, open, high, low, close, volume FROM candles
     WHERE symbol = i.symbol AND timeframe = $2 AND ($3::timestamptz IS NULL OR ts <= $3)
     ORDER BY ts DESC
     LIMIT $4
  ) c ON true
 WHERE i.symbol = $1
"""


async def query_candles(
    conn: AsyncConnection,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[CandleOut]:
    # asyncpg records straight into Structs: SQLAlchemy's per-row processing dominated 10k-row pages.
    # The instrument check rides along as a column so that an unknown symbol costs no extra round trip.
    apg = await driver_connection(conn)
    if start is None:
        rows = await apg.fetch(LATEST_CANDLES_SQL, symbol, timeframe, end, limit)
        rows.reverse()  # (the lateral's order: a nested loop over one instrument row keeps it)
    else:
        rows = await apg.fetch(CANDLES_SQL, symbol, timeframe, start, end, limit)
    if not rows:
        raise NotFound("Instrument")
    return [CandleOut(*r[1:]) for r in rows if r[1] is not None]
