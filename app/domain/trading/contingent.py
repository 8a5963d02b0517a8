"""Contingent orders (bracket, OTO, OCO) and trailing stops: the body's checks and their placement.

A **group** is an entry with its exit legs (bracket: take-profit + stop-loss; OTO: one of them) or the two
legs of an OCO. Rows: every member carries the group's `order_class`; a leg has `leg` and
`reduce_only = true`; a bracket/OTO leg's `parent_id` is its entry; an OCO's stop-loss leg's
`parent_id` is its take-profit leg. So `coalesce(parent_id, id)` is the group's root for every member,
and a group is `id = root OR parent_id = root` (index ix_orders_parent).

Quantities (docs/TRADING.md "Contingent orders and trailing stops"; enforced by groups.py): the two
exit legs of a group share one quantity. Each leg is placed with the entry's quantity Q; a fill of one
leg lowers the other's `quantity` by as much (event `reduced`), so both always have
`quantity - filled_quantity = Q - X` with X the group's exit fills. What a leg may fill is capped by
what the entry filled, E: an active leg fills at most `E - X` (`groups.Groups.cap`), so the exits of a
group never fill more than its entry. When the entry ends (canceled, expired) having filled E < Q, its
open legs shrink by `Q - E`; a leg left with nothing to fill ends.

Placement of a group (and of a trailing stop) is one locked transaction of its own (`place`): the
instrument FOR KEY SHARE, the account FOR UPDATE, the book read, the entry's checks and execution with
placement.py's code (the entry is checked as a simple order: legs add no exposure), then the legs and
their events in one statement. Simple orders never come here (services.place_order routes on
`decision.is_contingent`).

Locking: everything that changes a group takes the instrument first (a price update FOR UPDATE, a
cancel or expiry FOR KEY SHARE), then the group's rows in id order, then the account: the documented
order (instrument -> orders -> accounts), so groups never deadlock with matching.

One module past 500 lines: a group's body checks and its one locked placement transaction are read
together (every check names the leg it refuses), and they change together with the group rules.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from app.domain.identity.schemas import Principal
from app.domain.risk import checks as risk_checks
from app.domain.risk import group_pretrade
from app.domain.streams import publish as streams
from app.domain.streams.events import stream_messages
from app.domain.trading import decision, rules, sizing
from app.domain.trading.placement import (
    BOOK_SQL,
    LOCK_ACCOUNT_ONLY_SQL,
    LOCK_SQL,
    decide_on_row,
    execute_and_write,
    existing_order,
    order_connection,
    rejected,
)
from app.domain.trading.queries import ORDER_COLUMNS
from app.domain.trading.rules import INSTRUMENT_FIELDS, EventType, InstrumentInfo
from app.domain.trading.schemas import OrderCreate, OrderOut, ValidateOut
from app.lib.db import utcnow
from app.lib.errors import conflict, invalid, not_found
from app.lib.ids import new_time_ordered_uuid

ZERO = Decimal(0)
GROUP_CLASSES = ("bracket", "oto", "oco")
_ENTRY_TIFS = ("gtc", "day")


async def place_order(
    conn: Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *, dry_run: bool = False
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or with dry_run, only check) a body `decision.is_contingent` routes here, on placement's
    connection (`place`)."""
    if data.notional is not None:
        sizing.check_sizing_shape(data)
        raise invalid(f"`notional` is for simple market orders, not {data.order_class} {data.type} orders",
                      "notional", slug="notional-market-only")
    return await place(await order_connection(conn), principal, account_id, data, dry_run=dry_run)


def _opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


# ------------------------------------------------------------------------------------------------ shape


