from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.domain.trading.queries import OPEN_OR_HELD_STATUS_SQL, OPEN_STATUS_SQL
from app.lib.db import Base, created_at_col, uuid_pk


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(16))
    time_in_force: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal]
    filled_quantity: Mapped[Decimal] = mapped_column(server_default=text("0"))
    avg_fill_price: Mapped[Decimal | None]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    triggered: Mapped[bool] = mapped_column(server_default=text("false"))
    status: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str | None]
    reserved_cash: Mapped[Decimal] = mapped_column(server_default=text("0"))
    fees: Mapped[Decimal] = mapped_column(server_default=text("0"))
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()
    # Contingent orders, trailing stops and replace (migration 0013; rules in docs/TRADING.md).
    order_class: Mapped[str] = mapped_column(String(8), server_default=text("'simple'"))
    # An exit leg's entry (an OCO's stop-loss leg: its take-profit leg); NULL for an entry or a simple order.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    leg: Mapped[str | None] = mapped_column(String(12))  # take_profit | stop_loss
    trail_price: Mapped[Decimal | None]
    trail_percent: Mapped[Decimal | None]
    hwm: Mapped[Decimal | None]  # trailing stop: the best price since acceptance
    reduce_only: Mapped[bool] = mapped_column(server_default=text("false"))
    notional: Mapped[Decimal | None]
    version: Mapped[int] = mapped_column(server_default=text("1"))  # + 1 per replace
    priority_at: Mapped[datetime | None]  # time priority after a replace that lost it; NULL: created_at

    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id"),
        Index("ix_orders_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
        Index("ix_orders_account_created", "account_id", text("created_at DESC"), text("id DESC")),
        # Resting orders per symbol in time priority: the matching engine's only scan.
        Index(
            "ix_orders_open_by_symbol",
            "symbol",
            "created_at",
            "id",
            postgresql_where=text(OPEN_STATUS_SQL),
        ),
        # An account's open orders and held legs (the `max_open_orders` count); also serves its open ones.
        Index("ix_orders_open_by_account", "account_id", postgresql_where=text(OPEN_OR_HELD_STATUS_SQL)),
        Index("ix_orders_day_expiry", "expires_at", postgresql_where=text(OPEN_STATUS_SQL)),
        # Room in each page for row versions written in place: trailing-stop moves and replaces change no
        # indexed column (migration 0020).
        {"postgresql_with": {"fillfactor": 85}},
    )


class Fill(Base):
    __tablename__ = "fills"

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    # The order's account, copied so an account's fills are read without a join. No foreign key of its
    # own: order_id already guarantees it exists (migration 0005); reconcile checks the copy.
    account_id: Mapped[uuid.UUID]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    fee: Mapped[Decimal]
    liquidity: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = created_at_col()
    # Booking order: fills of one transaction share a timestamp, and average-cost accounting replays them
    # (reconcile) in exactly the order they were booked.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)

    __table_args__ = (Index("ix_fills_account_created", "account_id", text("created_at DESC"), text("id DESC")),)


class OrderEvent(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID]  # the order's account, like Fill.account_id
    type: Mapped[str] = mapped_column(String(24))
    status_from: Mapped[str | None] = mapped_column(String(16))
    status_to: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None]
    fill_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_col()
    # The account's stream sequence (1, 2, 3, ... per account, no gaps), taken from accounts.event_seq in
    # the transaction that writes the event (migration 0008; app/domain/streams/log.py).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # NULL: written by a previous release
    # The Order object after this event and the position after a fill: a replayed trade_update is a copy
    # of this row. NULL for events written before migration 0008.
    order_state: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    position_qty: Mapped[Decimal | None]

    __table_args__ = (Index("uq_order_events_account_seq", "account_id", "seq", unique=True),)
