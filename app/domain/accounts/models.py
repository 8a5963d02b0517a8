from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, PrimaryKeyConstraint, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col, uuid_pk


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    base_currency: Mapped[str] = mapped_column(String(16))
    initial_cash: Mapped[Decimal]
    cash: Mapped[Decimal]
    # Cash held back by open buy orders; buying power = cash - reserved_cash.
    reserved_cash: Mapped[Decimal] = mapped_column(server_default=text("0"))
    realized_pnl: Mapped[Decimal] = mapped_column(server_default=text("0"))
    fees_paid: Mapped[Decimal] = mapped_column(server_default=text("0"))
    allow_short: Mapped[bool] = mapped_column(server_default=text("false"))
    trading_state: Mapped[str] = mapped_column(String(16), server_default="active")
    trading_state_reason: Mapped[str | None]
    peak_equity: Mapped[Decimal]
    # The risk group the account belongs to (risk/models.py: RiskGroup), if any.
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("risk_groups.id", ondelete="RESTRICT", use_alter=True), index=True
    )
    # Whether the group or one of its ancestors has an enabled limit: placement reads it with the account
    # row (no extra subquery) and then takes the group lock. Kept by every write that can change it
    # (membership, group limits, group parents), each of which also moves the account row's version.
    group_limited: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()
    # The last order-event seq of this account (order_events.seq): every event writer bumps it on the
    # row it already updates or locks, so numbering needs no lock of its own.
    event_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Position(Base):
    __tablename__ = "positions"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Indexed for the post-trade check, which finds the holders of a symbol on every price update.
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), index=True)
    quantity: Mapped[Decimal]
    avg_entry_price: Mapped[Decimal]
    realized_pnl: Mapped[Decimal] = mapped_column(server_default=text("0"))
    updated_at: Mapped[datetime] = created_at_col()

    __table_args__ = (PrimaryKeyConstraint("account_id", "symbol"),)


class EquitySnapshot(Base):
    __tablename__ = "equity_snapshots"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = created_at_col()
    equity: Mapped[Decimal]
    cash: Mapped[Decimal]

    __table_args__ = (
        Index("ix_equity_snapshots_account_ts", "account_id", "ts"),
        # Peak equity (drawdown) is max(equity) per account: one index-only row instead of a scan of
        # every snapshot the account ever had (measured 12.8 ms -> 0.016 ms at 50k snapshots).
        Index("ix_equity_snapshots_account_equity", "account_id", text("equity DESC")),
    )


class TradingStateChange(Base):
    __tablename__ = "trading_state_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[uuid.UUID | None]
    old_state: Mapped[str] = mapped_column(String(16))
    new_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None]
    created_at: Mapped[datetime] = created_at_col()