def check_shape(data: OrderCreate) -> None:
    """The combinations of class, legs and trail a body may ask for (422 naming the field), before any
    read: everything here is about the body alone."""
    trailing = data.type == "trailing_stop"
    if trailing:
        if data.trail_price is not None and data.trail_percent is not None:
            raise invalid("give either trail_price or trail_percent, not both", "trail_percent")
        if data.trail_price is None and data.trail_percent is None:
            raise invalid("a trailing_stop needs trail_price or trail_percent", "trail_price")
        if data.stop_price is not None:
            raise invalid("a trailing_stop's stop_price follows its hwm: it cannot be given", "stop_price")
        if data.trail_percent is not None and data.trail_percent >= 100:
            raise invalid("trail_percent must be below 100", "trail_percent")
    else:
        for name in ("trail_price", "trail_percent"):
            if getattr(data, name) is not None:
                raise invalid(f"{name} is only for trailing_stop orders", name)
    cls = data.order_class
    if cls == "simple":
        for name in ("take_profit", "stop_loss"):
            if getattr(data, name) is not None:
                raise invalid(f"{name} needs order_class bracket, oto or oco", name)
        return
    if trailing:
        raise invalid(f"a {cls} order cannot be a trailing_stop", "type")
    if data.time_in_force not in _ENTRY_TIFS:
        raise invalid(f"a {cls} order's legs take its time_in_force: gtc or day only", "time_in_force")
    if cls in ("bracket", "oco"):
        for name in ("take_profit", "stop_loss"):
            if getattr(data, name) is None:
                raise invalid(f"a {cls} order needs {name}", name)
    if cls == "oto" and (data.take_profit is None) == (data.stop_loss is None):
        raise invalid("an oto order needs exactly one of take_profit and stop_loss", "take_profit")
    if cls == "oco":
        if data.type != "limit":
            raise invalid("an oco order's type must be limit (its take-profit leg)", "type")
        assert data.take_profit is not None
        if data.limit_price is not None and data.limit_price != data.take_profit.limit_price:
            raise invalid("an oco order's limit_price is its take_profit.limit_price", "limit_price")


def _check_ticks(data: OrderCreate, tick: Decimal) -> None:
    prices = [("trail_price", data.trail_price)]
    if data.take_profit is not None:
        prices.append(("take_profit.limit_price", data.take_profit.limit_price))
    if data.stop_loss is not None:
        prices += [
            ("stop_loss.stop_price", data.stop_loss.stop_price),
            ("stop_loss.limit_price", data.stop_loss.limit_price),
        ]
    for name, price in prices:
        if price is not None and not rules.is_multiple(price, tick):
            raise invalid(f"{name} {price} is not a multiple of tick_size {tick}", name)


def _check_sides(data: OrderCreate, last: Decimal | None) -> None:
    """Exit prices on the right side: a take-profit beyond the reference, a stop-loss before it, where the
    reference is the entry's price (its limit, its stop, or the last price for a market entry) or, for an
    OCO, the last price. `up`: the closing side profits when the price rises (a short's exits are buys)."""
    tp = data.take_profit.limit_price if data.take_profit is not None else None
    sl = data.stop_loss.stop_price if data.stop_loss is not None else None
    if data.order_class == "oco":
        up = data.side == "sell"  # closing a long
        ref = last
        what = "the last price"
    else:
        up = data.side == "buy"  # a long entry: its exits sell higher (take-profit) or lower (stop-loss)
        ref = (
            data.limit_price
            if data.type in ("limit", "stop_limit")
            else data.stop_price
            if data.type == "stop"
            else last
        )
        what = (
            "the entry's limit price"
            if data.type in ("limit", "stop_limit")
            else ("the entry's stop price" if data.type == "stop" else "the last price")
        )
    word = ("above", "below") if up else ("below", "above")
    if tp is not None and sl is not None and (tp <= sl if up else tp >= sl):
        raise invalid(
            f"take_profit.limit_price {tp} must be {word[0]} stop_loss.stop_price {sl}",
            "take_profit.limit_price",
        )
    if ref is None:
        return
    if tp is not None and (tp <= ref if up else tp >= ref):
        raise invalid(
            f"take_profit.limit_price {tp} must be {word[0]} {what} {ref}", "take_profit.limit_price"
        )
    if sl is not None and (sl >= ref if up else sl <= ref):
        raise invalid(f"stop_loss.stop_price {sl} must be {word[1]} {what} {ref}", "stop_loss.stop_price")


