"""Order placement: the hottest write path, in two database round trips.

1. One read (its own snapshot, no lock): the instrument, the account book (positions, and for an account
   with enabled risk limits the order stats and limits too: LEAN_READ_SQL / READ_SQL), any order with
   the same client_order_id, and the account row's version (`xmin`).
2. Every rule runs in Python on that snapshot (decision.py's pure `decide`, on the shared `AccountBook`).
3. One data-modifying statement writes the order, its fill, its events, the position, the account and
   the equity snapshot, and commits on its own. It applies only if the account row and the instrument
   row are still the versions (`xmin`) that were read; otherwise nothing is written and the order is
   decided again under row locks (`_place_locked`: BEGIN; lock the instrument FOR KEY SHARE and the
   account FOR UPDATE; read; write; COMMIT), which cannot miss.

Why optimistic first: every change to what placement decides on updates the account row (fills, other
placements, cancels that release cash, trading-state changes, risk-limit changes) or the instrument row
(prices, halts, tick and lot changes), so "both versions are unchanged" means "the decision was taken on
current state". The write locks the account for one statement instead of a
transaction spanning four round trips and the Python in between, and it saves BEGIN, COMMIT and the lock
round trip (docs/BENCHMARKS.md has the numbers). Orders of one account still serialise (the
conditional UPDATE waits for the row and then re-checks the version); a lost race costs one locked retry.
The instrument check keeps the guarantee that a price update never misses an order placed while it
runs: either the write sees the new version (and fails over to the locked path, which decides at the
new price), or the price update's sweep, which waits for the instrument lock, sees the committed order.

It talks to asyncpg directly, on a connection of the order pool (app/lib/db.py: create_order_pool) or
the one under a SQLAlchemy connection when a job or a test passes one: SQLAlchemy Core's statement
building and result processing cost more than the rest of the path together, and this path is what bots
hammer.

The statements are placement_sql.py's; executing the order at the last price (fill, ioc/fok remainder,
events, reservation) is execution.py's `execute`, shared with price matching; what is here is choosing
the path and writing. One module past 500 lines on purpose: its paths (kept state, optimistic, grouped,
locked) and the per-process hints that choose between them are one mechanism, read together.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.risk import checks as risk_checks
from app.domain.risk import group_pretrade, pretrade
from app.domain.risk.group_pretrade import GuardParams
from app.domain.risk.schemas import ViolationOut
from app.domain.streams import publish as streams
from app.domain.streams.events import risk_payload, stream_messages
from app.domain.trading import decision, execution, rules, sizing
from app.domain.trading.book import book_from_row
from app.domain.trading.decision import Plan
from app.domain.trading.kept import GroupState, PlacementCaches, Snapshot
from app.domain.trading.placement_sql import (
    BOOK_SQL,
    CONTINGENT_COLUMNS,
    CONTINGENT_WRITE_SQL,
    GROUP_WRITE_SQL,
    LEAN_READ_GROUP_SQL,
    LEAN_READ_SQL,
    LOCK_ACCOUNT_ONLY_SQL,
    LOCK_SQL,
    READ_GROUP_SQL,
    READ_SQL,
    VIOLATION_SQL,
    WRITE_SQL,
    WriteParams,
)
from app.domain.trading.queries import ORDER_FIELDS
from app.domain.trading.rules import (
    INSTRUMENT_FIELDS,
    OPEN_STATUSES,
    EventType,
    InstrumentInfo,
    OrderStatus,
    OrderView,
)
from app.domain.trading.schemas import OrderCreate, OrderOut, ValidateOut
from app.lib.db import raw_connection, utcnow
from app.lib.decimals import encode_json, plain
from app.lib.errors import ApiError, conflict, not_found
from app.lib.ids import new_time_ordered_uuid
from app.lib.metrics import FILLS, ORDERS, PLACEMENT_RETRIES, PLACEMENT_SNAPSHOTS, RISK_REJECTIONS

ZERO = Decimal(0)

# What the order after its last event gives a group's legs: their rows and their events (contingent.py).
LegsOf = Callable[[OrderOut], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


_NO_MATCH = rules.MatchResult(False, ZERO, None, None)  # (an instrument without a price: the order rests)
_NO_FILL = (None, None, None, None)
_COUNTERS: dict[tuple[Any, ...], Any] = {}


def _counter(metric: Any, *labels: str) -> Any:
    """The labelled child of a Prometheus counter, kept: `labels()` takes a lock and builds a key per call.
    Children live as long as their parent, so holding them changes nothing that is exported."""
    child = _COUNTERS.get((metric, *labels))
    if child is None:
        child = _COUNTERS[(metric, *labels)] = metric.labels(*labels)
    return child


def existing_order(values: list[Any]) -> OrderOut:
    """The stored order of a client_order_id replay, from `_EXISTING_ORDER_SQL`'s JSON array."""
    return msgspec.convert(dict(zip(ORDER_FIELDS, values, strict=True)), OrderOut)


