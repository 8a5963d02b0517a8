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

Placement of a group (and of a trailing stop) takes placement.py's optimistic path first
(`_place_optimistic`): one unlocked read of the full book, the entry's checks and execution with
placement.py's code (the entry is checked as a simple order: legs add no exposure), and one statement
that writes the entry, its legs and all their events only if the account and instrument rows are still
the versions read. Anything else (a lost race, a client_order_id already used, risk-group limits, an
unknown account or symbol) goes the locked way (`place`): the instrument FOR KEY SHARE, the account FOR
UPDATE, the book read, the same checks and the same one-statement write, in a transaction. Simple orders
never come here (services.place_order routes on
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

import asyncpg
import msgspec

from app.domain.identity.schemas import Principal
from app.domain.risk import checks as risk_checks
from app.domain.risk import group_pretrade
from app.domain.streams import publish as streams
from app.domain.trading import decision, rules, sizing
from app.domain.trading.kept import PlacementCaches, Snapshot
from app.domain.trading.placement import (
    BOOK_SQL,
    LEAN_READ_SQL,
    LOCK_ACCOUNT_ONLY_SQL,
    LOCK_SQL,
    READ_SQL,
    LostRace,
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
from app.lib.decimals import plain
from app.lib.errors import ApiError, conflict, invalid, not_found
from app.lib.ids import new_time_ordered_uuid
from app.lib.metrics import PLACEMENT_RETRIES, PLACEMENT_SNAPSHOTS

ZERO = Decimal(0)
GROUP_CLASSES = ("bracket", "oto", "oco")
_ENTRY_TIFS = ("gtc", "day")


async def place_order(
    conn: Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *, dry_run: bool = False,
    caches: PlacementCaches | None = None,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or with dry_run, only check) a body `decision.is_contingent` routes here, on placement's
    connection (`place`), with the app's placement caches (kept.PlacementCaches) if given."""
    if data.notional is not None:
        sizing.check_sizing_shape(data)
        raise invalid(f"`notional` is for simple market orders, not {data.order_class} {data.type} orders",
                      "notional", slug="notional-market-only")
    return await place(await order_connection(conn), principal, account_id, data, dry_run=dry_run, caches=caches)


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


def check_sides(data: Any, last: Decimal | None) -> None:
    """Exit prices on the right side: a take-profit beyond the reference, a stop-loss before it, where the
    reference is the entry's price (its limit, its stop, or the last price for a market entry or a
    marketable limit entry) or, for an OCO, the last price. `up`: the closing side profits when the price
    rises (a short's exits are buys)."""
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
        # A limit entry at or through the last price is marketable: it fills at once at the last price,
        # as a market entry does, and its legs are active from the next price. Exits checked against its
        # limit alone would accept a stop-loss between the fill and the limit, already through the market:
        # the next price would stop the position out, even a price above the fill.
        marketable = ref is not None and last is not None and (ref >= last if up else ref <= last)
        if data.type == "limit" and marketable:
            ref, what = last, f"the last price (the entry's limit {plain(data.limit_price)} is marketable)"
    word = ("above", "below") if up else ("below", "above")
    # A stop-limit stop-loss: once triggered its limit must let it trade on through the stop, or it rests on
    # the far side of the market and protects nothing (a long's exit sells: limit at or below the stop).
    sl_limit = data.stop_loss.limit_price if data.stop_loss is not None else None
    if sl is not None and sl_limit is not None and (sl_limit > sl if up else sl_limit < sl):
        raise invalid(
            f"stop_loss.limit_price {sl_limit} must be at or {word[1]} stop_loss.stop_price {sl}",
            "stop_loss.limit_price",
        )
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
        # Both of its orders are reduce-only exits: it must face a position it may at most close.
        return msgspec.structs.replace(data, limit_price=data.take_profit.limit_price, reduce_only=True)
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


def _same_exits(data: OrderCreate, legs: list[OrderOut]) -> bool:
    """Whether a repeated body names the exits its group was placed with (an OCO's take-profit is the
    order itself, compared by `_same_request`): a retry with other exit prices is another order."""
    want: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    if data.take_profit is not None and data.order_class != "oco":
        want["take_profit"] = (data.take_profit.limit_price, None)
    if data.stop_loss is not None:
        want["stop_loss"] = (data.stop_loss.limit_price, data.stop_loss.stop_price)
    have = {
        leg.leg: (leg.limit_price, leg.stop_price) for leg in legs if leg.leg in ("take_profit", "stop_loss")
    }
    return want == have


async def place(
    apg: Any,
    principal: Principal,
    account_id: uuid.UUID,
    data: OrderCreate,
    *,
    dry_run: bool = False,
    grouped: bool = False,
    caches: PlacementCaches | None = None,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or check) a bracket, OTO, OCO or trailing stop: optimistically (`_place_optimistic`), else in
    one locked transaction. The answer is the entry (an OCO: its take-profit leg) with its `legs`.
    `grouped`: the account is under risk-group limits, whose rows are locked first (as placement's
    `_place_locked`); an account found grouped without them is placed again with them."""
    check_shape(data)
    if not dry_run and not grouped:
        placed = await _place_optimistic(apg, principal, account_id, data, caches)
        if placed is not None:
            return placed, True
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
            legs = [OrderOut(*r) for r in await apg.fetch(_GROUP_SQL_APG, order.id) if r[0] != order.id]
            if not (_same_request(data, order) and _same_exits(data, legs)):
                raise conflict(
                    "client_order_id was already used with different order fields",
                    client_order_id=data.client_order_id,
                )
            await tr.rollback()
            return msgspec.structs.replace(order, legs=legs), False
        inst = None if inst_row is None else InstrumentInfo(*[inst_row[name] for name in INSTRUMENT_FIELDS])
        decision.validate_against_instrument(data, inst)
        assert inst is not None
        _check_ticks(data, inst.tick_size)
        check_sides(data, inst.last_price)
        checked = _order_to_check(data, inst)
        outcome = await decide_on_row(apg, principal, checked, row, inst, dry_run, True, after_commit=messages)
        if isinstance(outcome, risk_checks.Breach):
            await tr.commit()  # keep the recorded violation
            streams.publish_all(messages)
            raise rejected(outcome)
        if not isinstance(outcome, decision.Plan):
            await tr.rollback()
            return outcome
        placed = await _write(apg, outcome, data, checked, inst, row["row_version"], None, None, messages)
        assert not isinstance(placed, LostRace)  # both rows are locked: the write cannot lose a race
        await tr.commit()
        streams.publish_all(messages)
    except BaseException:
        try:
            await tr.rollback()
        except Exception:  # already committed or rolled back above
            pass
        raise
    return placed, True


def _columns(data: OrderCreate, inst: Any) -> dict[str, Any]:
    """The entry's (an OCO: its take-profit leg's; a trailing stop's) contingent columns."""
    oco = data.order_class == "oco"
    return {
        "order_class": data.order_class,
        "parent_id": None,
        "leg": "take_profit" if oco else None,
        "trail_price": data.trail_price,
        "trail_percent": data.trail_percent,
        "hwm": inst.last_price if data.type == "trailing_stop" else None,
        "reduce_only": oco or data.reduce_only,
    }


async def _write(
    apg: Any, plan: Any, data: OrderCreate, checked: OrderCreate, inst: Any, row_version: str,
    instrument_version: str | None, exchange_version: str | None, messages: list[tuple[str, bytes]] | None,
    *, remember: Any = None, caches: PlacementCaches | None = None,
) -> OrderOut | LostRace:
    """Execute the entry and write it with its legs and every event in one statement (placement's
    CONTINGENT_WRITE_SQL); with versions, only if the account and instrument rows are still those
    versions (else nothing is written and the row that changed is returned). `messages`: inside a
    transaction, where the stream messages wait for COMMIT (None: the write commits on its own).
    `remember` (the lean read or kept state the decision used): keep the state written in `caches` for
    the account's next order, as placement does for a simple order; exit legs the write made active
    (an OCO's stop-loss, a filled entry's exits) are open orders whose quantity the kept state does not
    count, so a kept open-sell quantity is dropped then (a sell of the account reads it again)."""
    legs: list[OrderOut] = []

    def legs_of(entry: OrderOut) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows, events, outs = _legs(data, entry, entry.created_at)
        legs.extend(outs)
        return rows, events

    entry = await execute_and_write(
        apg, plan, checked, utcnow(), row_version, instrument_version, exchange_version,
        after_commit=messages, columns=_columns(data, inst), legs=legs_of if data.order_class != "simple" else None,
        remember=remember, caches=caches,
    )
    if isinstance(entry, LostRace):
        return entry
    if caches is not None and any(leg.status in rules.OPEN_STATUSES and leg.side == "sell" for leg in legs):
        caches.forget_open_sells(entry.account_id)
    if data.order_class == "simple":
        return entry
    return msgspec.structs.replace(entry, legs=legs)


async def _place_kept(
    apg: Any, principal: Principal, data: OrderCreate, snapshot: Snapshot, caches: PlacementCaches
) -> OrderOut | None:
    """A group or trailing stop decided on the state the account's last write left (kept.Snapshot, as
    placement's kept path: the write applies only if the account, instrument and exchange rows are
    those versions) and written in one round trip. None: decide again on a fresh read (a rejection
    must rest on current state; a changed row wrote nothing)."""
    row = snapshot.row
    inst = InstrumentInfo(*[row[name] for name in INSTRUMENT_FIELDS])
    try:
        decision.validate_against_instrument(data, inst)
        _check_ticks(data, inst.tick_size)
        check_sides(data, inst.last_price)
        checked = _order_to_check(data, inst)
        fits = snapshot.fits(checked)
        outcome = await decide_on_row(apg, principal, checked, row, inst, False, False, record=False) if fits else None
    except ApiError:
        outcome = None
    if not isinstance(outcome, decision.Plan):
        PLACEMENT_SNAPSHOTS.labels(result="rejected").inc()
        return None
    try:
        placed = await _write(
            apg, outcome, data, checked, inst, row["row_version"], row["instrument_version"],
            row["exchange_version"], None, remember=row, caches=caches,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "uq_orders_account_id_client_order_id":
            raise
        PLACEMENT_SNAPSHOTS.labels(result="client_order_id_used").inc()
        return None
    if isinstance(placed, LostRace):
        PLACEMENT_SNAPSHOTS.labels(result="stale").inc()
        return None
    PLACEMENT_SNAPSHOTS.labels(result="used").inc()
    return placed


async def _place_optimistic(
    apg: Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, caches: PlacementCaches | None = None
) -> OrderOut | None:
    """Placement's optimistic path for a group or a trailing stop: one unlocked read (placement's lean
    read, or the full book for an account with enabled risk limits), the same checks as the locked path,
    and one statement that writes the entry, its legs and their events only if the account and instrument
    rows are the versions read (placement.py's module docstring says why that is sound: whatever the
    decision reads changes one of them). Two round trips where the locked path takes five. None: the
    locked path decides (an account or symbol to answer 404 or 422 for under locks, a client_order_id
    already used, risk-group limits, a lost race). With `caches`: on the account's kept state first
    (`_place_kept`: one round trip), and the state this write leaves is kept."""
    snapshot = caches.take_snapshot(account_id) if caches is not None else None
    if snapshot is not None and not snapshot.row["group_limited"]:
        assert caches is not None
        placed = await _place_kept(apg, principal, data, snapshot, caches)
        if placed is not None:
            return placed
    # The lean read for an account without enabled risk limits (most), as placement's, else the full one.
    row = await apg.fetchrow(LEAN_READ_SQL, account_id, data.side, data.symbol, data.client_order_id)
    full = row is not None and row["has_limits"]
    if full:
        row = await apg.fetchrow(READ_SQL, account_id, True, data.symbol, data.client_order_id)
    if (
        row is None or row["existing_order"] is not None or row["group_limited"] or row["symbol"] is None
        or not (principal.can_read_all_accounts or row["owner_id"] == principal.user_id)
    ):
        return None
    inst = InstrumentInfo(*[row[name] for name in INSTRUMENT_FIELDS])
    decision.validate_against_instrument(data, inst)
    _check_ticks(data, inst.tick_size)
    check_sides(data, inst.last_price)
    checked = _order_to_check(data, inst)
    outcome = await decide_on_row(apg, principal, checked, row, inst, False, full)
    if isinstance(outcome, risk_checks.Breach):
        raise rejected(outcome)  # (the violation is recorded: decide_on_row's insert committed on its own)
    assert isinstance(outcome, decision.Plan)  # no replay (no existing order), no dry run
    try:
        placed = await _write(
            apg, outcome, data, checked, inst, row["row_version"], row["instrument_version"],
            row["exchange_version"], None, remember=None if full else row, caches=caches,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "uq_orders_account_id_client_order_id":
            raise
        return None  # a concurrent order took the client_order_id: the locked path answers (replay or 409)
    if isinstance(placed, LostRace):
        PLACEMENT_RETRIES.labels(changed=placed.value).inc()
        return None
    return placed


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


def _legs(
    data: OrderCreate, entry: OrderOut, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[OrderOut]]:
    """The exit legs of an entry as executed (an OCO: its stop-loss leg): their rows, their events and
    each leg after them, written with the entry (`_write`). A bracket/OTO leg is held until the entry
    fills; an entry that filled at placement (it fills entirely there: ioc/fok entries are refused)
    activates them at once."""
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
                    data_={"quantity": plain(filled), "active_quantity": plain(filled)},
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
    return leg_rows, events, outs


# ------------------------------------------------------------------------------------------------ reads

# Every member of the group of order $1 (OrderOut's columns), in id order.
_GROUP_SQL_APG = f"""
SELECT {ORDER_COLUMNS} FROM orders o
 WHERE o.id = (SELECT coalesce(parent_id, id) FROM orders WHERE id = $1)
    OR o.parent_id = (SELECT coalesce(parent_id, id) FROM orders WHERE id = $1)
 ORDER BY o.id
"""