def _order_to_check(data: OrderCreate, inst: Any) -> OrderCreate:
    """The one order that placement's checks and execution see: a bracket's or OTO's entry (legs add no
    exposure), an OCO's take-profit leg (a limit on the closing side: the position it may sell counts
    once), a trailing stop with its first stop (from the last price)."""
    if data.order_class == "oco":
        assert data.take_profit is not None
        return msgspec.structs.replace(data, limit_price=data.take_profit.limit_price)
    if data.type == "trailing_stop":
        if inst.last_price is None:
            raise invalid(
                f"{inst.symbol} has no price yet: a trailing stop starts from the last price",
                "symbol",
                slug="no-market-price",
            )
        if data.side == "sell" and data.trail_price is not None and data.trail_price >= inst.last_price:
            raise invalid(
                f"trail_price {data.trail_price} must be below the last price {inst.last_price}",
                "trail_price",
            )
        stop = rules.trailing_stop_price(
            data.side, inst.last_price, data.trail_price, data.trail_percent, inst.tick_size
        )
        return msgspec.structs.replace(data, stop_price=stop)
    return data


# ------------------------------------------------------------------------------------------------ placement

_LEGS_SQL = """
WITH account AS (
  UPDATE accounts SET event_seq = event_seq + $2 WHERE id = $1 RETURNING event_seq
), entry AS (
  UPDATE orders SET order_class = $6, leg = $7, reduce_only = $8 WHERE id = $5
), legs AS (
  INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, limit_price, stop_price,
                      status, expires_at, created_at, updated_at, order_class, parent_id, leg, reduce_only)
  SELECT l.id, $1, l.symbol, l.side, l.type, l.time_in_force, l.quantity, l.limit_price, l.stop_price,
         l.status, l.expires_at, l.created_at, l.created_at, l.order_class, l.parent_id, l.leg, true
    FROM jsonb_to_recordset($3::jsonb) AS l(id uuid, symbol text, side text, type text,
                                           time_in_force text, quantity numeric, limit_price numeric,
                                           stop_price numeric, status text,
                                           expires_at timestamptz, created_at timestamptz, order_class text,
                                           parent_id uuid, leg text)
  RETURNING id
), events AS (
  INSERT INTO order_events (order_id, account_id, type, status_from, status_to, reason, data, created_at, seq,
                            order_state)
  SELECT e.order_id, $1, e.type, e.status_from, e.status_to, e.reason, e.data, e.created_at,
         account.event_seq - $2 + e.ordinality, e.order_state
    FROM account, ROWS FROM (jsonb_to_recordset($4::jsonb) AS (order_id uuid, type text, status_from text,
                                                                status_to text, reason text, data jsonb,
                                                                created_at timestamptz, order_state jsonb))
         WITH ORDINALITY AS e
)
SELECT event_seq FROM account
"""

_encode = msgspec.json.Encoder().encode


def _same_request(data: OrderCreate, existing: OrderOut) -> bool:
    mine = (
        data.symbol,
        data.side,
        data.quantity,
        data.time_in_force,
        data.order_class,
        data.trail_price,
        data.trail_percent,
    )
    theirs = (
        existing.symbol,
        existing.side,
        existing.quantity,
        existing.time_in_force,
        existing.order_class,
        existing.trail_price,
        existing.trail_percent,
    )
    if data.type == "trailing_stop":  # its stop_price follows the market
        return mine == theirs and existing.type == "trailing_stop"
    limit = (
        data.take_profit.limit_price if data.order_class == "oco" and data.take_profit else data.limit_price
    )
    return mine == theirs and (data.type, limit, data.stop_price) == (
        existing.type,
        existing.limit_price,
        existing.stop_price,
    )