async def order_connection(conn: AsyncConnection | Any) -> Any:
    """The asyncpg connection placement talks to: `conn` itself (the order pool's), or the one under a
    SQLAlchemy connection, after ending the implicit read transaction an earlier SQLAlchemy call left."""
    if isinstance(conn, AsyncConnection) and conn.in_transaction():
        await conn.rollback()
    return await raw_connection(conn)


async def place_order(
    conn: AsyncConnection | Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *,
    dry_run: bool = False, caches: PlacementCaches | None = None,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or with dry_run, only check) a simple order. Returns (result, created). Contingent orders and
    trailing stops take contingent.py's locked path (services.place_order routes on the body).

    `conn` is an asyncpg connection from the order pool (the HTTP path) or a SQLAlchemy connection (jobs,
    tests), whose asyncpg connection is then used directly. `caches`: the app's (kept.PlacementCaches);
    without them the order is decided on a fresh read and nothing is kept."""
    if decision.is_contingent(data):
        raise TypeError("contingent orders and trailing stops are placed by services.place_order")
    if data.notional is not None:
        sizing.check_sizing_shape(data)
    apg = await order_connection(conn)
    caches = caches if caches is not None else PlacementCaches()
    if not dry_run and caches.is_contended(account_id):
        return await _place_locked(apg, principal, account_id, data)
    snapshot = None if dry_run else caches.take_snapshot(account_id)
    if snapshot is not None and snapshot.fits(data):
        if snapshot.row["group_limited"]:
            async with caches.gate(snapshot.row["group_id"]):
                placed = await _place_on_snapshot(apg, principal, data, snapshot, caches)
                if placed is not None:
                    return placed, True
                return await _place_grouped(apg, principal, account_id, data, caches.is_limited(account_id), caches)
        placed = await _place_on_snapshot(apg, principal, data, snapshot, caches)
        if placed is not None:
            return placed, True
    full = caches.is_limited(account_id)
    group = None if dry_run else caches.group_of(account_id)
    if group is not None:
        async with caches.gate(group):
            return await _place_grouped(apg, principal, account_id, data, full, caches)
    if full:
        row = await apg.fetchrow(READ_SQL, account_id, True, data.symbol, data.client_order_id)
    else:
        row = await apg.fetchrow(LEAN_READ_SQL, account_id, data.side, data.symbol, data.client_order_id)
        if row is not None and row["has_limits"]:
            caches.mark_limited(account_id)
            full = True
            row = await apg.fetchrow(READ_SQL, account_id, True, data.symbol, data.client_order_id)
    if row is not None and row["group_limited"] and not dry_run:
        caches.mark_grouped(account_id, row["group_id"])
        async with caches.gate(row["group_id"]):  # (read again, with the groups' sums: once a minute)
            return await _place_grouped(apg, principal, account_id, data, full, caches)
    inst = None
    if row is not None and row["symbol"] is not None:
        inst = InstrumentInfo(*[row[name] for name in INSTRUMENT_FIELDS])
    outcome = await decide_on_row(apg, principal, data, row, inst, dry_run, full)
    if isinstance(outcome, risk_checks.Breach):
        raise rejected(outcome)
    if not isinstance(outcome, Plan):
        return outcome
    order = await execute_and_write(
        apg, outcome, data, utcnow(), row["row_version"], row["instrument_version"], row["exchange_version"],
        remember=None if full else row, caches=caches,
    )
    if isinstance(order, LostRace):
        # Another writer changed the account (or the instrument: a price, a halt) between the read and the
        # write: nothing was written. Decide again under locks, where no race is possible.
        PLACEMENT_RETRIES.labels(changed=order.value).inc()
        if order is LostRace.ACCOUNT:  # (a busy price feed is no reason to stop trying optimistically)
            caches.mark_contended(account_id)
        return await _place_locked(apg, principal, account_id, data)
    return order, True


async def _place_grouped(
    apg: Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, full: bool, caches: PlacementCaches
) -> tuple[OrderOut | ValidateOut, bool]:
    """An order of an account under group limits (app/domain/risk/group_pretrade.py), with the process's
    gate of its group held: decided on one read of the book and of the limited groups' sums and versions,
    and written only if none of those groups took an order since (GROUP_WRITE_SQL); otherwise decided
    again under the groups' locks."""
    if full:
        row = await apg.fetchrow(READ_GROUP_SQL, account_id, True, data.symbol, data.client_order_id)
    else:
        args = (account_id, data.side, data.symbol, data.client_order_id)
        row = await apg.fetchrow(LEAN_READ_GROUP_SQL, *args)
        if row is not None and row["has_limits"]:
            caches.mark_limited(account_id)
            full = True
            row = await apg.fetchrow(READ_GROUP_SQL, account_id, True, data.symbol, data.client_order_id)
    grouped = row is not None and row["group_limited"]
    if not grouped:
        caches.unmark_grouped(account_id)  # it left its groups (or they lost their limits): decided as usual
    figures = group_pretrade.decode(row["group_figures"]) if grouped else None
    inst = None
    if row is not None and row["symbol"] is not None:
        inst = InstrumentInfo(*[row[name] for name in INSTRUMENT_FIELDS])
    outcome = await decide_on_row(apg, principal, data, row, inst, False, full, group_figures=figures)
    if isinstance(outcome, risk_checks.Breach):
        raise rejected(outcome)
    if not isinstance(outcome, Plan):
        return outcome
    order = await execute_and_write(
        apg, outcome, data, utcnow(), row["row_version"], row["instrument_version"], row["exchange_version"],
        groups=None if figures is None else group_pretrade.guard(figures),
        remember=None if full or not grouped else row, caches=caches,
    )
    if isinstance(order, LostRace):
        # The account, the instrument or one of the groups changed (another process placed an order in
        # the group): nothing was written.
        PLACEMENT_RETRIES.labels(changed=order.value).inc()
        return await _place_locked(apg, principal, account_id, data, grouped=grouped)
    return order, True


