from __future__ import annotations

import uuid
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col, uuid_pk


class Exchange(Base):
    __tablename__ = "exchanges"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    session_close: Mapped[time] = mapped_column(Time, server_default=text("'16:00'"))
    # The market clock (app/domain/markets/clock.py): a session opens at `session_open` local time on each
    # ISO weekday in `session_days` (1 = Monday .. 7 = Sunday) and closes at the next `session_close`.
    session_open: Mapped[time] = mapped_column(Time, server_default=text("'09:30'"))
    session_days: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger), server_default=text("'{1,2,3,4,5}'"))
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


class MarketFeed(Base):
    """A replay of stored candles or a simulated random walk, fed through the live price path by a job
    (app/domain/markets/feeds.py). The row is the job's state: status, progress, counters, and the
    stop request that `DELETE` sets and the job honours between two price updates."""

    __tablename__ = "market_feeds"

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(16))  # replay | simulation
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # None: started by the CLI
    label: Mapped[str | None] = mapped_column(String(64))
    symbols: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    stop_requested: Mapped[bool] = mapped_column(server_default=text("false"))
    # progress is a ratio 0..1 (not money), hence a float.
    progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    total_prices: Mapped[int | None] = mapped_column(BigInteger)
    prices_fed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    bars_fed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    fills: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    market_ts: Mapped[datetime | None]
    error: Mapped[str | None]
    job_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_col()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_market_feeds_kind_created", "kind", text("created_at DESC")),)


class MarketFeedSymbol(Base):
    """One live feed per symbol: a feed claims its symbols here when it is created and releases them when
    it ends, so a second replay (or simulation) of a symbol is refused with 409."""

    __tablename__ = "market_feed_symbols"

    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol", ondelete="CASCADE"), primary_key=True)
    feed_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("market_feeds.id", ondelete="CASCADE"), index=True)