async def place(
    apg: Any,
    principal: Principal,
    account_id: uuid.UUID,
    data: OrderCreate,
    *,
    dry_run: bool = False,
    grouped: bool = False,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or check) a bracket, OTO, OCO or trailing stop, in one locked transaction. The answer is the
    entry (an OCO: its take-profit leg) with its `legs`. `grouped`: the account is under risk-group
    limits, whose rows are locked first (as placement's `_place_locked`); an account found grouped
    without them is placed again with them."""
    check_shape(data)
    messages: list[tuple[str, bytes]] = []
    tr = apg.transaction()
    await tr.start()
    try:
        if grouped:
            await apg.fetch(group_pretrade.GROUP_LOCK_SQL, account_id)  # risk groups' rows first
        inst_row = await apg.fetchrow(LOCK_SQL, data.symbol, account_id)
        if inst_row is None:
            await apg.fetchrow(LOCK_ACCOUNT_ONLY_SQL, account_id)
        row = await apg.fetchrow(BOOK_SQL, account_id, True, data.symbol, data.client_order_id)
        if row is not None and row["group_limited"] and not grouped:
            await tr.rollback()
            return await place(apg, principal, account_id, data, dry_run=dry_run, grouped=True)
        if row is None or not (principal.can_read_all_accounts or row["owner_id"] == principal.user_id):
            raise not_found("Account")
        row = dict(row.items())
        existing = row.pop("existing_order")
        row["existing_order"] = None
        if existing is not None and not dry_run:
            order = existing_order(json.loads(existing) if isinstance(existing, str) else existing)
            if not _same_request(data, order):
                raise conflict(
                    "client_order_id was already used with different order fields",
                    client_order_id=data.client_order_id,
                )
            legs = await apg.fetch(_GROUP_SQL_APG, order.id)
            await tr.rollback()
            return msgspec.structs.replace(
                order, legs=[OrderOut(*r) for r in legs if r[0] != order.id]
            ), False
        inst = None if inst_row is None else InstrumentInfo(*[inst_row[name] for name in INSTRUMENT_FIELDS])
        decision.validate_against_instrument(data, inst)
        assert inst is not None
        _check_ticks(data, inst.tick_size)
        _check_sides(data, inst.last_price)
        checked = _order_to_check(data, inst)
        outcome = await decide_on_row(apg, principal, checked, row, inst, dry_run, True, after_commit=messages)
        if isinstance(outcome, risk_checks.Breach):
            await tr.commit()  # keep the recorded violation
            streams.publish_all(messages)
            raise rejected(outcome)
        if not isinstance(outcome, decision.Plan):
            await tr.rollback()
            return outcome
        now = utcnow()
        oco = data.order_class == "oco"
        columns = {
            "order_class": data.order_class,
            "parent_id": None,
            "leg": "take_profit" if oco else None,
            "trail_price": data.trail_price,
            "trail_percent": data.trail_percent,
            "hwm": inst.last_price if data.type == "trailing_stop" else None,
            "reduce_only": oco or data.reduce_only,
        }
        entry = await execute_and_write(
            apg, outcome, checked, now, row["row_version"], None, None, after_commit=messages,
            columns=columns,
            store_columns=data.order_class == "simple",  # a group's entry: with its legs, one statement
        )
        assert isinstance(entry, OrderOut)  # both rows are locked: the write cannot lose a race
        legs: list[OrderOut] = []
        if data.order_class != "simple":
            legs = await _write_legs(apg, outcome.book, data, entry, now, messages)
        await tr.commit()
        streams.publish_all(messages)
    except BaseException:
        try:
            await tr.rollback()
        except Exception:  # already committed or rolled back above
            pass
        raise
    return (msgspec.structs.replace(entry, legs=legs) if data.order_class != "simple" else entry), True


def _leg_out(
    leg_id: uuid.UUID,
    entry: OrderOut,
    *,
    leg: str,
    side: str,
    type_: str,
    quantity: Decimal,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    status: str,
    parent_id: uuid.UUID,
    now: datetime,
) -> OrderOut:
    return OrderOut(
        id=leg_id,
        client_order_id=None,
        account_id=entry.account_id,
        symbol=entry.symbol,
        side=side,  # type: ignore[arg-type]
        type=type_,
        quantity=quantity,
        filled_quantity=ZERO,
        avg_fill_price=None,
        limit_price=limit_price,  # type: ignore[arg-type]
        stop_price=stop_price,
        time_in_force=entry.time_in_force,
        status=status,
        reject_reason=None,  # type: ignore[arg-type]
        fees=ZERO,
        created_at=now,
        updated_at=now,
        order_class=entry.order_class,
        parent_id=parent_id,
        leg=leg,  # type: ignore[arg-type]
        reduce_only=True,
        expires_at=entry.expires_at,
    )


async def _write_legs(
    apg: Any, book: Any, data: OrderCreate, entry: OrderOut, now: datetime, messages: list[tuple[str, bytes]]
) -> list[OrderOut]:
    """The exit legs of a just-written entry (an OCO: its stop-loss leg), with their events, in one
    statement. A bracket/OTO leg is held until the entry fills; an entry that filled at placement (it
    fills entirely there: ioc/fok entries are refused) activates them at once."""
    oco = data.order_class == "oco"
    side = data.side if oco else _opposite(data.side)
    specs = []
    if data.take_profit is not None and not oco:
        specs.append(("take_profit", "limit", data.take_profit.limit_price, None))
    if data.stop_loss is not None:
        sl = data.stop_loss
        specs.append(
            (
                "stop_loss",
                "stop_limit" if sl.limit_price is not None else "stop",
                sl.limit_price,
                sl.stop_price,
            )
        )
    filled = entry.filled_quantity
    final = entry.status in ("filled", "canceled", "expired", "rejected")
    quantity = filled if final and not oco else entry.quantity
    leg_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    outs: list[OrderOut] = []

    def event(
        out: OrderOut,
        etype: EventType,
        frm: str | None,
        reason: str | None = None,
        data_: dict[str, Any] | None = None,
    ) -> None:
        if frm is not None:
            rules.transition(frm, out.status)
        events.append(
            {
                "order_id": out.id,
                "type": etype,
                "status_from": frm,
                "status_to": out.status,
                "reason": reason,
                "data": data_,
                "created_at": now,
                "order_state": out,
            }
        )

    for name, type_, limit, stop in specs:
        leg_id = new_time_ordered_uuid()
        common = dict(
            leg=name,
            side=side,
            type_=type_,
            quantity=quantity,
            limit_price=limit,
            stop_price=stop,
            parent_id=entry.id,
            now=now,
        )
        new = _leg_out(leg_id, entry, status="new", **common)  # type: ignore[arg-type]
        event(new, EventType.CREATED, None)
        if oco:
            status = "accepted"
            event(_leg_out(leg_id, entry, status=status, **common), EventType.ACCEPTED, "new")  # type: ignore[arg-type]
        else:
            status = "held"
            event(_leg_out(leg_id, entry, status=status, **common), EventType.HELD, "new")  # type: ignore[arg-type]
            if filled > 0:
                status = "accepted"
                event(
                    _leg_out(leg_id, entry, status=status, **common),
                    EventType.ACTIVATED,
                    "held",  # type: ignore[arg-type]
                    data_={"quantity": str(filled), "active_quantity": str(filled)},
                )
            elif final:
                status = "canceled"
                event(
                    _leg_out(leg_id, entry, status=status, **common),
                    EventType.CANCELED,
                    "held",  # type: ignore[arg-type]
                    reason="entry ended unfilled",
                )
        out = _leg_out(leg_id, entry, status=status, **common)  # type: ignore[arg-type]
        outs.append(out)
        leg_rows.append(
            {
                "id": leg_id,
                "symbol": entry.symbol,
                "side": side,
                "type": type_,
                "time_in_force": entry.time_in_force,
                "quantity": quantity,
                "limit_price": limit,
                "stop_price": stop,
                "status": status,
                "expires_at": entry.expires_at,
                "created_at": now,
                "order_class": entry.order_class,
                "parent_id": entry.id,
                "leg": name,
            }
        )
    last_seq = await apg.fetchval(
        _LEGS_SQL,
        book.id,
        len(events),
        _encode(leg_rows).decode(),
        _encode(events).decode(),
        entry.id,
        entry.order_class,
        entry.leg,
        entry.reduce_only,
    )
    messages.extend(stream_messages(book, events, last_seq, now, None))
    return outs


# ------------------------------------------------------------------------------------------------ reads

# Every member of the group of order $1 (OrderOut's columns), in id order.
_GROUP_SQL_APG = f"""
SELECT {ORDER_COLUMNS} FROM orders o
 WHERE o.id = (SELECT coalesce(parent_id, id) FROM orders WHERE id = $1)
    OR o.parent_id = (SELECT coalesce(parent_id, id) FROM orders WHERE id = $1)
 ORDER BY o.id
"""
