from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from app.domain.trading import rules
from app.lib.validation import positive


def _names(enum: type[StrEnum]) -> Any:
    """The members' values as a `Literal`: the API's names of a rule, with `rules`' enum as their one
    source (a plain string in and out, an enum in the OpenAPI document)."""
    return Literal[tuple(m.value for m in enum)]


Side = _names(rules.Side)
OrderTypeName = _names(rules.OrderType)
OrderClassName = Literal["simple", "bracket", "oto", "oco"]
LegName = Literal["take_profit", "stop_loss"]
TifName = _names(rules.TimeInForce)
StatusName = _names(rules.OrderStatus)


class TakeProfit(msgspec.Struct, forbid_unknown_fields=True):
    """The take-profit leg of a bracket, OTO or OCO: a limit order on the closing side."""

    limit_price: Decimal

    def __post_init__(self) -> None:
        positive(self, "limit_price")


class StopLoss(msgspec.Struct, forbid_unknown_fields=True):
    """The stop-loss leg: a stop (or, with `limit_price`, a stop-limit) order on the closing side."""

    stop_price: Decimal
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        positive(self, "stop_price", "limit_price")


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    symbol: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    side: Side
    type: OrderTypeName
    # Exactly one of `quantity` and `notional` (a cash amount, market orders only: the quantity is
    # notional / last price at acceptance, floored to the lot). Which one is missing or doubled is a rule
    # checked at placement (422 naming the field), so both are optional here.
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TifName = "gtc"
    client_order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # Contingent orders and trailing stops (docs/TRADING.md "Contingent orders"); the combinations are
    # checked by app/domain/trading/contingent.py (422 naming the field).
    order_class: OrderClassName = "simple"
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    notional: Decimal | None = None
    # The order may only shrink the position (docs/TRADING.md, "Reduce-only orders").
    reduce_only: bool = False

    def __post_init__(self) -> None:
        positive(self, "quantity", "limit_price", "stop_price", "trail_price", "trail_percent", "notional")
        if self.quantity is None and self.notional is None:
            raise ValueError("`quantity` is required (or `notional` for a market order)")
        # An OCO's limit price is its take-profit's (`limit_price` may repeat it).
        if self.type in ("limit", "stop_limit") and self.limit_price is None and self.order_class != "oco":
            raise ValueError(f"`limit_price` is required for {self.type} orders")
        if self.type in ("stop", "stop_limit") and self.stop_price is None:
            raise ValueError(f"`stop_price` is required for {self.type} orders")
        if self.type in ("market", "stop", "trailing_stop") and self.limit_price is not None:
            raise ValueError(f"`limit_price` is not allowed on {self.type} orders")
        if self.type in ("market", "limit") and self.stop_price is not None:
            raise ValueError(f"`stop_price` is not allowed on {self.type} orders")

    def same_request(self, other: dict[str, Any]) -> bool:
        """Whether a stored order was created from the same fields (client_order_id replay). A notional
        order is compared by its notional: its quantity depends on the price at acceptance."""
        size = self.notional if self.notional is not None else self.quantity
        stored = other["notional"] if other.get("notional") is not None else other["quantity"]
        mine = (
            self.symbol, self.side, self.type, size, self.limit_price, self.stop_price, self.time_in_force,
            self.reduce_only,
        )
        theirs = (
            other["symbol"], other["side"], other["type"], stored, other["limit_price"], other["stop_price"],
            other["time_in_force"], other.get("reduce_only", False),
        )
        return mine == theirs


class OrderOut(msgspec.Struct):
    id: UUID
    client_order_id: str | None
    account_id: UUID
    symbol: str
    side: Side
    type: OrderTypeName
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TifName
    status: StatusName
    reject_reason: str | None
    fees: Decimal
    created_at: datetime
    updated_at: datetime
    order_class: OrderClassName = "simple"
    parent_id: UUID | None = None
    leg: LegName | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    reduce_only: bool = False
    notional: Decimal | None = None
    expires_at: datetime | None = None
    version: int = 1
    # The group's other orders (exit legs of an entry; an OCO's sibling), only with `?nested=true`.
    legs: list[OrderOut] | None = None


class OrderReplace(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH body: the fields to change; absent (or null) fields keep their values. Its rules (at least one
    field, positive amounts, the fields the order's type takes) are checked by the replace: 422."""

    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    time_in_force: TifName | None = None


class CancelFailure(msgspec.Struct):
    id: UUID
    reason: str


class CancelAllOut(msgspec.Struct):
    canceled: list[UUID]
    failed: list[CancelFailure]


class CloseFailure(msgspec.Struct):
    symbol: str
    reason: str


class CloseAllOut(msgspec.Struct):
    orders: list[OrderOut]
    failed: list[CloseFailure]


class OrderPage(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None


class ValidateOut(msgspec.Struct):
    accepted: bool
    estimated_price: Decimal | None = None
    estimated_cost: Decimal | None = None


class FillOut(msgspec.Struct):
    id: UUID
    order_id: UUID
    account_id: UUID
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    created_at: datetime


class FillPage(msgspec.Struct):
    items: list[FillOut]
    next_cursor: str | None = None


class OrderEventOut(msgspec.Struct):
    id: int
    order_id: UUID
    type: str
    status_from: str | None
    status_to: str
    reason: str | None
    fill_id: UUID | None
    data: dict[str, Any] | None
    created_at: datetime


class OrderEventList(msgspec.Struct):
    items: list[OrderEventOut]


class PositionOut(msgspec.Struct):
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    market_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal


class PositionList(msgspec.Struct):
    items: list[PositionOut]
