"""What goes over the wire: the server messages of docs/STREAMING.md, as msgspec Structs.

Pure: no I/O. The same builders serve a live publish and a replay from the durable log, so a replayed
`trade_update` is the same object as the live one (the live one is built from the values the writer
stored in the event row, the replayed one from the row).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from app.domain.trading.schemas import OrderOut
from app.lib.decimals import encode_json

# order_events.type -> the `event` of a trade_update (API.md, "Streams"). Events of the contingent-order
# work (replaced, triggered, held, activated, reduced) keep their names.
EVENT_NAMES: dict[str, str] = {
    "created": "new",
    "accepted": "accepted",
    "partially_filled": "partial_fill",
    "filled": "fill",
    "canceled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
    "triggered": "triggered",
    "replaced": "replaced",
    "held": "held",
    "activated": "activated",
    "reduced": "reduced",
}


class TradeFill(msgspec.Struct):
    id: uuid.UUID
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    realized_pnl: Decimal | None = None


class TradeUpdate(msgspec.Struct, kw_only=True):
    """One order event: `order` is the full Order after the event; `fill` and `position_qty` only on fills."""

    type: str = "trade_update"
    account_id: uuid.UUID
    seq: int
    event: str
    at: datetime
    order: OrderOut
    fill: TradeFill | msgspec.UnsetType = msgspec.UNSET
    position_qty: Decimal | msgspec.UnsetType = msgspec.UNSET


class ActivityPage(msgspec.Struct):
    """GET /accounts/{id}/activities: trade_updates ascending by seq; `next_after_seq` pages on (null at
    the end of the log)."""

    items: list[TradeUpdate]
    next_after_seq: int | None


class AccountUpdate(msgspec.Struct, kw_only=True):
    type: str = "account"
    account_id: uuid.UUID
    at: datetime
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    reserved_cash: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    trading_state: str


class PriceUpdate(msgspec.Struct, kw_only=True):
    type: str = "price"
    symbol: str
    price: Decimal
    ts: datetime


class BarUpdate(msgspec.Struct, kw_only=True):
    type: str = "bar"
    symbol: str
    timeframe: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class RiskMessage(msgspec.Struct, kw_only=True):
    """`violation` or `risk_alert`: the stored row as the REST list shows it, under `data`."""

    type: str
    account_id: uuid.UUID
    at: datetime
    data: dict[str, Any]


_decode_order = msgspec.json.Decoder(OrderOut).decode
_decode_dict = msgspec.json.Decoder(dict).decode
# The REST answers' encoder (app/lib/decimals.py): decimals in plain notation, as /activities pages them
# ("0", never "0E-8"), re-encoding only a message that has one in exponent form.
encode = encode_json


def trade_update(
    account_id: uuid.UUID,
    seq: int,
    event_type: str,
    at: datetime,
    order: OrderOut | str | bytes,
    fill_id: uuid.UUID | None,
    data: dict[str, Any] | str | None,
    position_qty: Decimal | None,
) -> TradeUpdate:
    """Build a trade_update from an order_events row's values (`order` and `data` as stored JSON text
    when read back from PostgreSQL)."""
    if not isinstance(order, OrderOut):
        order = _decode_order(order)
    fill: TradeFill | msgspec.UnsetType = msgspec.UNSET
    if fill_id is not None:
        if isinstance(data, (str, bytes)):
            data = _decode_dict(data)
        data = data or {}
        fill = TradeFill(
            id=fill_id,
            quantity=Decimal(data["quantity"]),
            price=Decimal(data["price"]),
            fee=Decimal(data["fee"]),
            liquidity=data["liquidity"],
            realized_pnl=Decimal(data["realized_pnl"]) if data.get("realized_pnl") is not None else None,
        )
    return TradeUpdate(
        account_id=account_id,
        seq=seq,
        event=EVENT_NAMES.get(event_type, event_type),
        at=at,
        order=order,
        fill=fill,
        position_qty=position_qty if position_qty is not None else msgspec.UNSET,
    )


def heartbeat(at: datetime) -> bytes:
    return b'{"type":"heartbeat","at":' + encode(at) + b"}"


def error(code: str, message: str) -> bytes:
    return encode({"type": "error", "code": code, "message": message})
