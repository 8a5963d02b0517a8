from __future__ import annotations

import uuid
from datetime import datetime, time
from decimal import Decimal

from sqlalchemy import ForeignKey, LargeBinary, PrimaryKeyConstraint, String, Time, text
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col


class Exchange(Base):
    __tablename__ = "exchanges"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    session_close: Mapped[time] = mapped_column(Time, server_default=text("'16:00'"))
    maker_fee_rate: Mapped[Decimal] = mapped_column(server_default=text("0"))
    taker_fee_rate: Mapped[Decimal] = mapped_column(server_default=text("0"))
    slippage_bps: Mapped[Decimal] = mapped_column(server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    created_at: Mapped[datetime] = created_at_col()


class Instrument(Base):
    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    exchange_code: Mapped[str] = mapped_column(ForeignKey("exchanges.code"), index=True)
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    tick_size: Mapped[Decimal]
    lot_size: Mapped[Decimal]
    min_quantity: Mapped[Decimal]
    min_notional: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16), server_default="trading")
    last_price: Mapped[Decimal | None]
    last_price_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()


class Candle(Base):
    __tablename__ = "candles"

    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol", ondelete="CASCADE"))
    timeframe: Mapped[str] = mapped_column(String(4))
    ts: Mapped[datetime]
    open: Mapped[Decimal]
    high: Mapped[Decimal]
    low: Mapped[Decimal]
    close: Mapped[Decimal]
    volume: Mapped[Decimal]

    __table_args__ = (PrimaryKeyConstraint("symbol", "timeframe", "ts"),)


class CandleUploadChunk(Base):
    """A large CSV upload parked for an asynchronous load (`POST .../candles?async=true`): the body is
    stored as it streams in, in 1 MiB chunks, so the API never holds it in memory; the load job reads
    the chunks in order and deletes them when done."""

    __tablename__ = "candle_upload_chunks"

    upload_id: Mapped[uuid.UUID]
    seq: Mapped[int]
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(4))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_at_col()

    __table_args__ = (PrimaryKeyConstraint("upload_id", "seq"),)
