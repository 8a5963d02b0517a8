"""Orders on the paper exchange: placement (with pre-trade checks), matching, cancel, reads.

Lock order, everywhere: instrument -> order(s) -> account(s) (several accounts: by id). Placement takes
the instrument row FOR KEY SHARE and its account FOR UPDATE; a price update takes the instrument FOR
UPDATE, the resting orders FOR UPDATE SKIP LOCKED and then the accounts it fills, sorted. So placements
and price updates on one instrument serialise, orders of one account serialise, and nothing deadlocks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import ensure_may_trade, visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.markets.events import on_price
from app.domain.risk import checks as risk_checks
from app.domain.risk import pretrade
from app.domain.trading import rules
from app.domain.trading.book import AccountBook, fill_row, insert_fills, load_book
from app.domain.trading.models import Fill, Order, OrderEvent
from app.domain.trading.rules import EventType, OrderStatus, OrderType, OrderView, Side, TimeInForce
from app.domain.trading.schemas import (
    FillOut,
    OrderCreate,
    OrderEventOut,
    OrderOut,
    PositionOut,
    ValidateOut,
)
from app.lib.db import begin, tx, utcnow
from app.lib.errors import conflict, invalid, not_found
from app.lib.metrics import FILLS, ORDERS
from app.lib.pagination import decode_cursor, decode_int_cursor, encode_cursor

ZERO = Decimal(0)
OPEN = (OrderStatus.NEW.value, OrderStatus.ACCEPTED.value, OrderStatus.PARTIALLY_FILLED.value)

ORDER_COLS = (
    Order.id, Order.client_order_id, Order.account_id, Order.symbol, Order.side, Order.type, Order.quantity,
    Order.filled_quantity, Order.avg_fill_price, Order.limit_price, Order.stop_price, Order.time_in_force,
    Order.status, Order.reject_reason, Order.fees, Order.created_at, Order.updated_at,
)
FILL_COLS = (
    Fill.id, Fill.order_id, Fill.account_id, Fill.symbol, Fill.side, Fill.quantity, Fill.price, Fill.fee,
    Fill.liquidity, Fill.created_at,
)

_INSTRUMENT_SQL = text(
    """
    SELECT i.symbol, i.status, i.tick_size, i.lot_size, i.min_quantity, i.min_notional, i.last_price,
           e.maker_fee_rate, e.taker_fee_rate, e.slippage_bps, e.timezone, e.session_close
      FROM instruments i JOIN exchanges e ON e.code = i.exchange_code
     WHERE i.symbol = :symbol
     FOR KEY SHARE OF i
    """
)
_ACCOUNT_VISIBLE_SQL = text(
    "SELECT owner_id FROM accounts WHERE id = :account_id AND (owner_id = :user_id OR :read_all)"
)


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    symbol: str
    status: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    last_price: Decimal | None
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal
    timezone: str
    session_close: Any


async def _instrument(conn: AsyncConnection, symbol: str) -> InstrumentInfo | None:
    row = (await conn.execute(_INSTRUMENT_SQL, {"symbol": symbol})).one_or_none()
    return InstrumentInfo(*row) if row is not None else None


def _order_out(row: Any) -> OrderOut:
    return OrderOut(*row)


async def _visible_owner(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID) -> uuid.UUID:
    owner = await conn.scalar(
        _ACCOUNT_VISIBLE_SQL,
        {"account_id": account_id, "user_id": principal.user_id, "read_all": principal.can_read_all_accounts},
    )
    if owner is None:
        raise not_found("Account")
    return owner


def _event(order_id: uuid.UUID, account_id: uuid.UUID, etype: EventType, frm: str | None, to: str, now: datetime,
           *, reason: str | None = None, fill_id: uuid.UUID | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    if frm is not None and frm != to:
        rules.transition(frm, to)  # an illegal transition is a bug: raise before anything is written
    return {
        "order_id": order_id, "account_id": account_id, "type": etype.value, "status_from": frm, "status_to": to,
        "reason": reason, "fill_id": fill_id, "data": data, "created_at": now,
    }


def next_session_close(now: datetime, tz_name: str, close: Any) -> datetime:
    """The exchange's next trading-day end after `now` (when `day` orders expire)."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), close, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), close, tzinfo=tz)
    return candidate.astimezone(UTC)


# ------------------------------------------------------------------------------------------------ placement


