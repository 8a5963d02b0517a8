"""Exchanges, instruments, candles and last prices."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists as exists_
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.candles import (
    COPY_COLUMNS,
    MAX_LINE_BYTES,
    CandleRow,
    CandleValidationError,
    check_csv_header,
    parse_csv_stream,
    to_copy_csv,
    validate_batch,
)
from app.domain.markets.events import (
    COMMITTED_PRICE_OBSERVERS,
    on_prices_committed,
    prices_committed,
    publish_price,
    publish_price_committed,
    quiet_band,
)
from app.domain.markets.feed_paths import PricePoint
from app.domain.markets.models import Candle, Exchange, Instrument
from app.domain.markets.schemas import (
    CandleLoadAccepted,
    CandleLoadStatus,
    CandleOut,
    ExchangeCreate,
    ExchangeOut,
    InstrumentCreate,
    InstrumentOut,
    InstrumentPatch,
    LoadResult,
    PriceOut,
)
from app.domain.streams import publish as streams
from app.domain.streams.messages import BarUpdate, PriceUpdate
from app.domain.streams.messages import encode as encode_message
from app.lib.db import driver_connection, tx
from app.lib.errors import ApiError, conflict, invalid, not_found

EXCHANGE_COLS = (
    Exchange.code, Exchange.name, Exchange.timezone, Exchange.session_close, Exchange.maker_fee_rate,
    Exchange.taker_fee_rate, Exchange.slippage_bps, Exchange.status, Exchange.session_open, Exchange.session_days,
)
INSTRUMENT_COLS = (
    Instrument.symbol, Instrument.exchange_code.label("exchange"), Instrument.base_asset, Instrument.quote_asset,
    Instrument.tick_size, Instrument.lot_size, Instrument.min_quantity, Instrument.min_notional,
    Instrument.status, Instrument.last_price, Instrument.last_price_at,
)


def _exchange_out(row: Any) -> ExchangeOut:
    values = dict(row._mapping)
    values["session_close"] = values["session_close"].strftime("%H:%M:%S")
    values["session_open"] = values["session_open"].strftime("%H:%M:%S")
    return ExchangeOut(**values)


def _valid_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


async def create_exchange(conn: AsyncConnection, data: ExchangeCreate) -> ExchangeOut:
    if not _valid_timezone(data.timezone):
        raise invalid(f"Unknown timezone {data.timezone!r}", "timezone")
    async with tx(conn):
        try:
            row = (
                await conn.execute(
                    insert(Exchange)
                    .values(
                        code=data.code, name=data.name, timezone=data.timezone, session_close=data.session_close,
                        session_open=data.session_open, session_days=data.session_days,
                        maker_fee_rate=data.maker_fee_rate, taker_fee_rate=data.taker_fee_rate,
                        slippage_bps=data.slippage_bps, status=data.status,
                    )
                    .returning(*EXCHANGE_COLS)
                )
            ).one()
        except IntegrityError as exc:
            raise conflict(f"Exchange {data.code} already exists") from exc
    return _exchange_out(row)


async def list_exchanges(conn: AsyncConnection) -> list[ExchangeOut]:
    rows = await conn.execute(select(*EXCHANGE_COLS).order_by(Exchange.code))
    return [_exchange_out(r) for r in rows]


async def get_exchange(conn: AsyncConnection, code: str) -> ExchangeOut:
    row = (await conn.execute(select(*EXCHANGE_COLS).where(Exchange.code == code))).one_or_none()
    if row is None:
        raise not_found("Exchange")
    return _exchange_out(row)


def _check_instrument_rules(tick: Decimal, lot: Decimal, min_qty: Decimal, min_notional: Decimal) -> None:
    from app.domain.trading.rules import is_multiple

    if min_qty > 0 and not is_multiple(min_qty, lot):
        raise invalid("min_quantity must be a multiple of lot_size", "min_quantity")
    for name, value in (("tick_size", tick), ("lot_size", lot), ("min_quantity", min_qty), ("min_notional", min_notional)):
        if value.as_tuple().exponent < -18:  # type: ignore[operator]
            raise invalid(f"{name} has more than 18 decimal places", name)


async def create_instrument(conn: AsyncConnection, data: InstrumentCreate) -> InstrumentOut:
    _check_instrument_rules(data.tick_size, data.lot_size, data.min_quantity, data.min_notional)
    async with tx(conn):
        if await conn.scalar(select(Exchange.code).where(Exchange.code == data.exchange)) is None:
            raise invalid(f"Unknown exchange {data.exchange!r}", "exchange")
        try:
            await conn.execute(
                insert(Instrument).values(
                    symbol=data.symbol, exchange_code=data.exchange, base_asset=data.base_asset,
                    quote_asset=data.quote_asset, tick_size=data.tick_size, lot_size=data.lot_size,
                    min_quantity=data.min_quantity, min_notional=data.min_notional, status=data.status,
                )
            )
        except IntegrityError as exc:
            raise conflict(f"Instrument {data.symbol} already exists") from exc
        return await get_instrument(conn, data.symbol)


async def update_instrument(conn: AsyncConnection, symbol: str, data: InstrumentPatch) -> InstrumentOut:
    changes = {k: v for k, v in ((f, getattr(data, f)) for f in data.__struct_fields__) if v is not None}
    async with tx(conn):
        current = await get_instrument(conn, symbol, for_update=True)
        merged = {
            f: changes.get(f, getattr(current, f)) for f in ("tick_size", "lot_size", "min_quantity", "min_notional")
        }
        _check_instrument_rules(merged["tick_size"], merged["lot_size"], merged["min_quantity"], merged["min_notional"])
        if changes:
            await conn.execute(
                update(Instrument).where(Instrument.symbol == symbol).values(**changes, updated_at=func.now())
            )
        return await get_instrument(conn, symbol)


async def get_instrument(conn: AsyncConnection, symbol: str, *, for_update: bool = False) -> InstrumentOut:
    stmt = select(*INSTRUMENT_COLS).where(Instrument.symbol == symbol)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise not_found("Instrument")
    return InstrumentOut(**row._mapping)


async def list_instruments(
    conn: AsyncConnection, *, limit: int, cursor: str | None, exchange: str | None, status: str | None
) -> tuple[list[InstrumentOut], str | None]:
    stmt = select(*INSTRUMENT_COLS).order_by(Instrument.symbol).limit(limit + 1)
    if cursor:
        stmt = stmt.where(Instrument.symbol > cursor)
    if exchange:
        stmt = stmt.where(Instrument.exchange_code == exchange)
    if status:
        stmt = stmt.where(Instrument.status == status)
    rows = (await conn.execute(stmt)).all()
    items = [InstrumentOut(**r._mapping) for r in rows[:limit]]
    return items, (items[-1].symbol if len(rows) > limit else None)


# ---------------------------------------------------------------------------------------------------- candles

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


def candle_error(exc: CandleValidationError) -> ApiError:
    return ApiError(
        422,
        str(exc),
        slug="invalid-candles",
        errors=[{"field": f"candles[{exc.row}]" + (f".{exc.field}" if exc.field else ""), "message": exc.reason}],
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
        exists = await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol).with_for_update())
        if exists is None:
            raise not_found("Instrument")
        fresh = not await conn.scalar(
            select(exists_(select(Candle.ts).where(Candle.symbol == symbol, Candle.timeframe == timeframe)))
        )
        previous_newest = None if fresh else await conn.scalar(
            select(func.max(Candle.ts)).where(Candle.symbol == symbol, Candle.timeframe == timeframe)
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
                await driver.copy_to_table(target, source=io.BytesIO(to_copy_csv(batch, prefix)), columns=columns, format="csv")
                rows += len(batch)
                if first_ts is None or batch[0].ts < first_ts:
                    first_ts = min(c.ts for c in batch) if first_ts is None else min(first_ts, min(c.ts for c in batch))
                newest = max(batch, key=lambda c: c.ts)
                if last is None or newest.ts > last.ts:
                    last = newest
        except CandleValidationError as exc:
            raise candle_error(exc) from exc
        if rows == 0:
            raise invalid("The upload contains no candles", "candles")
        if not fresh:
            await conn.execute(_MERGE, {"symbol": symbol, "timeframe": timeframe})
        last_price = None
        if last is not None:
            last_price = await _set_price_from_candle(conn, symbol, last)
            if previous_newest is None or last.ts > previous_newest:
                # `bars:<symbol>:<timeframe>`: the upload's newest bar, when it extends the series (a feed
                # storing each bar as it closes); the older bars of a bulk load are history, not news.
                bar = BarUpdate(symbol=symbol, timeframe=timeframe, ts=last.ts, open=last.open, high=last.high,
                                low=last.low, close=last.close, volume=last.volume)
                streams.defer(conn, f"bars:{symbol}:{timeframe}", encode_message(bar))
    return LoadResult(
        symbol=symbol, timeframe=timeframe, rows=rows, first_ts=first_ts,
        last_ts=last.ts if last else None, last_price=last_price,
    )


async def _set_price_from_candle(conn: AsyncConnection, symbol: str, candle: CandleRow) -> Decimal | None:
    """A candle load sets the last price to the newest close, unless a newer price is already known."""
    current = (
        await conn.execute(select(Instrument.last_price, Instrument.last_price_at).where(Instrument.symbol == symbol))
    ).one()
    if current.last_price_at is not None and current.last_price_at > candle.ts:
        return current.last_price
    await _store_price(conn, symbol, candle.close, None, candle.ts)
    price = PriceUpdate(symbol=symbol, price=candle.close, ts=candle.ts)
    streams.defer(conn, f"prices:{symbol}", encode_message(price))  # after the load commits
    return candle.close


async def one_batch(rows: list[CandleRow]) -> AsyncIterator[list[CandleRow]]:
    yield rows


async def load_candles_json(conn: AsyncConnection, symbol: str, timeframe: str, candles: list[Any]) -> LoadResult:
    try:
        rows = validate_batch(({f: getattr(c, f) for f in c.__struct_fields__} for c in candles), timeframe)
    except CandleValidationError as exc:
        raise candle_error(exc) from exc
    return await load_candles(conn, symbol, timeframe, one_batch(rows))


async def load_candles_csv(conn: AsyncConnection, symbol: str, timeframe: str, chunks: AsyncIterator[bytes]) -> LoadResult:
    return await load_candles(conn, symbol, timeframe, parse_csv_stream(chunks, timeframe))


_CANDLES_SQL = """
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


