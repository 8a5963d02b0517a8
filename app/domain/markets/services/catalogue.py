"""Exchanges and instruments: creation with their rules checked, updates, reads, and the seed's upserts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.models import Exchange, Instrument
from app.domain.markets.schemas import (
    ExchangeCreate,
    ExchangeOut,
    InstrumentCreate,
    InstrumentOut,
    InstrumentPatch,
)
from app.lib.db import tx
from app.lib.errors import AlreadyExists, Invalid, NotFound

EXCHANGE_COLS = (
    Exchange.code,
    Exchange.name,
    Exchange.timezone,
    Exchange.session_close,
    Exchange.maker_fee_rate,
    Exchange.taker_fee_rate,
    Exchange.slippage_bps,
    Exchange.status,
    Exchange.session_open,
    Exchange.session_days,
)
INSTRUMENT_COLS = (
    Instrument.symbol,
    Instrument.exchange_code.label("exchange"),
    Instrument.base_asset,
    Instrument.quote_asset,
    Instrument.tick_size,
    Instrument.lot_size,
    Instrument.min_quantity,
    Instrument.min_notional,
    Instrument.status,
    Instrument.last_price,
    Instrument.last_price_at,
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
        raise Invalid(f"Unknown timezone {data.timezone!r}", "timezone")
    async with tx(conn):
        try:
            row = (
                await conn.execute(
                    insert(Exchange)
                    .values(
                        code=data.code,
                        name=data.name,
                        timezone=data.timezone,
                        session_close=data.session_close,
                        session_open=data.session_open,
                        session_days=data.session_days,
                        maker_fee_rate=data.maker_fee_rate,
                        taker_fee_rate=data.taker_fee_rate,
                        slippage_bps=data.slippage_bps,
                        status=data.status,
                    )
                    .returning(*EXCHANGE_COLS)
                )
            ).one()
        except IntegrityError as exc:
            raise AlreadyExists(f"Exchange {data.code} already exists") from exc
    return _exchange_out(row)


async def list_exchanges(conn: AsyncConnection) -> list[ExchangeOut]:
    rows = await conn.execute(select(*EXCHANGE_COLS).order_by(Exchange.code))
    return [_exchange_out(r) for r in rows]


async def get_exchange(conn: AsyncConnection, code: str) -> ExchangeOut:
    row = (await conn.execute(select(*EXCHANGE_COLS).where(Exchange.code == code))).one_or_none()
    if row is None:
        raise NotFound("Exchange")
    return _exchange_out(row)


def _check_instrument_rules(tick: Decimal, lot: Decimal, min_qty: Decimal, min_notional: Decimal) -> None:
    from app.domain.trading.rules import is_multiple

    if min_qty > 0 and not is_multiple(min_qty, lot):
        raise Invalid("min_quantity must be a multiple of lot_size", "min_quantity")
    for name, value in (
        ("tick_size", tick),
        ("lot_size", lot),
        ("min_quantity", min_qty),
        ("min_notional", min_notional),
    ):
        if value.as_tuple().exponent < -18:  # type: ignore[operator]
            raise Invalid(f"{name} has more than 18 decimal places", name)


async def create_instrument(conn: AsyncConnection, data: InstrumentCreate) -> InstrumentOut:
    _check_instrument_rules(data.tick_size, data.lot_size, data.min_quantity, data.min_notional)
    async with tx(conn):
        if await conn.scalar(select(Exchange.code).where(Exchange.code == data.exchange)) is None:
            raise Invalid(f"Unknown exchange {data.exchange!r}", "exchange")
        try:
            await conn.execute(
                insert(Instrument).values(
                    symbol=data.symbol,
                    exchange_code=data.exchange,
                    base_asset=data.base_asset,
                    quote_asset=data.quote_asset,
                    tick_size=data.tick_size,
                    lot_size=data.lot_size,
                    min_quantity=data.min_quantity,
                    min_notional=data.min_notional,
                    status=data.status,
                )
            )
        except IntegrityError as exc:
            raise AlreadyExists(f"Instrument {data.symbol} already exists") from exc
        return await get_instrument(conn, data.symbol)


async def update_instrument(conn: AsyncConnection, symbol: str, data: InstrumentPatch) -> InstrumentOut:
    changes = {k: v for k, v in ((f, getattr(data, f)) for f in data.__struct_fields__) if v is not None}
    async with tx(conn):
        current = await get_instrument(conn, symbol, for_update=True)
        merged = {
            f: changes.get(f, getattr(current, f))
            for f in ("tick_size", "lot_size", "min_quantity", "min_notional")
        }
        _check_instrument_rules(
            merged["tick_size"], merged["lot_size"], merged["min_quantity"], merged["min_notional"]
        )
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
        raise NotFound("Instrument")
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


async def upsert_exchange(conn: AsyncConnection, values: dict[str, Any]) -> None:
    stmt = pg_insert(Exchange).values(**values).on_conflict_do_nothing(index_elements=["code"])
    await conn.execute(stmt)


async def upsert_instrument(conn: AsyncConnection, values: dict[str, Any]) -> None:
    stmt = pg_insert(Instrument).values(**values).on_conflict_do_nothing(index_elements=["symbol"])
    await conn.execute(stmt)