def _validate_against_instrument(data: OrderCreate, inst: InstrumentInfo | None) -> None:
    if inst is None:
        raise invalid(f"Unknown symbol {data.symbol!r}", "symbol", slug="unknown-symbol")
    if inst.status != "trading":
        raise invalid(f"{inst.symbol} is halted", "symbol", slug="instrument-halted")
    if not rules.is_multiple(data.quantity, inst.lot_size):
        raise invalid(f"quantity {data.quantity} is not a multiple of lot_size {inst.lot_size}", "quantity")
    if data.quantity < inst.min_quantity:
        raise invalid(f"quantity {data.quantity} is below min_quantity {inst.min_quantity}", "quantity")
    for name in ("limit_price", "stop_price"):
        price = getattr(data, name)
        if price is not None and not rules.is_multiple(price, inst.tick_size):
            raise invalid(f"{name} {price} is not a multiple of tick_size {inst.tick_size}", name)
    if data.type == "market" and inst.last_price is None:
        raise invalid(f"{inst.symbol} has no price yet: market orders cannot fill", "symbol", slug="no-market-price")


def _estimated_price(data: OrderCreate, inst: InstrumentInfo) -> Decimal:
    """Worst-case execution price used for buying power and risk: what the order may pay or receive."""
    if data.type == "market":
        assert inst.last_price is not None
        return rules.fill_price_for_market(data.side, inst.last_price, inst.slippage_bps, inst.tick_size)
    if data.type in ("limit", "stop_limit"):
        assert data.limit_price is not None
        return data.limit_price
    assert data.stop_price is not None
    reference = max(data.stop_price, inst.last_price or data.stop_price) if data.side == "buy" else data.stop_price
    return rules.fill_price_for_market(data.side, reference, inst.slippage_bps, inst.tick_size)


def _reservation(qty: Decimal, price: Decimal, inst: InstrumentInfo) -> Decimal:
    rate = max(inst.maker_fee_rate, inst.taker_fee_rate, ZERO)
    return qty * price + rules.fee(qty * price, rate)


def _check_account(book: AccountBook, data: OrderCreate, inst: InstrumentInfo, price: Decimal) -> None:
    state = pretrade.portfolio_state(book)
    proposed = risk_checks.ProposedOrder(data.symbol, data.side, data.quantity, price)
    reason = risk_checks.trading_state_rejection(book.trading_state, state, proposed)
    if reason is not None:
        slug = "account-halted" if book.trading_state == "halted" else "reduce-only"
        raise invalid(reason, "side" if book.trading_state == "reduce_only" else "account", slug=slug)
    position = book.position(data.symbol).quantity
    if data.side == "sell" and not book.allow_short:
        sellable = position - book.open_sell_quantity
        if data.quantity > sellable:
            raise invalid(
                f"sell of {data.quantity} exceeds the sellable position {max(sellable, ZERO)} "
                "(this account does not allow short selling)",
                "quantity",
                slug="insufficient-position",
            )
    if data.side == "buy":
        cost = _reservation(data.quantity, price, inst)
        available = book.buying_power
        multiplier = pretrade.margin_multiplier(book)
        if multiplier > 1:
            gross = sum((abs(q * p) for q, p in state.positions.values()), ZERO)
            available = max(available, book.equity * multiplier - gross - book.reserved_cash)
        if cost > available:
            raise invalid(
                f"order needs {cost} but buying power is {available}", "quantity", slug="insufficient-buying-power"
            )


