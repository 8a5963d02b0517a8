"""Bulk actions on an account: cancel every open order, close a position or every position.

Each order is canceled in a transaction of its own, by the routine of a single cancel
(services.cancel_one: a simple order, then its account; a group member with its group), so one order
that cannot be canceled (filled meanwhile by a price update) is reported in `failed` and does not undo
the others. A close is a reduce-only market order placed through the usual
placement path, with every pre-trade check. Rules in docs/TRADING.md.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text

from app.domain.accounts.access import ensure_may_trade, visible_owner
from app.domain.accounts.models import Position
from app.domain.identity.schemas import Principal
from app.domain.trading import rules, services
from app.domain.trading.models import Order
from app.domain.trading.rules import OPEN_OR_HELD_STATUSES, OrderStatus
from app.domain.trading.schemas import (
    CancelAllOut,
    CancelFailure,
    CloseAllOut,
    CloseFailure,
    OrderCreate,
    OrderOut,
)
from app.lib.errors import ApiError, invalid, not_found

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# Open orders and held legs (a leg waiting for its entry's fill is canceled with it).
CANCELABLE = tuple(s.value for s in OrderStatus if s in OPEN_OR_HELD_STATUSES)
_LOT_SQL = text("SELECT lot_size FROM instruments WHERE symbol = :symbol")
CLOSE_ATTEMPTS = 3
# A close sized on a position that shrank before its own decision read is refused with one of these.
_SHRUNK = ("/insufficient-position", "/reduce-only")


async def cancel_all(
    conn: Any, principal: Principal, account_id: uuid.UUID, symbol: str | None
) -> CancelAllOut:
    owner = await visible_owner(conn, principal, account_id)
    ensure_may_trade(principal, owner)
    if symbol is not None and await conn.scalar(_LOT_SQL, {"symbol": symbol}) is None:
        # A misspelt symbol would otherwise cancel nothing and look like a done job: 422, as placement
        # answers it.
        raise invalid(f"Unknown symbol {symbol!r}", "symbol", slug="unknown-symbol")
    ids = await _cancelable_ids(conn, account_id, symbol)
    if conn.in_transaction():
        await conn.rollback()
    # What this request canceled: a member's cancel ends its group's other open members with it, which then
    # need no call of their own. A member another request (a concurrent cancel-all) canceled is `failed`.
    canceled: dict[uuid.UUID, None] = {}
    failed: list[CancelFailure] = []
    for order_id in ids:
        if order_id in canceled:
            continue
        try:
            ended = await services.cancel_one(
                conn, principal, account_id, order_id, "canceled by client (cancel all)", access_checked=True
            )
        except rules.OrderNotOpen as exc:
            failed.append(CancelFailure(order_id, f"already {exc.status}"))
            continue
        except (ApiError, rules.IllegalTransition, ValueError) as exc:
            failed.append(CancelFailure(order_id, str(getattr(exc, "detail", exc))))
            continue
        canceled.update(dict.fromkeys(ended))
    return CancelAllOut(canceled=list(canceled), failed=failed)


async def _cancelable_ids(conn: Any, account_id: uuid.UUID, symbol: str | None) -> list[uuid.UUID]:
    """The account's open orders and held legs, oldest first (read without locks: each is locked and
    checked again when it is canceled)."""
    query = select(Order.id).where(Order.account_id == account_id, Order.status.in_(CANCELABLE))
    if symbol is not None:
        query = query.where(Order.symbol == symbol)
    return list((await conn.scalars(query.order_by(Order.created_at, Order.id))).all())


def close_quantity(
    position: Decimal, lot_size: Decimal, quantity: Decimal | None, percentage: Decimal | None
) -> Decimal:
    """How much of a position (signed) a close sells or buys back: all of it, `quantity`, or `percentage`
    of it floored to the lot (never more than the position; nothing left to close is a 422)."""
    held = abs(position)
    if quantity is not None and percentage is not None:
        raise invalid("give either `quantity` or `percentage`, not both", "percentage")
    if quantity is not None:
        if not quantity.is_finite() or quantity <= 0:
            raise invalid("quantity must be greater than 0", "quantity")
        if quantity > held:
            raise invalid(f"quantity {quantity} exceeds the position of {held}", "quantity")
        return quantity
    if percentage is not None:
        if not percentage.is_finite() or percentage <= 0 or percentage > HUNDRED:
            raise invalid("percentage must be above 0 and at most 100", "percentage")
        qty = rules.floor_to_lot(held * percentage / HUNDRED, lot_size) if percentage < HUNDRED else held
        if qty <= 0:
            raise invalid(f"{percentage}% of {held} is less than one lot ({lot_size})", "percentage")
        return qty
    return held


async def close_position(
    conn: Any,
    principal: Principal,
    account_id: uuid.UUID,
    symbol: str,
    *,
    quantity: Decimal | None = None,
    percentage: Decimal | None = None,
    cancel_orders: bool = False,
) -> OrderOut:
    owner = await visible_owner(conn, principal, account_id)
    ensure_may_trade(principal, owner)
    held = await _held(conn, account_id, symbol)
    lot = await conn.scalar(_LOT_SQL, {"symbol": symbol})
    qty = close_quantity(held, lot, quantity, percentage)  # (a bad quantity or percentage: before any cancel)
    if cancel_orders:
        await cancel_all(conn, principal, account_id, symbol)
        # The position as it is now: a canceled exit may have filled first, or a price moved it meanwhile.
        held = await _held(conn, account_id, symbol)
        qty = close_quantity(held, lot, quantity, percentage)
    for attempt in range(CLOSE_ATTEMPTS):
        try:
            return await _place_close(conn, principal, account_id, symbol, held, qty)
        except ApiError as exc:
            # Refused as more than the position: if a fill shrank it since the read, size the close again
            # (a close of a given `quantity` stays that quantity, and its 422 stands).
            shrunk = exc.type_.endswith(_SHRUNK)  # type: ignore[union-attr]
            if quantity is not None or not shrunk or attempt + 1 == CLOSE_ATTEMPTS:
                raise
            now = await _held(conn, account_id, symbol)  # 404 once nothing is left to close
            if now == held:
                raise
            held, qty = now, close_quantity(now, lot, quantity, percentage)
    raise AssertionError("unreachable: the last attempt raises")


async def _held(conn: Any, account_id: uuid.UUID, symbol: str) -> Decimal:
    """The account's position in `symbol` (404 when there is none to close)."""
    held = await conn.scalar(
        select(Position.quantity).where(Position.account_id == account_id, Position.symbol == symbol)
    )
    if conn.in_transaction():
        await conn.rollback()  # (the next read sees what committed since)
    if not held:
        raise not_found("Position")
    return held


