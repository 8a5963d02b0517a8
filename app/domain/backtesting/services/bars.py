"""Candles as engine bars: range checks at submit, loading for a run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Double, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.engine import Bars
from app.domain.markets.models import Candle, Instrument
from app.lib.errors import invalid


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