async def place_order(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *, dry_run: bool = False
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or with dry_run, only check) an order. Returns (result, created)."""
    now = utcnow()
    breach: risk_checks.Breach | None = None
    trans = await begin(conn)
    try:
        inst = await _instrument(conn, data.symbol)
        book = await load_book(conn, account_id, with_stats=True, symbol=data.symbol)
        if book is None or not (principal.can_read_all_accounts or book.owner_id == principal.user_id):
            raise not_found("Account")
        ensure_may_trade(principal, book.owner_id)
        if data.client_order_id is not None and not dry_run:
            existing = (
                await conn.execute(
                    select(*ORDER_COLS).where(Order.account_id == account_id, Order.client_order_id == data.client_order_id)
                )
            ).one_or_none()
            if existing is not None:
                await trans.rollback()
                if data.same_request(existing._mapping):
                    return _order_out(existing), False
                raise conflict(
                    "client_order_id was already used with different order fields", client_order_id=data.client_order_id
                )
        _validate_against_instrument(data, inst)
        assert inst is not None
        price = _estimated_price(data, inst)
        if data.quantity * price < inst.min_notional:
            raise invalid(f"notional {data.quantity * price} is below min_notional {inst.min_notional}", "quantity")
        _check_account(book, data, inst, price)
        breach = pretrade.check(book, pretrade.portfolio_state(book), risk_checks.ProposedOrder(data.symbol, data.side, data.quantity, price))
        if breach is not None:
            await pretrade.record_violation(
                conn, account_id, breach, "pre_trade",
                {"symbol": data.symbol, "side": data.side, "type": data.type, "quantity": str(data.quantity),
                 "price": str(price), "dry_run": dry_run},
            )
            await trans.commit()
            raise pretrade.breach_error(breach)
        if dry_run:
            await trans.rollback()
            return ValidateOut(accepted=True, estimated_price=price, estimated_cost=data.quantity * price), False
        order = await _insert_and_execute(conn, book, data, inst, price, now)
        await book.save(conn, now)
        await trans.commit()
    except BaseException:
        if trans.is_active:
            await trans.rollback()
        raise
    ORDERS.labels(type=data.type, status=order.status).inc()
    return order, True


async def _insert_and_execute(
    conn: AsyncConnection, book: AccountBook, data: OrderCreate, inst: InstrumentInfo, est_price: Decimal, now: datetime
) -> OrderOut:
    order_id = uuid.uuid4()
    events = [
        _event(order_id, book.id, EventType.CREATED, None, OrderStatus.NEW, now),
        _event(order_id, book.id, EventType.ACCEPTED, OrderStatus.NEW, OrderStatus.ACCEPTED, now),
    ]
    view = OrderView(data.side, data.type, data.time_in_force, data.quantity, ZERO, data.limit_price, data.stop_price)
    status = OrderStatus.ACCEPTED
    filled = ZERO
    avg_price: Decimal | None = None
    fees = ZERO
    fills: list[dict[str, Any]] = []
    triggered = False
    if inst.last_price is not None:
        m = rules.match(view, inst.last_price, None, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                        lot_size=inst.lot_size, immediate=True)
        triggered = m.triggered and data.type in ("stop", "stop_limit")
        if m.newly_triggered:
            events.append(_event(order_id, book.id, EventType.TRIGGERED, status, status, now,
                                 data={"last_price": str(inst.last_price)}))
        executable = m.triggered
        if data.time_in_force == "fok" and executable and not m.fill_qty == view.remaining:
            m = rules.MatchResult(m.triggered, ZERO, None, None, m.newly_triggered)
        if m.filled:
            assert m.fill_price is not None and m.liquidity is not None
            rate = inst.taker_fee_rate if m.liquidity == "taker" else inst.maker_fee_rate
            fee, realized = book.apply_fill(data.symbol, data.side, m.fill_qty, m.fill_price, rate)
            fill = fill_row(order_id, book.id, data.symbol, data.side, m.fill_qty, m.fill_price, fee, m.liquidity, now)
            fills.append(fill)
            new_status = rules.fill_status(view, m.fill_qty)
            events.append(_event(
                order_id, book.id, EventType.FILLED if new_status is OrderStatus.FILLED else EventType.PARTIALLY_FILLED,
                status, new_status, now, fill_id=fill["id"],
                data={"quantity": str(m.fill_qty), "price": str(m.fill_price), "fee": str(fee),
                      "liquidity": m.liquidity, "realized_pnl": str(realized)},
            ))
            status, filled, avg_price, fees = new_status, m.fill_qty, m.fill_price, fee
            FILLS.labels(liquidity=m.liquidity).inc()
        if status is not OrderStatus.FILLED and executable and data.time_in_force in ("ioc", "fok"):
            reason = "fok: could not fill entirely at once" if data.time_in_force == "fok" else "ioc: remainder canceled"
            events.append(_event(order_id, book.id, EventType.CANCELED, status, OrderStatus.CANCELED, now, reason=reason))
            status = OrderStatus.CANCELED
    reserved = ZERO
    if status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED) and data.side == "buy":
        reserved = _reservation(data.quantity - filled, est_price, inst)
        book.reserved_cash += reserved
    expires_at = next_session_close(now, inst.timezone, inst.session_close) if data.time_in_force == "day" else None
    values = {
        "id": order_id, "account_id": book.id, "client_order_id": data.client_order_id, "symbol": data.symbol,
        "side": data.side, "type": data.type, "time_in_force": data.time_in_force, "quantity": data.quantity,
        "filled_quantity": filled, "avg_fill_price": avg_price, "limit_price": data.limit_price,
        "stop_price": data.stop_price, "triggered": triggered, "status": status.value, "reject_reason": None,
        "reserved_cash": reserved, "fees": fees, "expires_at": expires_at, "created_at": now, "updated_at": now,
    }
    await conn.execute(insert(Order).values(**values))
    await insert_fills(conn, fills)
    await conn.execute(insert(OrderEvent), events)
    return OrderOut(
        id=order_id, client_order_id=data.client_order_id, account_id=book.id, symbol=data.symbol, side=data.side,
        type=data.type, quantity=data.quantity, filled_quantity=filled, avg_fill_price=avg_price,
        limit_price=data.limit_price, stop_price=data.stop_price, time_in_force=data.time_in_force,
        status=status.value, reject_reason=None, fees=fees, created_at=now, updated_at=now,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------------- matching

_RESTING_SQL = text(
    """
    SELECT id, account_id, side, type, time_in_force, quantity, filled_quantity, avg_fill_price, limit_price,
           stop_price, triggered, status, reserved_cash, fees
      FROM orders
     WHERE symbol = :symbol AND status IN ('new', 'accepted', 'partially_filled')
     ORDER BY created_at, id
     FOR UPDATE SKIP LOCKED
    """
)


@on_price
async def match_resting_orders(
    conn: AsyncConnection, symbol: str, price: Decimal, volume: Decimal | None, ts: datetime
) -> int:
    """Match every resting order of `symbol` against a new last price, in time priority.

    Runs inside the price update's transaction (the caller holds the instrument row FOR UPDATE).
    `volume` is the quantity available at this price, shared by the orders in time priority.
    """
    inst = (
        await conn.execute(
            text(
                "SELECT i.tick_size, i.lot_size, e.maker_fee_rate, e.taker_fee_rate, e.slippage_bps "
                "FROM instruments i JOIN exchanges e ON e.code = i.exchange_code WHERE i.symbol = :s"
            ),
            {"s": symbol},
        )
    ).one()
    resting = (await conn.execute(_RESTING_SQL, {"symbol": symbol})).all()
    if not resting:
        return 0
    now = utcnow()
    available = volume
    # Phase 1 (pure): what happens to each order at this price.
    plans: list[tuple[Any, rules.MatchResult, bool]] = []
    for o in resting:
        view = OrderView(o.side, o.type, o.time_in_force, o.quantity, o.filled_quantity, o.limit_price, o.stop_price, o.triggered)
        m = rules.match(view, price, available, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                        lot_size=inst.lot_size, immediate=False)
        cancel_rest = False
        if m.newly_triggered and o.time_in_force in ("ioc", "fok"):
            if o.time_in_force == "fok" and m.fill_qty != view.remaining:
                m = rules.MatchResult(True, ZERO, None, None, True)
            cancel_rest = True
        if m.filled and available is not None:
            available -= m.fill_qty
        if m.filled or m.newly_triggered or cancel_rest:
            plans.append((o, m, cancel_rest))
    if not plans:
        return 0
    # Phase 2: lock the accounts involved, in id order (no deadlock between concurrent updates).
    books: dict[uuid.UUID, AccountBook] = {}
    for account_id in sorted({o.account_id for o, _, _ in plans}):
        book = await load_book(conn, account_id)
        assert book is not None
        books[account_id] = book
    # Phase 3: apply.
    fill_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    fills_made = 0
    for o, m, cancel_rest in plans:
        book = books[o.account_id]
        view = OrderView(o.side, o.type, o.time_in_force, o.quantity, o.filled_quantity, o.limit_price, o.stop_price, o.triggered)
        status = OrderStatus(o.status)
        filled, avg, fees, reserved = o.filled_quantity, o.avg_fill_price, o.fees, o.reserved_cash
        reason = None
        if m.newly_triggered:
            events.append(_event(o.id, o.account_id, EventType.TRIGGERED, status, status, now,
                                 data={"last_price": str(price)}))
        qty = m.fill_qty
        if qty > 0 and o.side == "buy" and not book.allow_short and pretrade.margin_multiplier(book) <= 1:
            # A gap can make a triggered stop cost more than was reserved: never take cash below zero.
            assert m.fill_price is not None
            rate = inst.taker_fee_rate if m.liquidity == "taker" else inst.maker_fee_rate
            spendable = book.cash - (book.reserved_cash - reserved)
            unit = m.fill_price * (1 + max(rate, ZERO))
            affordable = rules.floor_to_lot(spendable / unit, inst.lot_size) if unit > 0 else ZERO
            if affordable < qty:
                qty = max(affordable, ZERO)
                cancel_rest, reason = True, "insufficient cash for the full fill"
        if qty > 0:
            assert m.fill_price is not None and m.liquidity is not None
            rate = inst.taker_fee_rate if m.liquidity == "taker" else inst.maker_fee_rate
            fee, realized = book.apply_fill(symbol, o.side, qty, m.fill_price, rate)
            fill = fill_row(o.id, o.account_id, symbol, o.side, qty, m.fill_price, fee, m.liquidity, now)
            fill_rows.append(fill)
            new_status = rules.fill_status(view, qty)
            events.append(_event(
                o.id, o.account_id, EventType.FILLED if new_status is OrderStatus.FILLED else EventType.PARTIALLY_FILLED,
                status, new_status, now, fill_id=fill["id"],
                data={"quantity": str(qty), "price": str(m.fill_price), "fee": str(fee), "liquidity": m.liquidity,
                      "realized_pnl": str(realized)},
            ))
            avg = ((avg or ZERO) * filled + m.fill_price * qty) / (filled + qty)
            remaining_before = o.quantity - filled
            release = reserved * qty / remaining_before if remaining_before > 0 else reserved
            if new_status is OrderStatus.FILLED:
                release = reserved
            reserved -= release
            book.reserved_cash -= release
            filled += qty
            fees += fee
            status = new_status
            fills_made += 1
            FILLS.labels(liquidity=m.liquidity).inc()
        if status is not OrderStatus.FILLED and cancel_rest:
            events.append(_event(o.id, o.account_id, EventType.CANCELED, status, OrderStatus.CANCELED, now,
                                 reason=reason or f"{o.time_in_force}: remainder canceled at trigger"))
            status = OrderStatus.CANCELED
            book.reserved_cash -= reserved
            reserved = ZERO
        await conn.execute(
            update(Order).where(Order.id == o.id).values(
                filled_quantity=filled, avg_fill_price=_round_price(avg), fees=fees, status=status.value,
                reserved_cash=reserved, triggered=o.triggered or m.triggered, updated_at=now,
                reject_reason=reason,
            )
        )
    await insert_fills(conn, fill_rows)
    if events:
        await conn.execute(insert(OrderEvent), events)
    for book in books.values():
        await book.save(conn, now)
    return fills_made


def _round_price(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(Decimal("1e-12")).normalize() if value.as_tuple().exponent < -12 else value  # type: ignore[operator]


# --------------------------------------------------------------------------------------------- cancel/expire


async def cancel_order(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> OrderOut:
    async with tx(conn):
        owner = await _visible_owner(conn, principal, account_id)
        ensure_may_trade(principal, owner)
        row = (
            await conn.execute(
                select(Order.status, Order.reserved_cash).where(Order.id == order_id, Order.account_id == account_id).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise not_found("Order")
        if row.status not in OPEN:
            raise conflict(f"Order is already {row.status}", order_status=row.status)
        await _close_order(conn, account_id, order_id, row.status, row.reserved_cash, OrderStatus.CANCELED,
                           EventType.CANCELED, "canceled by client")
    return await get_order(conn, principal, account_id, order_id)


async def _close_order(conn: AsyncConnection, account_id: uuid.UUID, order_id: uuid.UUID, status: str,
                       reserved: Decimal, to: OrderStatus, etype: EventType, reason: str) -> None:
    now = utcnow()
    event = _event(order_id, account_id, etype, status, to.value, now, reason=reason)
    await conn.execute(
        update(Order).where(Order.id == order_id).values(status=to.value, reserved_cash=ZERO, updated_at=now)
    )
    await conn.execute(insert(OrderEvent).values(**event))
    if reserved:
        await conn.execute(
            update(Account).where(Account.id == account_id).values(reserved_cash=Account.reserved_cash - reserved, updated_at=now)
        )


async def expire_day_orders(conn: AsyncConnection, now: datetime | None = None, batch: int = 500) -> int:
    """Expire `day` orders whose exchange session has closed. Each order in its own short transaction."""
    now = now or utcnow()
    expired = 0
    while True:
        async with tx(conn):
            rows = (
                await conn.execute(
                    select(Order.id, Order.account_id, Order.status, Order.reserved_cash)
                    .where(Order.expires_at <= now, Order.status.in_(OPEN))
                    .order_by(Order.expires_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for r in rows:
                await _close_order(conn, r.account_id, r.id, r.status, r.reserved_cash, OrderStatus.EXPIRED,
                                   EventType.EXPIRED, "day order: session closed")
            expired += len(rows)
        if len(rows) < batch:
            return expired


# --------------------------------------------------------------------------------------------------- reads


async def get_order(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> OrderOut:
    row = (
        await conn.execute(
            select(*ORDER_COLS)
            .join(Account, Account.id == Order.account_id)
            .where(Order.id == order_id, Order.account_id == account_id, visible_to(principal))
        )
    ).one_or_none()
    if row is None:
        raise not_found("Order")
    return _order_out(row)


_LIST_ORDERS_CACHE: dict[tuple[bool, bool, bool, bool], Any] = {}


async def list_orders(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, limit: int, cursor: str | None,
    status: str | None, symbol: str | None, side: str | None,
) -> tuple[list[OrderOut], str | None]:
    await _visible_owner(conn, principal, account_id)
    conditions = [Order.account_id == account_id]
    if cursor:
        ts, last_id = decode_cursor(cursor)
        conditions.append(func.row(Order.created_at, Order.id) < func.row(ts, last_id))
    if status:
        conditions.append(Order.status == status)
    if symbol:
        conditions.append(Order.symbol == symbol)
    if side:
        conditions.append(Order.side == side)
    stmt = (
        select(*ORDER_COLS)
        .where(and_(*conditions))
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit + 1)
    )
    rows = (await conn.execute(stmt)).all()
    items = [OrderOut(*r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def order_fills(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> list[FillOut]:
    await get_order(conn, principal, account_id, order_id)
    rows = await conn.execute(select(*FILL_COLS).where(Fill.order_id == order_id).order_by(Fill.created_at, Fill.id))
    return [FillOut(*r) for r in rows]


async def order_events(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> list[OrderEventOut]:
    await get_order(conn, principal, account_id, order_id)
    rows = await conn.execute(
        select(OrderEvent.id, OrderEvent.order_id, OrderEvent.type, OrderEvent.status_from, OrderEvent.status_to,
               OrderEvent.reason, OrderEvent.fill_id, OrderEvent.data, OrderEvent.created_at)
        .where(OrderEvent.order_id == order_id)
        .order_by(OrderEvent.id)
    )
    return [OrderEventOut(*r) for r in rows]


async def account_fills(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, limit: int, cursor: str | None, symbol: str | None
) -> tuple[list[FillOut], str | None]:
    await _visible_owner(conn, principal, account_id)
    conditions = [Fill.account_id == account_id]
    if cursor:
        ts, last_id = decode_cursor(cursor)
        conditions.append(func.row(Fill.created_at, Fill.id) < func.row(ts, last_id))
    if symbol:
        conditions.append(Fill.symbol == symbol)
    rows = (
        await conn.execute(
            select(*FILL_COLS).where(and_(*conditions)).order_by(Fill.created_at.desc(), Fill.id.desc()).limit(limit + 1)
        )
    ).all()
    items = [FillOut(*r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def positions(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID) -> list[PositionOut]:
    await _visible_owner(conn, principal, account_id)
    from app.domain.accounts.models import Position
    from app.domain.markets.models import Instrument

    rows = await conn.execute(
        select(Position.symbol, Position.quantity, Position.avg_entry_price, Instrument.last_price, Position.realized_pnl)
        .join(Instrument, Instrument.symbol == Position.symbol)
        .where(Position.account_id == account_id)
        .order_by(Position.symbol)
    )
    out = []
    for symbol, qty, avg, last, realized in rows:
        mv = qty * last if last is not None else None
        upnl = (last - avg) * qty if last is not None else None
        out.append(PositionOut(symbol, qty, avg, last, mv, upnl, realized))
    return out


__all__ = ["decode_int_cursor", "Side", "OrderType", "TimeInForce"]