class LostRace(enum.Enum):
    """Which row changed between the decision and its write (nothing was written)."""

    ACCOUNT = "account"
    INSTRUMENT = "instrument"
    GROUP = "group"


def _remember(
    caches: PlacementCaches, read: Any, data: OrderCreate, written: Any, status: OrderStatus, filled: Decimal,
    last_price: Decimal | None,
) -> None:
    """Keep what a lean read would now return for `data.symbol`, built from the read the decision used and
    what the write stored (returned by WRITE_SQL, so every number is as PostgreSQL keeps it)."""
    positions = read["positions"]
    if isinstance(positions, str):
        positions = msgspec.json.decode(positions)
    kept = []
    for entry in positions:
        if entry[0] != data.symbol:
            if Decimal(entry[1]) != 0:
                return  # its equity moves with another instrument's price, which no version here covers
            kept.append(entry)
        elif written["position_quantity"] is None:
            kept.append(entry)  # no fill: the position (and its instrument's price) is as read
    if written["position_quantity"] is not None:
        kept.append((data.symbol, written["position_quantity"], written["position_avg_entry_price"],
                     written["position_realized_pnl"], last_price))
    if read["group_limited"]:
        group = read.get("group_state") or GroupState.of(read.get("group_figures"), read.get("group_members"))
        before = next(((Decimal(e[1]), Decimal(e[2])) for e in positions if e[0] == data.symbol), (ZERO, ZERO))
        after = None if written["position_quantity"] is None else (
            Decimal(written["position_quantity"]), Decimal(written["position_avg_entry_price"]))
        group = None if group is None else group.after(
            read["id"], written["account_version"], data.symbol, read["instrument_version"], before, after,
            last_price, status in OPEN_STATUSES,
        )
        if group is None:
            return
        caches.keep_group_state(read["group_id"], data.symbol, group)
    open_sells = read["open_sell_quantity"]
    if open_sells is not None and data.side == "sell" and status in OPEN_STATUSES:
        open_sells = str(Decimal(open_sells) + data.quantity - filled)
    row = dict(read.items())
    row.update(
        existing_order=None, row_version=written["account_version"], positions=kept, open_sell_quantity=open_sells,
        cash=written["cash"], reserved_cash=written["reserved_cash"], realized_pnl=written["realized_pnl"],
        fees_paid=written["fees_paid"], peak_equity=written["peak_equity"],
    )
    if "group_figures" in row:  # (the group's sums are kept apart, shared by its accounts)
        row["group_figures"] = row["group_members"] = None
    row.pop("group_state", None)
    caches.keep_snapshot(row["id"], Snapshot(data.symbol, row))



