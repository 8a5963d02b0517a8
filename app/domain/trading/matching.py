"""Price matching: what a new last price does to the resting orders of its symbol.

`match_resting_orders` runs inside the price update's transaction (the caller holds the instrument row
FOR UPDATE; lock order in services.py): it fetches and locks the orders the price can act on, asks
`rules.match` what each may do (phase 1, pure, sharing the price's volume in time priority), locks the
accounts involved in id order, and executes each order with `execution.execute` (the same function that
executes a new order at placement) under the caps of a resting order. Contingent groups follow their
group's rules (groups.py: the group caps its exit legs, and `on_entry_fill`, `on_leg_fill` and
`on_entry_final` run on the events `execute` returns). One statement writes the result (match_write.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.events import QuietBand
from app.domain.streams.events import defer_account_update
from app.domain.streams.log import defer_trade_updates
from app.domain.trading import execution, rules
from app.domain.trading import groups as grouping
from app.domain.trading.book import fill_row, load_books
from app.domain.trading.execution import Caps, OrderState
from app.domain.trading.match_write import write_match
from app.domain.trading.queries import OPEN
from app.domain.trading.rules import OPEN_STATUSES, OrderStatus, OrderView
from app.domain.trading.schemas import OrderOut
from app.lib.db import utcnow
from app.lib.metrics import FILLS

ZERO = Decimal(0)
# A resting order's caps: a buy never takes a cash account below zero; a reduce-only order never fills
# past flat; an exit leg also never past its group's cap (built per leg).
_RESTING_CAPS = Caps(cash=True)
_REDUCE_ONLY_CAPS = Caps(cash=True, reduce_only=True)

# Which resting orders a price can act on (fill, trigger a stop, or move a trailing stop's hwm), written
# once and used twice: to fetch (and lock) only those orders when a price arrives, and to derive the quiet
# band, the prices at which none acts. Mirrors rules.match with immediate=False: a market order or a
# triggered stop acts at any price; a limit (or a triggered stop-limit) when the price reaches its limit
# (buy <=, sell >=); an untriggered stop, stop-limit or trailing stop when the price reaches its stop (buy >=,
# sell <=); an untriggered trailing stop also when the price passes its hwm in the trader's favour (sell
# above, buy below: its stop follows). Orders it leaves out would get "nothing" from rules.match, and
# consume no volume, so matching only them changes nothing. Held legs are not open: they never act.
# tests/integration/test_quiet_band.py checks the equivalence against rules.match.
_ALWAYS_ACTS = "(type = 'market' OR (type IN ('stop', 'trailing_stop') AND triggered))"
_LIMIT_LIKE = "(type = 'limit' OR (type = 'stop_limit' AND triggered))"
_UNTRIGGERED_STOP = "(type IN ('stop', 'stop_limit', 'trailing_stop') AND NOT triggered)"
_TRAILING = "(type = 'trailing_stop' AND NOT triggered)"
_ACTS_AT_PRICE = f"""({_ALWAYS_ACTS}
         OR (side = 'buy' AND {_LIMIT_LIKE} AND limit_price >= :price)
         OR (side = 'sell' AND {_LIMIT_LIKE} AND limit_price <= :price)
         OR (side = 'buy' AND {_UNTRIGGERED_STOP} AND stop_price <= :price)
         OR (side = 'sell' AND {_UNTRIGGERED_STOP} AND stop_price >= :price)
         OR (side = 'sell' AND {_TRAILING} AND hwm < :price)
         OR (side = 'buy' AND {_TRAILING} AND hwm > :price))"""


class RestingOrder(NamedTuple):
    """A _RESTING_SQL row. Matching reads some sixty fields per order (the plan, the execution, the
    order's state after each event); a SQLAlchemy Row resolves each attribute by name (~0.5 us), a
    NamedTuple by index (~0.03 us): 25 ms of a price that fills 1,000 simple orders."""

    id: uuid.UUID
    account_id: uuid.UUID
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool
    status: str
    reserved_cash: Decimal
    fees: Decimal
    client_order_id: str | None
    created_at: datetime
    order_class: str
    parent_id: uuid.UUID | None
    leg: str | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    hwm: Decimal | None
    reduce_only: bool
    notional: Decimal | None
    expires_at: datetime | None
    version: int


class _Instrument(NamedTuple):
    """The instrument's and its exchange's terms, read on every order (rules.match, execution.execute)."""

    tick_size: Decimal
    lot_size: Decimal
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal


_INSTRUMENT_SQL = text(
    "SELECT i.tick_size, i.lot_size, e.maker_fee_rate, e.taker_fee_rate, e.slippage_bps "
    "FROM instruments i JOIN exchanges e ON e.code = i.exchange_code WHERE i.symbol = :s"
)
# Orders of a halted account are left out: matching never fills them (the kill switch), and they take no
# volume from others'. (Matching checks the locked account again before it fills.)
# Time priority is `coalesce(priority_at, created_at), id`: a replace that raised the quantity or changed a
# price set `priority_at` (replace.py). The partial index on (symbol, created_at, id) still finds the
# symbol's resting orders; the few that act at one price are sorted after the filter.
_RESTING_SQL = text(
    f"""
    SELECT {", ".join(RestingOrder._fields)}
      FROM orders
     WHERE symbol = :symbol AND status IN {OPEN}
       AND {_ACTS_AT_PRICE}
       AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = orders.account_id AND a.trading_state = 'halted')
     ORDER BY coalesce(priority_at, created_at), id
     FOR UPDATE SKIP LOCKED
    """
)
# The quiet band: below `lower` some buy limit fills, some sell stop triggers or some buy trailing stop's hwm
# moves; above `upper` some sell limit fills, some buy stop triggers or some sell trailing stop's hwm
# moves; in between nothing acts. One pass over the symbol's resting orders (the partial index
# ix_orders_open_by_symbol), no row locks.
_QUIET_BAND_SQL = text(
    f"""
    SELECT greatest(max(CASE WHEN side = 'buy' AND {_LIMIT_LIKE} THEN limit_price
                             WHEN side = 'sell' AND {_UNTRIGGERED_STOP} THEN stop_price END),
                    max(CASE WHEN side = 'buy' AND {_TRAILING} THEN hwm END)) AS lower,
           least(min(CASE WHEN side = 'sell' AND {_LIMIT_LIKE} THEN limit_price
                          WHEN side = 'buy' AND {_UNTRIGGERED_STOP} THEN stop_price END),
                 min(CASE WHEN side = 'sell' AND {_TRAILING} THEN hwm END)) AS upper,
           coalesce(bool_or({_ALWAYS_ACTS}), false) AS always
      FROM orders
     WHERE symbol = :symbol AND status IN {OPEN}
    """
)
async def match_resting_orders(
    conn: AsyncConnection, symbol: str, price: Decimal, volume: Decimal | None, ts: datetime
) -> int:
    """Match every resting order of `symbol` against a new last price, in time priority.

    Runs inside the price update's transaction (the caller holds the instrument row FOR UPDATE).
    `volume` is the quantity available at this price, shared by the orders in time priority. Members of
    contingent groups follow their group's rules (groups.py: `Groups`); trailing stops move their
    hwm and stop first (no event: a trail move is not a status change, and would be one per price).
    """
    inst = _Instrument(*(await conn.execute(_INSTRUMENT_SQL, {"s": symbol})).one())
    resting = [RestingOrder(*r) for r in await conn.execute(_RESTING_SQL, {"symbol": symbol, "price": price})]
    if not resting:
        return 0
    now = utcnow()
    roots = {o.parent_id or o.id for o in resting if o.order_class != "simple"}
    groups = await grouping.Groups.load(conn, roots) if roots else None  # (orders, before any account)
    # Phase 1 (pure): what happens to each order at this price, as if its volume were unlimited. With a
    # volume, phase 3 shares it: only the execution knows what an order really takes (an exit capped at a
    # flat position fills nothing), and what it leaves goes to the next order in time priority.
    plans: list[tuple[RestingOrder, rules.MatchResult]] = []
    trails: list[dict[str, Any]] = []
    pending: dict[uuid.UUID, Decimal] = {}  # exit fills planned per group at this price
    for o in resting:
        if o.type == "trailing_stop" and not o.triggered:
            hwm = rules.trail_hwm(o.side, o.hwm, price)
            if hwm != o.hwm:  # the price passed the hwm in the trader's favour: it cannot reach the stop
                stop = rules.trailing_stop_price(o.side, hwm, o.trail_price, o.trail_percent, inst.tick_size)
                trails.append({"id": o.id, "hwm": hwm, "stop": stop})
                continue
        view = OrderView(o.side, o.type, o.time_in_force, o.quantity, o.filled_quantity, o.limit_price, o.stop_price, o.triggered)
        take = None
        if o.leg is not None and groups is not None:
            leg = groups.members[o.id]
            take = groups.cap(leg) - pending.get(leg.root, ZERO)
        m = rules.match(view, price, take, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                        lot_size=inst.lot_size, immediate=False)
        m, cancel_rest = execution.first_moment(view, m, False)
        if m.filled and o.leg is not None:
            root = o.parent_id or o.id
            pending[root] = pending.get(root, ZERO) + m.fill_qty
        if m.filled or m.newly_triggered or cancel_rest:
            plans.append((o, m))
    if not plans:
        if trails:
            await write_match(conn, [], trails, [], [], [], now)
        return 0
    # Phase 2: lock the accounts involved, in id order (no deadlock between concurrent updates).
    books = await load_books(conn, sorted({o.account_id for o, _ in plans}))
    # Phase 3: execute each order (execution.py) and turn its steps into rows.
    fill_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    states: list[OrderOut] = []  # the order after each event (the stream's `order`)
    fills_made = 0
    order_rows: list[dict[str, Any]] = []  # the simple orders' new state (group members: `groups.write`)
    fill_counts: dict[str, int] = {}  # counted once per price: labels().inc() per fill costs ~0.1 ms
    available = volume  # what the orders before this one left of the price's volume

    def add(event: dict[str, Any], state: OrderOut) -> None:
        event["order_state"] = state  # (encoded with the rest by write_match)
        events.append(event)
        states.append(state)

    for o, m in plans:
        book = books[o.account_id]
        if book.trading_state == "halted":
            continue  # the kill switch: a halted account's orders never fill (nor trigger)
        member = groups.members.get(o.id) if groups is not None else None
        if member is not None:
            if member.status not in OPEN_STATUSES:
                continue  # ended earlier at this price by its group (the other leg filled)
            before = OrderState(OrderStatus(member.status), member.quantity, member.filled_quantity,
                                member.avg_fill_price, member.fees, member.reserved_cash, o.triggered)
        else:
            before = OrderState(OrderStatus(o.status), o.quantity, o.filled_quantity, o.avg_fill_price, o.fees,
                                o.reserved_cash, o.triggered)
        view = OrderView(o.side, o.type, o.time_in_force, before.quantity, before.filled, o.limit_price,
                         o.stop_price, o.triggered)
        if member is not None and member.leg is not None and groups is not None:
            caps = Caps(group=groups.cap(member), cash=True, reduce_only=o.reduce_only)
        else:
            caps = _REDUCE_ONLY_CAPS if o.reduce_only else _RESTING_CAPS
        if available is not None:  # matched again on what is left (the fok rule: execute's first_moment)
            take = available if caps.group is None else min(available, caps.group)
            m = rules.match(view, price, take, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                            lot_size=inst.lot_size, immediate=False)
        done = execution.execute(view, before, m, symbol=symbol, last_price=price, immediate=False, book=book,
                                 inst=inst, caps=caps)
        if not done.steps:
            continue  # nothing happened to it (no volume left, or a cap left it nothing to fill)
        if available is not None and done.fill is not None:
            available -= done.fill.quantity
        for step in done.steps:
            after = step.state
            fill = None
            if step.fill:
                assert done.fill is not None
                f = done.fill
                fill = fill_row(o.id, o.account_id, symbol, o.side, f.quantity, f.price, f.fee, f.liquidity, now)
                fill_rows.append(fill)
            event = rules.event_row(o.id, o.account_id, step.type, step.status_from, step.status_to, now,
                                    reason=step.reason, fill_id=fill and fill["id"], data=step.data)
            if step.fill:
                event["position_qty"] = step.position_qty
            add(event, _step_state(o, member, symbol, after, now))
            if member is None or groups is None:
                continue
            if step.fill:
                assert done.fill is not None
                changes = (groups.on_entry_fill(member, done.fill.quantity, now) if member.leg is None
                           else groups.on_leg_fill(member, done.fill.quantity, now))
                for change in changes:
                    add(*change)
            elif step.type is rules.EventType.CANCELED and member.leg is None:
                for change in groups.on_entry_final(member, now):
                    add(*change)
            for account_id, cash in groups.take_released().items():  # (members the group's rules ended)
                books[account_id].reserved_cash -= cash
        if done.fill is not None:
            fills_made += 1
            fill_counts[done.fill.liquidity] = fill_counts.get(done.fill.liquidity, 0) + 1
        if member is None:
            final = done.state
            order_rows.append({
                "id": o.id, "quantity": final.quantity, "filled_quantity": final.filled,
                "avg_fill_price": _round_price(final.avg), "fees": final.fees, "status": final.status.value,
                "reserved_cash": final.reserved, "triggered": final.triggered, "reject_reason": final.reason,
            })
    for liquidity, count in fill_counts.items():
        FILLS.labels(liquidity=liquidity).inc(count)
    if groups is not None:
        order_rows.extend(groups.take_dirty())
    # One statement writes it all (match_write.py), and numbers the events.
    owners = await write_match(conn, order_rows, trails, fill_rows, events, list(books.values()), now)
    if events:
        defer_trade_updates(conn, events, owners, states)
    for book in books.values():
        defer_account_update(conn, book, now)
    return fills_made


async def resting_quiet_band(conn: AsyncConnection, symbol: str) -> QuietBand:
    """The prices at which no resting order of `symbol` acts. Sound only with the instrument row locked
    FOR UPDATE by the caller, and read in a statement after that lock: a placement writes its order while
    holding the instrument FOR KEY SHARE (placement.py), so every order placed before the lock is
    committed and visible here, and none can be added until the caller commits."""
    row = (await conn.execute(_QUIET_BAND_SQL, {"symbol": symbol})).one()
    return QuietBand(row.lower, row.upper, row.always)


def _step_state(
    o: RestingOrder, member: grouping.Member | None, symbol: str, after: OrderState, now: datetime
) -> OrderOut:
    """The order after one of its matching events. A group member's state is kept on its `Member`
    (written once, after the group's rules ran); a simple order's is written by the caller."""
    if member is None:
        return _resting_state(o, symbol, after.status, after.filled, after.avg, after.fees, after.reason, now)
    member.status, member.filled_quantity, member.fees = after.status.value, after.filled, after.fees
    member.avg_fill_price, member.reserved_cash = _round_price(after.avg), after.reserved
    member.triggered, member.reject_reason, member.updated_at, member.dirty = (after.triggered, after.reason, now,
                                                                               True)
    return member.out()


def _resting_state(
    o: RestingOrder, symbol: str, status: OrderStatus, filled: Decimal, avg: Decimal | None, fees: Decimal,
    reason: str | None, now: datetime,
) -> OrderOut:
    """A resting order (a _RESTING_SQL row) after one of its events, as the orders row will hold it."""
    return OrderOut(
        o.id, o.client_order_id, o.account_id, symbol, o.side, o.type, o.quantity, filled, _round_price(avg),
        o.limit_price, o.stop_price, o.time_in_force, status.value, reason, fees, o.created_at, now,  # type: ignore[arg-type]
        o.order_class, o.parent_id, o.leg, o.trail_price, o.trail_percent, o.hwm, o.reduce_only, o.notional,
        o.expires_at, o.version,
    )


def _round_price(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(Decimal("1e-12")).normalize() if value.as_tuple().exponent < -12 else value  # type: ignore[operator]