async def _place_close(
    conn: Any, principal: Principal, account_id: uuid.UUID, symbol: str, held: Decimal, qty: Decimal
) -> OrderOut:
    data = OrderCreate(
        symbol=symbol,
        side="sell" if held > 0 else "buy",
        type="market",
        quantity=qty,
        time_in_force="gtc",
        reduce_only=True,
    )
    if conn.in_transaction():
        await conn.rollback()
    order, _ = await services.place_order(conn, principal, account_id, data)
    assert isinstance(order, OrderOut)
    return order


async def close_all(
    conn: Any, principal: Principal, account_id: uuid.UUID, *, cancel_orders: bool
) -> CloseAllOut:
    owner = await visible_owner(conn, principal, account_id)
    ensure_may_trade(principal, owner)
    if cancel_orders:
        await cancel_all(conn, principal, account_id, None)
    rows = (
        await conn.execute(
            select(Position.symbol, Position.quantity)
            .where(Position.account_id == account_id, Position.quantity != 0)
            .order_by(Position.symbol)
        )
    ).all()
    orders: list[OrderOut] = []
    failed: list[CloseFailure] = []
    for symbol, held in rows:
        try:
            orders.append(await _place_close(conn, principal, account_id, symbol, held, abs(held)))
        except ApiError as exc:
            failed.append(CloseFailure(symbol, str(exc.detail)))
    return CloseAllOut(orders=orders, failed=failed)
