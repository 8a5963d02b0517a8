from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from app.lib.validation import non_negative

TradingState = Literal["active", "reduce_only", "halted"]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    initial_cash: Decimal
    base_currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,16}$")] = "USD"
    allow_short: bool = False

    def __post_init__(self) -> None:
        non_negative(self, "initial_cash")


class AccountOut(msgspec.Struct):
    id: UUID
    name: str
    base_currency: str
    initial_cash: Decimal
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    reserved_cash: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    allow_short: bool
    trading_state: TradingState
    trading_state_reason: str | None
    owner_id: UUID
    created_at: datetime


class AccountPage(msgspec.Struct):
    items: list[AccountOut]
    next_cursor: str | None


class TradingStateIn(msgspec.Struct, forbid_unknown_fields=True):
    state: TradingState
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    # `halted` cancels the account's open orders (held legs included) in the same transaction unless false;
    # the other states cancel nothing, so giving it with them is a 422 rather than silently ignored.
    cancel_open_orders: bool | None = None


class TradingStateOut(msgspec.Struct):
    account_id: UUID
    state: TradingState
    reason: str | None
    previous_state: TradingState
    canceled_orders: list[UUID] = msgspec.field(default_factory=list)  # what halting canceled
