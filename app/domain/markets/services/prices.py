"""Last prices: one price, or a feed's batch through the quiet band, stored and published after commit."""

from __future__ import annotations

from collections.abc import Sequence
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
from app.domain.streams.messages import PriceUpdate
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
    `store_price`: see feed_prices)."""
    if streams.enabled():
        streams.publish_all(
            (f"prices:{symbol}", encode_message(PriceUpdate(symbol=symbol, price=p.price, ts=p.ts)))
            for p in prices
        )


@dataclass(frozen=True, slots=True)
class FeedStep:
    consumed: int  # how many of the points became the last price, in order
    fills: int
    matched: bool  # whether the last of them ran the price hooks (matching)


_LOCK_INSTRUMENT_SQL = text("SELECT tick_size FROM instruments WHERE symbol = :symbol FOR UPDATE")


async def feed_prices(conn: AsyncConnection, symbol: str, points: Sequence[PricePoint]) -> FeedStep:
    """The price path: `points` become `symbol`'s last price in order, each matched against the resting
    orders, in one transaction that holds the instrument row FOR UPDATE. `POST .../price` feeds one point,
    replays and simulations feed runs of them; so a price update from any source never interleaves with
    another one or with a placement on the same instrument.

    Fast path: the quiet band (events.quiet_band: for the matcher, the prices between the highest resting
    buy trigger and the lowest resting sell trigger) is read after the lock. A price inside it cannot act
    on any order, so it only becomes the last price; the transaction stores the last of a run of such
    prices with one UPDATE. A price outside the band is stored and matched, and the band read again (the
    match filled or triggered orders). At most one price is matched per transaction: the next price
    outside the band is left for the next one. That keeps the documented lock order (the accounts a match
    locks are taken sorted, once per transaction) and commits fills before feeding on. Returns how many
    points were consumed, in order; the caller feeds the rest. After the commit, the consumed points go to
    the observers of events.on_prices_committed (every price, quiet or not).
    """
    if not points:
        return FeedStep(0, 0, False)
    async with tx(conn):
        tick = await conn.scalar(_LOCK_INSTRUMENT_SQL, {"symbol": symbol})
        if tick is None:
            raise NotFound("Instrument")
        from app.domain.trading.rules import is_multiple

        for point in points:
            if not is_multiple(point.price, tick):
                raise Invalid(f"price {point.price} is not a multiple of tick_size {tick}", "price")
        band = await quiet_band(conn, symbol)
        lower, upper, always = band.lower, band.upper, band.always
        consumed = fills = 0
        matched_any = False
        matched_last = False  # whether the last consumed price is the matched one (already stored)
        for point in points:
            price = point.price
            # band.contains(price), inlined: this loop is a replay's per-price cost.
            if always or (lower is not None and price <= lower) or (upper is not None and price >= upper):
                if matched_any:
                    break
                fills = await store_price(conn, symbol, price, point.volume, point.ts)
                matched_any = matched_last = True
                consumed += 1
                if consumed < len(points):
                    band = await quiet_band(conn, symbol)
                    lower, upper, always = band.lower, band.upper, band.always
                continue
            matched_last = False
            consumed += 1
        if not matched_last:
            last = points[consumed - 1]
            await conn.execute(_STORE_LAST_SQL, {"symbol": symbol, "price": last.price, "ts": last.ts})
    if COMMITTED_PRICE_OBSERVERS:
        await prices_committed(symbol, points[:consumed])
    await publish_price_committed(conn, symbol)  # post-trade risk checks, after the commit
    return FeedStep(consumed, fills, matched_any)


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
