"""Replace an open order in place (`PATCH .../orders/{order_id}`): same id, `version` + 1, one `replaced`
event with the old and new values, every pre-trade check run again on the new values.

One transaction, locks in the documented order (services.py): the account's limited risk groups (if
any), the instrument FOR KEY SHARE (so no price update runs while the order changes, and the one that
ran before is committed and seen), the order FOR UPDATE, then the account. The checks see the account
as if the order were not there (its reservation released, its open quantity and count taken out) and
then decide on the replaced order as on a new one for the quantity it leaves open; the order's old
reservation is swapped for the new one in the same transaction. A breach writes nothing but the
recorded violation (committed after the rollback, as placement records it). Rules in docs/TRADING.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import ensure_may_trade, visible_owner
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.risk import checks as risk_checks
from app.domain.risk import group_pretrade, pretrade
from app.domain.risk.schemas import ViolationOut
from app.domain.streams import publish as streams
from app.domain.streams.events import defer_account_state, risk_payload
from app.domain.streams.log import assign_seqs, defer_trade_updates, stored_order
from app.domain.trading import decision, rules, sizing
from app.domain.trading.book import load_book
from app.domain.trading.contingent import check_sides
from app.domain.trading.models import Order, OrderEvent
from app.domain.trading.placement import VIOLATION_SQL
from app.domain.trading.queries import active_quantity
from app.domain.trading.rules import OPEN_STATUSES, EventType, InstrumentInfo
from app.domain.trading.schemas import OrderOut, OrderReplace
from app.domain.trading.services import ORDER_COLS, load_instrument
from app.lib.db import raw_connection, tx, utcnow
from app.lib.decimals import plain
from app.lib.errors import conflict, field_from_message, invalid, not_found
from app.lib.metrics import RISK_REJECTIONS
from app.lib.validation import positive

ZERO = Decimal(0)

# Which fields each order type takes in a replace (the trail fields only on a trailing stop, and only
# the kind it was placed with: checked below).
_FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    "market": frozenset({"quantity", "time_in_force"}),
    "limit": frozenset({"quantity", "limit_price", "time_in_force"}),
    "stop": frozenset({"quantity", "stop_price", "time_in_force"}),
    "stop_limit": frozenset({"quantity", "limit_price", "stop_price", "time_in_force"}),
    "trailing_stop": frozenset({"quantity", "trail_price", "trail_percent", "time_in_force"}),
}
_PRICE_FIELDS = ("limit_price", "stop_price", "trail_price", "trail_percent")
_GROUP_LIMITED_SQL = text("SELECT group_limited FROM accounts WHERE id = :account_id")
_ACTIVE_SQL = f"SELECT {active_quantity('o')}::text FROM orders o WHERE o.id = $1"


@dataclass(slots=True)
class _Proposed:
    """The replaced order in the shape the decision reads (`decision.Proposal`)."""

    symbol: str
    side: str
    type: str
    quantity: Decimal  # what the order leaves open: the new quantity minus what already filled
    limit_price: Decimal | None
    stop_price: Decimal | None


class _Breached(Exception):
    def __init__(self, breach: risk_checks.Breach, detail: dict[str, Any], owner_id: uuid.UUID) -> None:
        self.breach, self.detail, self.owner_id = breach, detail, owner_id


def _s(value: Any) -> Any:
    return plain(value) if isinstance(value, Decimal) else value


async def replace_order(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    order_id: uuid.UUID,
    data: OrderReplace,
) -> OrderOut:
    try:
        async with tx(conn):
            state = await _replace(conn, principal, account_id, order_id, data)
    except _Breached as exc:
        await _record_violation(conn, account_id, exc)
        RISK_REJECTIONS.labels(limit_type=exc.breach.limit_type).inc()
        raise pretrade.breach_error(exc.breach) from None
    return state


async def _replace(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    order_id: uuid.UUID,
    data: OrderReplace,
) -> OrderOut:
    owner = await visible_owner(conn, principal, account_id)
    ensure_may_trade(principal, owner)
    symbol = await conn.scalar(
        select(Order.symbol).where(Order.id == order_id, Order.account_id == account_id)
    )
    if symbol is None:
        raise not_found("Order")
    apg = await raw_connection(conn)
    group_limited = await conn.scalar(_GROUP_LIMITED_SQL, {"account_id": account_id})
    if group_limited:
        await apg.fetch(group_pretrade.GROUP_LOCK_SQL, account_id)  # groups first: the lock order of risk
    inst = await load_instrument(conn, symbol)
    assert inst is not None  # an order's instrument cannot be deleted (foreign key)
    o = (
        await conn.execute(
            select(*ORDER_COLS, Order.triggered, Order.reserved_cash, Order.priority_at)
            .where(Order.id == order_id)
            .with_for_update()
        )
    ).one()
    if o.status == "held":
        # A held leg's prices were checked against its entry at placement; it is replaced once the entry's
        # fill activates it (or the group is canceled and placed again).
        raise conflict("a held leg is replaced once its entry fills and activates it", order_status=o.status)
    if o.status not in OPEN_STATUSES:
        raise conflict(f"Order is already {o.status}", order_status=o.status)
    new = _new_values(o, data, inst)
    entry_moved = data.limit_price is not None or data.stop_price is not None
    if o.leg is None and o.order_class in ("bracket", "oto") and entry_moved:
        await _check_exits_still_fit(apg, o, new, inst)
    book = await load_book(conn, account_id, with_stats=True, symbol=symbol)
    assert book is not None
    remaining_before = o.quantity - o.filled_quantity
    # What the order takes of the position: an exit leg of a partly filled entry only what the entry
    # filled (queries.active_quantity), as the open-sell and reduce-only sums count it. Its quantity
    # follows its group: a replace changes its prices only.
    active = remaining_before
    if o.leg is not None and o.order_class in ("bracket", "oto"):
        active = Decimal(await apg.fetchval(_ACTIVE_SQL, o.id))
    # The account without this order's reservation and open sell: the checks then see the replaced order
    # as a new one (already in the open-order count: it adds no order, `orders=0`).
    book.reserved_cash -= o.reserved_cash
    if o.side == "sell":
        book.open_sell_quantity -= active
    remaining = new["quantity"] - o.filled_quantity
    checked_quantity = active if o.leg is not None else remaining
    proposed = _Proposed(symbol, o.side, o.type, checked_quantity, new["limit_price"], new["stop_price"])
    if o.type == "trailing_stop" and proposed.stop_price is None:
        proposed.stop_price = inst.last_price  # not yet computed: the trigger is at most the last price away
    # A replace that only lowers the quantity takes risk off: the `reduce_only` trading state, which refuses
    # whatever opens or grows a position, lets it through (a resting buy of a long may shrink, not only be
    # canceled); every other check still runs on the smaller order. (The book is this check's read.)
    changed = [f for f in data.__struct_fields__ if getattr(data, f) is not None]
    if changed == ["quantity"] and new["quantity"] < o.quantity and book.trading_state == "reduce_only":
        book.trading_state = "active"
    # A leg's group counts once, as this leg (its sibling exit shares its quantity): leave all of it out.
    root = (o.parent_id or o.id) if o.leg is not None else o.id
    other, others = await sizing.reduce_only_others(
        apg, book, symbol, o.side, o.reduce_only, exclude_root=root
    )
    plan = decision.decide(
        proposed, inst, book, other_reduce_only=other, others=others, notional_quantity=new["quantity"],
        orders=0,
    )
    price, breach = plan.price, plan.breach
    if breach is None and group_limited:
        breach = await group_pretrade.breach(apg, book, plan.proposed)
    if breach is not None:
        detail = {
            "symbol": symbol,
            "side": o.side,
            "type": o.type,
            "quantity": plain(checked_quantity),
            "price": plain(price),
            "replace_of": str(o.id),
            "message": breach.message,
        }
        raise _Breached(breach, detail, book.owner_id)
    reserved = decision.reservation(remaining, price, inst) if o.side == "buy" else ZERO
    return await _write(conn, o, data, new, reserved)


_LEGS_SQL = "SELECT leg, limit_price, stop_price FROM orders WHERE parent_id = $1"


@dataclass(slots=True)
class _Exit:
    limit_price: Decimal | None
    stop_price: Decimal | None


async def _check_exits_still_fit(apg: Any, o: Any, new: dict[str, Any], inst: InstrumentInfo) -> None:
    """A bracket's or OTO's entry at a new price keeps its exits on the right side of it, as placement
    requires (contingent.check_sides: the same 422, naming the leg's field)."""
    legs = {r["leg"]: _Exit(r["limit_price"], r["stop_price"]) for r in await apg.fetch(_LEGS_SQL, o.id)}
    entry = SimpleNamespace(
        order_class=o.order_class, side=o.side, type=o.type, limit_price=new["limit_price"],
        stop_price=new["stop_price"], take_profit=legs.get("take_profit"), stop_loss=legs.get("stop_loss"),
    )
    check_sides(entry, inst.last_price)


def _new_values(o: Any, data: OrderReplace, inst: InstrumentInfo) -> dict[str, Any]:
    """The order's fields after the replace, each rule failure a 422 naming its field."""
    named = [f for f in data.__struct_fields__ if getattr(data, f) is not None]
    if not named:
        raise invalid("the body names no field to change", "body")
    try:
        positive(data, "quantity", *_PRICE_FIELDS)
    except ValueError as exc:
        raise invalid(str(exc), field_from_message(str(exc))) from None
    allowed = _FIELDS_BY_TYPE.get(o.type, frozenset())
    for field in named:
        if field not in allowed:
            raise invalid(f"`{field}` does not apply to a {o.type} order", field)
    if o.type == "trailing_stop":
        if data.trail_price is not None and data.trail_percent is not None:
            raise invalid("give one of `trail_price` and `trail_percent`", "trail_percent")
        for kind in ("trail_price", "trail_percent"):
            if getattr(data, kind) is not None and getattr(o, kind) is None:
                raise invalid(
                    f"the trail kind cannot change: this order trails by "
                    f"{'trail_percent' if kind == 'trail_price' else 'trail_price'}",
                    kind,
                )
        trail_field = "trail_price" if data.trail_price is not None else "trail_percent"
        if data.trail_percent is not None and data.trail_percent >= 100:
            raise invalid("trail_percent must be below 100", "trail_percent")
        if (data.trail_price is not None or data.trail_percent is not None) and o.triggered:
            raise invalid("the stop has already triggered: its trail no longer applies", trail_field)
        sell_trail = data.trail_price if o.side == "sell" and o.hwm is not None else None
        if sell_trail is not None and sell_trail >= o.hwm:
            # (as at placement, where the hwm is the last price: a sell's stop must stay above zero)
            raise invalid(f"trail_price {sell_trail} must be below the high-water mark {o.hwm}", "trail_price")
    new = {
        f: getattr(o, f)
        for f in ("quantity", "limit_price", "stop_price", "trail_price", "trail_percent", "time_in_force")
    }
    new.update({f: getattr(data, f) for f in named})
    if data.quantity is not None:
        if o.order_class != "simple" or o.parent_id is not None:
            raise invalid(
                "the quantity of a contingent order follows its group: cancel and place again", "quantity"
            )
        if data.quantity <= o.filled_quantity:
            raise invalid(
                f"quantity {data.quantity} must exceed the filled quantity {o.filled_quantity}",
                "quantity",
                slug="below-filled",
            )
        if not rules.is_multiple(data.quantity, inst.lot_size):
            raise invalid(
                f"quantity {data.quantity} is not a multiple of lot_size {inst.lot_size}", "quantity"
            )
        if data.quantity < inst.min_quantity:
            raise invalid(f"quantity {data.quantity} is below min_quantity {inst.min_quantity}", "quantity")
    for name in ("limit_price", "stop_price", "trail_price"):
        value = getattr(data, name)
        if value is not None and not rules.is_multiple(value, inst.tick_size):
            raise invalid(f"{name} {value} is not a multiple of tick_size {inst.tick_size}", name)
    if data.stop_price is not None and o.triggered:
        raise invalid("the stop has already triggered: its stop_price no longer applies", "stop_price")
    stop, limit = new["stop_price"], new["limit_price"]
    if o.leg == "stop_loss" and stop is not None and limit is not None and (
        limit > stop if o.side == "sell" else limit < stop
    ):  # (as at placement: contingent.check_sides)
        field = "limit_price" if data.limit_price is not None else "stop_price"
        where = "below" if o.side == "sell" else "above"
        raise invalid(f"a stop-loss leg's limit_price {limit} must be at or {where} its stop_price {stop}", field)
    # A trailing stop's stop is its hwm minus the trail (docs/TRADING.md): a new trail moves it now.
    retrailed = o.type == "trailing_stop" and (data.trail_price is not None or data.trail_percent is not None)
    if retrailed and o.hwm is not None:
        new["stop_price"] = rules.trailing_stop_price(
            o.side, o.hwm, new["trail_price"], new["trail_percent"], inst.tick_size
        )
    if (
        data.time_in_force is not None and data.time_in_force != o.time_in_force
        and (o.order_class != "simple" or o.parent_id is not None)
    ):
        # A group's legs take the entry's time_in_force (and expiry) at placement; changing one order of
        # the group would leave day exits behind a gtc entry, or gtc exits after a day entry expired.
        raise invalid(
            "the time_in_force of a contingent order follows its group: cancel and place again",
            "time_in_force",
        )
    if data.time_in_force is not None and data.time_in_force in ("ioc", "fok"):
        if o.type not in ("stop", "stop_limit") or o.triggered:
            raise invalid(
                "ioc and fok apply when an order first executes: only an untriggered stop may take them",
                "time_in_force",
            )
    # A replace never executes: a new price the last price already reaches would fill or trigger at
    # once, which only a placement does (as a taker, with its own checks). Cancel and place instead.
    changed = [f for f in ("limit_price", "stop_price") if getattr(data, f) is not None]
    if retrailed and new["stop_price"] is not None:
        changed = ["stop_price"]
    if changed and inst.last_price is not None:
        view = rules.OrderView(
            o.side,
            o.type,
            new["time_in_force"],
            new["quantity"],
            o.filled_quantity,
            new["limit_price"],
            new["stop_price"],
            o.triggered,
        )
        m = rules.match(
            view,
            inst.last_price,
            None,
            slippage_bps=inst.slippage_bps,
            tick_size=inst.tick_size,
            lot_size=inst.lot_size,
            immediate=False,
        )
        if m.filled or m.newly_triggered:
            field = "stop_price" if m.newly_triggered else changed[-1]
            if retrailed:
                field = "trail_price" if data.trail_price is not None else "trail_percent"
                raise invalid(
                    f"the new trail puts the stop at {new['stop_price']}, which the last price "
                    f"{inst.last_price} already reaches: the order would trigger at once; cancel it and place "
                    "a new order instead",
                    field,
                    slug="replace-would-execute",
                )
            raise invalid(
                f"{field} {new[field]} is reached by the last price {inst.last_price}: the order "
                "would execute at once; cancel it and place a new order instead",
                field,
                slug="replace-would-execute",
            )
    return new


async def _write(
    conn: AsyncConnection, o: Any, data: OrderReplace, new: dict[str, Any], reserved: Decimal
) -> OrderOut:
    now = utcnow()
    named = [f for f in data.__struct_fields__ if getattr(data, f) is not None]
    # Time priority: lost by a larger quantity or a changed price, kept by a smaller quantity or a new
    # time in force.
    loses = new["quantity"] > o.quantity or any(new[f] != getattr(o, f) for f in _PRICE_FIELDS)
    expires_at = o.expires_at
    if new["time_in_force"] != o.time_in_force:
        expires_at = None
        if new["time_in_force"] == "day":
            inst = await load_instrument(conn, o.symbol)
            assert inst is not None
            expires_at = decision.next_session_close(now, inst)
    row = (
        await conn.execute(
            update(Order)
            .where(Order.id == o.id)
            .values(
                quantity=new["quantity"],
                limit_price=new["limit_price"],
                stop_price=new["stop_price"],
                trail_price=new["trail_price"],
                trail_percent=new["trail_percent"],
                time_in_force=new["time_in_force"],
                expires_at=expires_at,
                reserved_cash=reserved,
                version=Order.version + 1,
                priority_at=now if loses else Order.priority_at,
                updated_at=now,
            )
            .returning(*ORDER_COLS)
        )
    ).one()
    if reserved != o.reserved_cash:
        await conn.execute(
            update(Account)
            .where(Account.id == o.account_id)
            .values(reserved_cash=Account.reserved_cash - o.reserved_cash + reserved, updated_at=now)
        )
    state = OrderOut(*row)
    event = rules.event_row(
        o.id,
        o.account_id,
        EventType.REPLACED,
        o.status,
        o.status,
        now,
        data={
            "version": state.version,
            "old": {f: _s(getattr(o, f)) for f in named},
            "new": {f: _s(new[f]) for f in named},
            "priority": "lost" if loses else "kept",
        },
    )
    event["order_state"] = stored_order(state)
    owners = await assign_seqs(conn, [event])
    await conn.execute(insert(OrderEvent).values(**event))
    defer_trade_updates(conn, [event], owners, [state])
    if reserved != o.reserved_cash:
        await defer_account_state(conn, o.account_id, now)
    return state


async def _record_violation(conn: AsyncConnection, account_id: uuid.UUID, exc: _Breached) -> None:
    """The breach as placement records it: a pre_trade violation row (committed on its own) and the
    `risk` stream message."""
    breach = exc.breach
    created: datetime = utcnow()
    violation = ViolationOut(
        id=uuid.uuid4(),
        account_id=account_id,
        limit_id=uuid.UUID(breach.limit_id) if breach.limit_id else None,
        limit_type=breach.limit_type,
        limit_value=breach.limit_value,
        would_be=risk_checks.storable(breach.would_be),
        phase="pre_trade",
        detail=exc.detail,
        created_at=created,
    )
    apg = await raw_connection(conn)  # no transaction open (the replace's rolled back): commits on its own
    await apg.execute(
        VIOLATION_SQL,
        violation.id,
        account_id,
        violation.limit_id,
        breach.limit_type,
        breach.limit_value,
        violation.would_be,
        json.dumps(exc.detail),
        created,
    )
    streams.publish(*risk_payload("violation", exc.owner_id, account_id, created, violation))
