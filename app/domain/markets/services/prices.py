"""Last prices: one price, or a feed's batch through the quiet band, stored and published after commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.events import (
    COMMITTED_PRICE_OBSERVERS,
    prices_committed,
    publish_price,
    publish_price_committed,
    quiet_band,
)
from app.domain.markets.feed_paths import PricePoint
from app.domain.markets.models import Instrument
from app.domain.markets.schemas import PriceOut
from app.domain.streams import publish as streams
from app.domain.streams.messages import BarUpdate, PriceUpdate
from app.domain.streams.messages import encode as encode_message
from app.lib.db import tx
from app.lib.errors import Invalid, NotFound


async def store_price(
    conn: AsyncConnection, symbol: str, price: Decimal, volume: Decimal | None, ts: datetime
) -> int:
    await conn.execute(
        update(Instrument)
        .where(Instrument.symbol == symbol)
        .values(last_price=price, last_price_at=ts, updated_at=func.now())
    )
    return await publish_price(conn, symbol, price, volume, ts)


async def publish_committed_prices(symbol: str, prices: Sequence[PricePoint]) -> None:
    """`prices:<symbol>` gets every committed price, quiet or matched (a quiet price never reaches
    `store_price`: see feed_prices); `bars:<symbol>:<timeframe>` each replayed bar, after its last price."""
    if streams.enabled():
        streams.publish_all(_price_messages(symbol, prices))


def _price_messages(symbol: str, prices: Sequence[PricePoint]) -> Iterator[tuple[str, bytes]]:
    for p in prices:
        yield f"prices:{symbol}", encode_message(PriceUpdate(symbol=symbol, price=p.price, ts=p.ts))
        if p.bar is not None:
            timeframe, ts, open_, high, low, close, volume = p.bar
            bar = BarUpdate(
                symbol=symbol, timeframe=timeframe, ts=ts, open=open_, high=high, low=low, close=close,
                volume=volume,
            )
            yield f"bars:{symbol}:{timeframe}", encode_message(bar)


@dataclass(frozen=True, slots=True)
class FeedStep:
    consumed: int  # how many of the points became the last price, in order
    fills: int
    matched: bool  # whether the last of them ran the price hooks (matching)


_LOCK_INSTRUMENTS_SQL = text(
    "SELECT symbol, tick_size FROM instruments WHERE symbol = ANY(:symbols) ORDER BY symbol FOR UPDATE"
)


async def feed_prices(conn: AsyncConnection, symbol: str, points: Sequence[PricePoint]) -> FeedStep:
    """`points` become `symbol`'s last price in order (feed_mixed_prices, one symbol)."""
    return await feed_mixed_prices(conn, [symbol] * len(points), points)