async def query_candles(
    conn: AsyncConnection, symbol: str, timeframe: str, start: datetime | None, end: datetime | None, limit: int
) -> list[CandleOut]:
    # asyncpg records straight into Structs: SQLAlchemy's per-row processing dominated 10k-row pages.
    # The instrument check rides along as a column so that an unknown symbol costs no extra round trip.
    apg = await driver_connection(conn)
    rows = await apg.fetch(_CANDLES_SQL, symbol, timeframe, start, end, limit)
    if not rows:
        raise not_found("Instrument")
    return [CandleOut(*r[1:]) for r in rows if r[1] is not None]


# ------------------------------------------------------------------------------------------------------ prices


async def _store_price(conn: AsyncConnection, symbol: str, price: Decimal, volume: Decimal | None, ts: datetime) -> int:
    await conn.execute(
        update(Instrument).where(Instrument.symbol == symbol).values(last_price=price, last_price_at=ts, updated_at=func.now())
    )
    return await publish_price(conn, symbol, price, volume, ts)


@on_prices_committed
async def publish_committed_prices(symbol: str, prices: Sequence[PricePoint]) -> None:
    """`prices:<symbol>` gets every committed price, quiet or matched (a quiet price never reaches
    `_store_price`: see feed_prices)."""
    if streams.enabled():
        streams.publish_all(
            (f"prices:{symbol}", encode_message(PriceUpdate(symbol=symbol, price=p.price, ts=p.ts))) for p in prices
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
            raise not_found("Instrument")
        from app.domain.trading.rules import is_multiple

        for point in points:
            if not is_multiple(point.price, tick):
                raise invalid(f"price {point.price} is not a multiple of tick_size {tick}", "price")
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
                fills = await _store_price(conn, symbol, price, point.volume, point.ts)
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
    "UPDATE instruments SET last_price = :price, last_price_at = :ts, updated_at = now() WHERE symbol = :symbol"
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
        await conn.execute(select(Instrument.last_price, Instrument.last_price_at).where(Instrument.symbol == symbol))
    ).one_or_none()
    if row is None:
        raise not_found("Instrument")
    return PriceOut(symbol=symbol, price=row.last_price, ts=row.last_price_at)