async def _place_on_snapshot(
    apg: Any, principal: Principal, data: OrderCreate, snapshot: Snapshot, caches: PlacementCaches
) -> OrderOut | None:
    """Decide on the kept state and write if it is still current; None: decide again on a fresh read.
    An account under group limits: with its group's kept state (the caller holds the group's gate)."""
    row = snapshot.row
    group = None
    if row["group_limited"]:
        group = caches.take_group_state(row["group_id"], data.symbol)
        if group is None or not group.current_for(row["id"], row["row_version"]):
            _counter(PLACEMENT_SNAPSHOTS, "stale").inc()
            return None
        row = {**row, "group_state": group}  # (what _remember moves on from)
    inst = InstrumentInfo(*[row[name] for name in INSTRUMENT_FIELDS])
    try:
        outcome = await decide_on_row(apg, principal, data, row, inst, False, False, record=False,
                                      group_figures=None if group is None else group.figures)
    except ApiError:
        outcome = None
    if not isinstance(outcome, Plan):  # (no replay: no existing order kept; a breach only of group limits)
        _counter(PLACEMENT_SNAPSHOTS, "rejected").inc()  # a rejection must rest on current state
        return None
    try:
        order = await execute_and_write(
            apg, outcome, data, utcnow(), row["row_version"], row["instrument_version"], row["exchange_version"],
            remember=row, caches=caches,
            groups=None if group is None else group_pretrade.guard(group.figures, group.guarded()),
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "uq_orders_account_id_client_order_id":
            raise
        _counter(PLACEMENT_SNAPSHOTS, "client_order_id_used").inc()
        return None
    if isinstance(order, LostRace):
        _counter(PLACEMENT_SNAPSHOTS, "stale").inc()
        return None
    _counter(PLACEMENT_SNAPSHOTS, "used").inc()
    return order


async def _place_locked(
    apg: Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *, grouped: bool = False,
    attempt: int = 0,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Decide and write under row locks. `grouped`: the account's groups have limits, so their rows are
    locked first (app/domain/risk/group_pretrade.py); an account found grouped without those locks (its
    membership or its groups' limits changed since they were looked up) is placed again with them."""
    tr = apg.transaction()
    await tr.start()
    try:
        locked_groups = await apg.fetch(group_pretrade.GROUP_LOCK_SQL, account_id) if grouped else []
        inst_row = await apg.fetchrow(LOCK_SQL, data.symbol, account_id)
        if inst_row is None:  # unknown symbol: still lock (and 404) the account before saying 422
            await apg.fetchrow(LOCK_ACCOUNT_ONLY_SQL, account_id)
        row = await apg.fetchrow(BOOK_SQL, account_id, True, data.symbol, data.client_order_id)
        if (
            row is not None and row["group_limited"] and attempt < 3
            and {r["account_group"] for r in locked_groups} != {row["group_id"]}
        ):
            await tr.rollback()
            if grouped:
                PLACEMENT_RETRIES.labels(changed="group").inc()
            return await _place_locked(apg, principal, account_id, data, grouped=True, attempt=attempt + 1)
        inst = None if inst_row is None else InstrumentInfo(*[inst_row[name] for name in INSTRUMENT_FIELDS])
        messages: list[tuple[str, bytes]] = []
        outcome = await decide_on_row(apg, principal, data, row, inst, False, True, after_commit=messages)
        if isinstance(outcome, risk_checks.Breach):
            await tr.commit()  # keep the recorded violation
            streams.publish_all(messages)
            raise rejected(outcome)
        if not isinstance(outcome, Plan):
            await tr.rollback()
            return outcome
        order = await execute_and_write(apg, outcome, data, utcnow(), row["row_version"], None, None,
                                         after_commit=messages)
        if isinstance(order, LostRace):  # cannot happen with both rows locked; never report a lost write
            raise RuntimeError("locked order write applied to no account row")
        await tr.commit()
        streams.publish_all(messages)
    except BaseException:
        try:
            await tr.rollback()
        except asyncpg.InterfaceError:  # already committed or rolled back on purpose above
            pass
        raise
    return order, True


async def decide_on_row(
    apg: Any, principal: Principal, data: OrderCreate, row: Any, inst: InstrumentInfo | None, dry_run: bool,
    full: bool, *, after_commit: list[tuple[str, bytes]] | None = None,
    group_figures: list[group_pretrade.Figures] | None = None, record: bool = True,
) -> Plan | risk_checks.Breach | tuple[OrderOut | ValidateOut, bool]:
    """Every placement rule on one snapshot of the account: a plan to write, a recorded risk breach, or the
    final answer (an idempotent replay, a dry run's result). The rules are decision.py's; this adds what
    needs the connection (the reduce-only sum, group limits, recording a breach). Other rule failures
    raise 4xx. `row` is a READ_SQL/BOOK_SQL row (`full`) or a LEAN_READ_SQL row of an account without
    enabled limits.
    `group_figures`: the sums of the account's limited groups that the caller read (else read here).
    `record`: store a breach as a violation (a decision on a kept state only reports it: a rejection
    must rest on current state, so the caller decides again on a fresh read)."""
    from app.domain.accounts.access import ensure_may_trade

    if row is None or not (principal.can_read_all_accounts or row["owner_id"] == principal.user_id):
        raise not_found("Account")
    ensure_may_trade(principal, row["owner_id"])
    existing = row["existing_order"]
    if existing is not None and not dry_run:
        if isinstance(existing, str):
            existing = json.loads(existing)
        order = existing_order(existing)
        if decision.same_fields(data, order):
            return order, False
        raise conflict("client_order_id was already used with different order fields",
                       client_order_id=data.client_order_id)
    if data.notional is not None and inst is not None and inst.status == "trading":
        sizing.size_notional(data, inst)  # sets data.quantity at this decision's price
    decision.validate_against_instrument(data, inst)
    assert inst is not None
    book = book_from_row(row, full)
    if not full and row["open_sell_quantity"] is not None:
        book.open_sell_quantity = Decimal(row["open_sell_quantity"])
    other, others = await sizing.reduce_only_others(apg, book, data.symbol, data.side, data.reduce_only)
    plan = decision.decide(data, inst, book, other_reduce_only=other, others=others,
                           notional_field="quantity" if data.notional is None else "notional")
    price, breach = plan.price, plan.breach
    if breach is None and row["group_limited"]:
        breach = await group_pretrade.breach(apg, book, plan.proposed, group_figures)
    if breach is not None and not record:
        return breach
    if breach is not None:
        detail = {"symbol": data.symbol, "side": data.side, "type": data.type, "quantity": plain(data.quantity),
                  "price": plain(price), "dry_run": dry_run, "message": breach.message}
        violation = ViolationOut(
            id=uuid.uuid4(), account_id=book.id, limit_id=uuid.UUID(breach.limit_id) if breach.limit_id else None,
            limit_type=breach.limit_type, limit_value=breach.limit_value,
            would_be=risk_checks.storable(breach.would_be), phase="pre_trade", detail=detail, created_at=utcnow(),
        )
        await apg.execute(
            VIOLATION_SQL, violation.id, book.id, violation.limit_id, breach.limit_type, breach.limit_value,
            violation.would_be, json.dumps(detail), violation.created_at,
        )
        # The `risk` stream: now if the insert committed on its own, else after the caller's COMMIT.
        message = risk_payload("violation", book.owner_id, book.id, violation.created_at, violation)
        if after_commit is None:
            streams.publish(*message)
        else:
            after_commit.append(message)
        return breach
    if dry_run:
        return ValidateOut(accepted=True, estimated_price=price, estimated_cost=data.quantity * price), False
    return plan


def rejected(breach: risk_checks.Breach) -> Exception:
    """The 422 for a breached limit (counted by limit type)."""
    RISK_REJECTIONS.labels(limit_type=breach.limit_type).inc()
    return pretrade.breach_error(breach)


async def execute_and_write(
    apg: Any, plan: Plan, data: OrderCreate, now: datetime, row_version: str, instrument_version: str | None,
    exchange_version: str | None, *, remember: Any = None, after_commit: list[tuple[str, bytes]] | None = None,
    columns: dict[str, Any] | None = None, legs: LegsOf | None = None,
    groups: GuardParams | None = None, caches: PlacementCaches | None = None,
) -> OrderOut | LostRace:
    """Execute the order against the last price and write everything, or say which row changed. With
    `remember` (the lean read the decision used), keep the state written for the account's next order in
    `caches`.
    `columns` (contingent.py): the order's class, leg and trail columns, which simple orders leave at their
    defaults, and `legs` a group's exit legs with their events, all written by the same statement
    (CONTINGENT_WRITE_SQL); the legs' events are published after the entry's. `groups` (a simple order
    under risk-group limits; never with `columns`): the ids and versions of the groups whose sums the
    decision read, which must be unchanged (GROUP_WRITE_SQL), and the rows a kept state's sums rest on
    (group_pretrade.guard).
    The stream messages are published at once (the write commits on its own) or, inside the locked
    path's transaction, appended to `after_commit` for the caller to publish after COMMIT."""
    book, inst, est_price = plan.book, plan.inst, plan.price

    order_id = new_time_ordered_uuid()
    expires_at = decision.next_session_close(now, inst) if data.time_in_force == "day" else None

    def state(status: OrderStatus, filled: Decimal, avg: Decimal | None, fees: Decimal) -> OrderOut:
        """The order after one event: each event row stores it (the stream's `order`)."""
        return OrderOut(
            id=order_id, client_order_id=data.client_order_id, account_id=book.id, symbol=data.symbol,
            side=data.side, type=data.type, quantity=data.quantity, filled_quantity=filled, avg_fill_price=avg,
            limit_price=data.limit_price, stop_price=data.stop_price, time_in_force=data.time_in_force,
            status=status.value, reject_reason=None, fees=fees, created_at=now, updated_at=now,  # type: ignore[arg-type]
            expires_at=expires_at,
            **({"reduce_only": data.reduce_only, "notional": data.notional} | (columns or {})),
        )

    # The order_events rows, in order (written as one JSON array; absent keys are NULL). The StrEnum members
    # go in as they are: msgspec writes their values.
    accepted = rules.transition(OrderStatus.NEW, OrderStatus.ACCEPTED)
    events: list[dict[str, Any]] = [
        {"type": EventType.CREATED, "status_to": OrderStatus.NEW, "order_state": state(OrderStatus.NEW, ZERO, None, ZERO)},
        {"type": EventType.ACCEPTED, "status_from": OrderStatus.NEW, "status_to": accepted,
         "order_state": state(accepted, ZERO, None, ZERO)},
    ]
    view = OrderView(data.side, data.type, data.time_in_force, data.quantity, ZERO, data.limit_price, data.stop_price)
    triggered = False
    m = _NO_MATCH
    if inst.last_price is not None:
        m = rules.match(view, inst.last_price, None, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                        lot_size=inst.lot_size, immediate=True,
                        # a market order's estimate is its fill price (decision.estimated_price, same inputs)
                        market_price=est_price if data.type == "market" else None)
        triggered = m.triggered and data.type in ("stop", "stop_limit")
    done = execution.execute(
        view, execution.OrderState(accepted, data.quantity, ZERO, None, ZERO, ZERO, False), m, symbol=data.symbol,
        last_price=inst.last_price, immediate=True, book=book, inst=inst, reserve_at=est_price,  # type: ignore[arg-type]
    )
    fill_id = None
    for step in done.steps:
        after = step.state
        event: dict[str, Any] = {"type": step.type, "status_from": step.status_from, "status_to": step.status_to,
                                 "order_state": state(step.status_to, after.filled, after.avg, after.fees)}
        if step.reason is not None:
            event["reason"] = step.reason
        if step.data is not None:
            event["data"] = step.data
        if step.fill:
            fill_id = new_time_ordered_uuid()
            event["fill_id"], event["position_qty"] = str(fill_id), step.position_qty
        events.append(event)
    final, fill = done.state, done.fill
    status, filled, avg_price, fees, reserved = final.status, final.filled, final.avg, final.fees, final.reserved
    position = book.position(data.symbol)
    equity = book.equity
    if fill_id is not None and equity > book.peak_equity:
        book.peak_equity = equity
    entry = events[-1]["order_state"]
    extra: tuple[Any, ...] = ()
    assert columns is None or groups is None  # (contingent orders under group limits take the locked path)
    if columns is not None:
        leg_rows, leg_events = legs(entry) if legs is not None else ([], [])
        events = events + leg_events
        extra = (*(columns.get(name) for name in CONTINGENT_COLUMNS), encode_json(leg_rows).decode())
    sql = GROUP_WRITE_SQL if groups is not None else WRITE_SQL if columns is None else CONTINGENT_WRITE_SQL
    fill_values = _NO_FILL if fill is None else (fill.quantity, fill.price, fill.fee, fill.liquidity)
    params = WriteParams(
        order_id=order_id, account_id=book.id, client_order_id=data.client_order_id, symbol=data.symbol,
        side=data.side, type=data.type, time_in_force=data.time_in_force, quantity=data.quantity,
        filled_quantity=filled, avg_fill_price=avg_price, limit_price=data.limit_price, stop_price=data.stop_price,
        triggered=triggered, status=status.value, reserved_cash=reserved, fees=fees, expires_at=expires_at, now=now,
        fill_id=fill_id, fill_quantity=fill_values[0], fill_price=fill_values[1], fill_fee=fill_values[2],
        fill_liquidity=fill_values[3], events=encode_json(events).decode(),
        position_quantity=position.quantity, position_avg_entry_price=position.avg_entry_price,
        position_realized_pnl=position.realized_pnl, position_changed=fill_id is not None,
        account_cash=book.cash, account_reserved_cash=book.reserved_cash, account_realized_pnl=book.realized_pnl,
        account_fees_paid=book.fees_paid, account_peak_equity=book.peak_equity, equity=equity,
        account_version=row_version, instrument_version=instrument_version, exchange_version=exchange_version,
        event_count=len(events),
        reduce_only=data.reduce_only if columns is None else columns.get("reduce_only", data.reduce_only),
        notional=data.notional,
    )
    written = await apg.fetchrow(sql, *params.values(), *extra, *(groups or ()))
    if not written["applied"]:
        if groups is not None and not written["groups_unchanged"]:
            return LostRace.GROUP
        return LostRace.ACCOUNT if written["instrument_unchanged"] else LostRace.INSTRUMENT
    if remember is not None and caches is not None:
        _remember(caches, remember, data, written, status, filled, inst.last_price)
    _counter(ORDERS, data.type, status.value).inc()
    if fill is not None:
        _counter(FILLS, fill.liquidity).inc()
    messages = stream_messages(book, events, written["event_seq"], now, fill_id)
    if after_commit is None:
        streams.publish_all(messages)
    else:
        after_commit.extend(messages)
    return entry