async def feed_mixed_prices(
    conn: AsyncConnection, symbols_of: Sequence[str], points: Sequence[PricePoint]
) -> FeedStep:
    """The price path: each point becomes its symbol's (`symbols_of[i]`) last price in order, each matched
    against the resting orders, in one transaction that holds the symbols' instrument rows FOR UPDATE
    (taken in symbol order). `POST .../price` feeds one point, replays and simulations feed runs of them
    (a replay of several symbols interleaves them in time order); so a price update from any source never
    interleaves with another one or with a placement on the same instrument.

    Fast path: the quiet band (events.quiet_band: for the matcher, the prices between the highest resting
    buy trigger and the lowest resting sell trigger) is read per symbol after the lock. A price inside its
    symbol's band cannot act on any order, so it only becomes the last price; the transaction stores the
    last of each symbol's run of such prices with one UPDATE. A price outside the band is stored and
    matched, after the other symbols' quiet prices before it are stored (a match sees every other last
    price as of its own time), and its symbol's band is read again (the match filled or triggered orders).
    At most one price is matched per transaction: the next price outside a band is left for the next one.
    That keeps the documented lock order (the accounts a match locks are taken sorted, once per
    transaction) and commits fills before feeding on. Returns how many points were consumed, in order;
    the caller feeds the rest. After the commit, each symbol's consumed points go to the observers of
    events.on_prices_committed (every price, quiet or not).
    """
    if not points:
        return FeedStep(0, 0, False)
    symbols = sorted(set(symbols_of))
    async with tx(conn):
        ticks = dict((await conn.execute(_LOCK_INSTRUMENTS_SQL, {"symbols": symbols})).all())
        if len(ticks) < len(symbols):
            raise NotFound("Instrument")
        from app.domain.trading.rules import is_multiple

        for symbol, point in zip(symbols_of, points, strict=True):
            if not is_multiple(point.price, ticks[symbol]):
                raise Invalid(f"price {point.price} is not a multiple of tick_size {ticks[symbol]}", "price")
        bands = {symbol: await quiet_band(conn, symbol) for symbol in symbols}
        consumed = fills = 0
        stored_to = 0  # the points before this one are stored (or superseded by a stored later one)
        matched_any = False
        current = None
        lower = upper = None
        always = False
        for symbol, point in zip(symbols_of, points, strict=True):
            if symbol != current:
                current, band = symbol, bands[symbol]
                lower, upper, always = band.lower, band.upper, band.always
            price = point.price
            # band.contains(price), inlined: this loop is a replay's per-price cost.
            if always or (lower is not None and price <= lower) or (upper is not None and price >= upper):
                if matched_any:
                    break
                await _store_lasts(conn, symbols_of, points, stored_to, consumed, len(symbols), symbol)
                fills = await store_price(conn, symbol, price, point.volume, point.ts)
                matched_any = True
                consumed += 1
                stored_to = consumed
                if consumed < len(points):
                    band = bands[symbol] = await quiet_band(conn, symbol)
                    lower, upper, always = band.lower, band.upper, band.always
                continue
            consumed += 1
        await _store_lasts(conn, symbols_of, points, stored_to, consumed, len(symbols))
    # The observers (the prices:/bars: streams) get the points in the order they were fed, a run of one
    # symbol at a time: a replay's prices stay in time order across its symbols.
    runs: list[tuple[str, list[PricePoint]]] = []
    if len(symbols) == 1:
        runs.append((symbols[0], list(points[:consumed])))
    else:
        for symbol, point in zip(symbols_of[:consumed], points[:consumed], strict=True):
            if runs and runs[-1][0] == symbol:
                runs[-1][1].append(point)
            else:
                runs.append((symbol, [point]))
    if COMMITTED_PRICE_OBSERVERS:
        for symbol, fed in runs:
            await prices_committed(symbol, fed)
    for symbol in dict.fromkeys(symbol for symbol, _ in runs):
        await publish_price_committed(conn, symbol)  # post-trade risk checks, after the commit
    return FeedStep(consumed, fills, matched_any)


async def _store_lasts(
    conn: AsyncConnection, symbols_of: Sequence[str], points: Sequence[PricePoint], start: int, stop: int,
    symbol_count: int, skip: str | None = None,
) -> None:
    """Store each symbol's last point among points[start:stop] (but `skip`'s, which a later price
    supersedes), found from the end: one step back when the run is of one symbol."""
    seen: set[str] = set()
    for i in range(stop - 1, start - 1, -1):
        symbol = symbols_of[i]
        if symbol in seen:
            continue
        seen.add(symbol)
        if symbol != skip:
            last = points[i]
            await conn.execute(_STORE_LAST_SQL, {"symbol": symbol, "price": last.price, "ts": last.ts})
        if len(seen) == symbol_count:
            break


_STORE_LAST_SQL = text(
    "UPDATE instruments SET last_price = :price, last_price_at = :ts, updated_at = now() "
    "WHERE symbol = :symbol"
)


async def set_price(
    conn: AsyncConnection, symbol: str, price: Decimal, ts: datetime | None, volume: Decimal | None
) -> PriceOut:
    """Store the last price and match resting orders against it, in one transaction (feed_prices)."""
    ts = ts.astimezone(UTC) if ts is not None else datetime.now(UTC)
    step = await feed_prices(conn, symbol, (PricePoint(price, ts, volume),))
    return PriceOut(symbol=symbol, price=price, ts=ts, fills=step.fills)


async def get_price(conn: AsyncConnection, symbol: str) -> PriceOut:
    row = (
        await conn.execute(
            select(Instrument.last_price, Instrument.last_price_at).where(Instrument.symbol == symbol)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("Instrument")
    return PriceOut(symbol=symbol, price=row.last_price, ts=row.last_price_at)