async def upsert_exchange(conn: AsyncConnection, values: dict[str, Any]) -> None:
    stmt = pg_insert(Exchange).values(**values).on_conflict_do_nothing(index_elements=["code"])
    await conn.execute(stmt)


async def upsert_instrument(conn: AsyncConnection, values: dict[str, Any]) -> None:
    stmt = pg_insert(Instrument).values(**values).on_conflict_do_nothing(index_elements=["symbol"])
    await conn.execute(stmt)


# ----------------------------------------------------------------------------------------- async loads

UPLOAD_CHUNK = 1 << 20


def candle_load_job_key(upload_id: uuid.UUID) -> str:
    return f"candle-load:{upload_id}"


async def _csv_header_first(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks unchanged, once the first line has been checked to be the CSV header: a body that is
    not a candle CSV at all is refused at once (422) instead of by the worker after a 202."""
    head = b""
    checked = False
    async for chunk in chunks:
        if checked:
            yield chunk
            continue
        head += chunk
        if b"\n" in head or len(head) > MAX_LINE_BYTES:
            _require_csv_header(head.split(b"\n", 1)[0])
            checked = True
            yield head
    if not checked:
        _require_csv_header(head)
        yield head


def _require_csv_header(first_line: bytes) -> None:
    try:
        check_csv_header(first_line)
    except CandleValidationError as exc:
        raise candle_error(exc) from exc


async def park_candle_upload(
    conn: AsyncConnection, queue: Any, symbol: str, timeframe: str, chunks: AsyncIterator[bytes]
) -> CandleLoadAccepted:
    """Store the streamed body in 1 MiB rows and enqueue `markets.load_candles` for it."""
    chunks = _csv_header_first(chunks)
    from app.domain.markets.models import CandleUploadChunk
    from app.lib.jobs import enqueue

    if queue is None:
        raise ApiError(503, "The job queue is not available; upload without ?async=true")
    upload_id = uuid.uuid4()
    total = 0
    async with tx(conn):
        if await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol)) is None:
            raise not_found("Instrument")
        seq = 0
        buffer = bytearray()

        async def flush(data: bytes) -> None:
            nonlocal seq
            await conn.execute(
                insert(CandleUploadChunk).values(upload_id=upload_id, seq=seq, symbol=symbol, timeframe=timeframe, data=data)
            )
            seq += 1

        async for chunk in chunks:
            buffer += chunk
            total += len(chunk)
            while len(buffer) >= UPLOAD_CHUNK:
                await flush(bytes(buffer[:UPLOAD_CHUNK]))
                del buffer[:UPLOAD_CHUNK]
        if buffer or seq == 0:
            await flush(bytes(buffer))
    key = candle_load_job_key(upload_id)
    await enqueue(queue, "markets.load_candles", {"upload_id": str(upload_id)}, key=key)
    return CandleLoadAccepted(
        upload_id=str(upload_id), job_key=key, status="queued", bytes=total,
        status_url=f"/api/v1/instruments/{symbol}/candles/loads/{upload_id}",
    )


async def candle_load_status(queue: Any, symbol: str, upload_id: uuid.UUID) -> CandleLoadStatus:
    if queue is None:
        raise ApiError(503, "The job queue is not available")
    job = await queue.job(candle_load_job_key(upload_id))
    if job is None or (job.kwargs or {}).get("upload_id") != str(upload_id) or job.meta.get("symbol") not in (None, symbol):
        raise not_found("Candle load")
    status = str(job.status.value if hasattr(job.status, "value") else job.status)
    return CandleLoadStatus(
        upload_id=str(upload_id), symbol=symbol, status=status, progress=float(job.progress or 0),
        result=job.result if isinstance(job.result, dict) else None, error=job.error,
    )
