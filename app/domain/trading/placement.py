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
from app.domain.risk.schemas import ViolationOut
from app.domain.streams import publish as streams
from app.domain.streams.events import risk_payload, stream_messages
from app.domain.trading import decision, rules, sizing
from app.domain.trading.book import POSITIONS_JSON_SQL, book_from_row, book_sql
from app.domain.trading.decision import Plan
from app.domain.trading.kept import GroupState, PlacementCaches, Snapshot
from app.domain.trading.queries import (
    INSTRUMENT_COLUMNS,
    INSTRUMENT_JOIN,
    ORDER_FIELDS,
    ORDER_JSON,
    open_sells,
)
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
from app.lib.errors import ApiError, conflict, not_found
from app.lib.ids import new_time_ordered_uuid
from app.lib.metrics import FILLS, ORDERS, PLACEMENT_RETRIES, PLACEMENT_SNAPSHOTS, RISK_REJECTIONS

ZERO = Decimal(0)

# The locked path locks in the documented order (instrument, then account) in one round trip: the scalar
# subquery runs per instrument row, i.e. after that row is locked. The book is read by the NEXT
# statement: in READ COMMITTED only a new statement sees what the previous holder of the account lock
# committed.
LOCK_SQL = f"""
WITH inst AS (
  SELECT {INSTRUMENT_COLUMNS}
    FROM {INSTRUMENT_JOIN}
   WHERE i.symbol = $1
   FOR KEY SHARE OF i
)
SELECT inst.*, (SELECT a.id FROM accounts a WHERE a.id = $2 FOR UPDATE) AS locked_account FROM inst
"""
LOCK_ACCOUNT_ONLY_SQL = "SELECT id FROM accounts WHERE id = $1 FOR UPDATE"

# The shared book query (named parameters) with asyncpg's positional ones, plus the client_order_id
# replay lookup and the row version, so that one round trip answers everything placement needs to decide.
_EXISTING_ORDER_SQL = f"""(SELECT {ORDER_JSON}
              FROM orders o WHERE o.account_id = a.id AND o.client_order_id = $4::text)"""
_BOOK_COLUMNS = f"""{_EXISTING_ORDER_SQL} AS existing_order,
       a.xmin::text AS row_version, a.group_limited, a.group_id,
       """
# The instrument (NULL columns when the symbol is unknown, so that an unknown account still answers 404
# before an unknown symbol answers 422) with the row versions the optimistic write checks.
_INSTRUMENT_JOIN_SQL = f"""
  LEFT JOIN (SELECT {INSTRUMENT_COLUMNS}, i.xmin::text AS instrument_version, e.xmin::text AS exchange_version
               FROM {INSTRUMENT_JOIN}
              WHERE i.symbol = $3::text) inst ON true"""
BOOK_SQL = book_sql("$1::uuid", "$2::boolean", "$3::text", columns=_BOOK_COLUMNS)
# The optimistic read: the same, plus the instrument, in one unlocked statement.
READ_SQL = book_sql(
    "$1::uuid", "$2::boolean", "$3::text", columns=_BOOK_COLUMNS + "inst.*, ", joins=_INSTRUMENT_JOIN_SQL
)

# The lean read, for accounts without enabled risk limits (most): READ_SQL without the order counts,
# the day's opening equity and the limits, which only limits need, plus whether any limit exists. Every
# subquery of a statement is initialised on each execution whether it runs or not, and READ_SQL's ten
# cost PostgreSQL ~68 us per order against ~47 us for these four (measured side by side). An account
# whose lean read says it has limits is read again with READ_SQL (and hinted:
# kept.PlacementCaches.limited).
LEAN_READ_SQL = f"""
SELECT {_EXISTING_ORDER_SQL} AS existing_order,
       a.xmin::text AS row_version,
       inst.*,
       a.id, a.owner_id, a.cash, a.reserved_cash, a.realized_pnl, a.fees_paid, a.peak_equity,
       a.allow_short, a.trading_state, a.initial_cash,
       {POSITIONS_JSON_SQL} AS positions,
       CASE WHEN $2::text = 'sell' THEN {open_sells("$3::text")} END AS open_sell_quantity,
       EXISTS (SELECT 1 FROM risk_limits r WHERE r.account_id = a.id AND r.enabled) AS has_limits,
       a.group_limited, a.group_id
  FROM accounts a{_INSTRUMENT_JOIN_SQL}
 WHERE a.id = $1::uuid
"""

# The reads of an account under group limits (hinted: kept.PlacementCaches.grouped): the same plus its
# limited groups' sums and versions in the same snapshot (group_pretrade.FIGURES_SQL), which the guarded
# write checks, and the parts those sums rest on (group_pretrade.members_column), which a kept state's
# guard checks.
_GROUP_COLUMNS = "a.group_limited, a.group_id"
_GROUP_READ_COLUMNS = (
    f"{_GROUP_COLUMNS}, {group_pretrade.figures_column('$1::uuid', '$3::text')}, "
    f"{group_pretrade.members_column('$1::uuid')}"
)
READ_GROUP_SQL = READ_SQL.replace(_GROUP_COLUMNS, _GROUP_READ_COLUMNS, 1)
LEAN_READ_GROUP_SQL = LEAN_READ_SQL.replace(_GROUP_COLUMNS, _GROUP_READ_COLUMNS, 1)
assert "group_figures" in READ_GROUP_SQL and "group_figures" in LEAN_READ_GROUP_SQL

# One statement, committed on its own. `inst` takes the instrument FOR KEY SHARE (the lock a price
# update's FOR UPDATE waits for) only if its row is the version the decision used (no new price, halt,
# tick or lot change since) and so is its exchange's row (fees, slippage, session); `account` updates
# the account only if its row is the version that was read.
# Everything else is written FROM `account`, so a lost race writes nothing and returns 0. The locked
# path passes no versions of the instrument and exchange: it holds the instrument's lock since before its
# read. The statement returns what it stored in the account and the position, with the account row's new
# version: the state an account's next order may be decided on without a read (kept.Snapshot). The
# order's events arrive as one JSON array ($24): six parallel arrays cost asyncpg an ABC isinstance check
# per element and PostgreSQL six array inputs per order. The events take the account's next $38 stream
# numbers (`seq`, app/domain/streams/log.py) from the counter on the account row this statement updates
# anyway: no extra lock, and seq order is commit order.
WRITE_SQL = """
WITH inst AS (
  SELECT 1 FROM instruments i JOIN exchanges e ON e.code = i.exchange_code
   WHERE i.symbol = $4 AND ($36::text IS NULL OR i.xmin = $36::text::xid)
     AND ($37::text IS NULL OR e.xmin = $37::text::xid)
   FOR KEY SHARE OF i
), account AS (
  UPDATE accounts SET cash = $29, reserved_cash = $30, realized_pnl = $31, fees_paid = $32,
                      peak_equity = $33, updated_at = $18, event_seq = event_seq + $38
   WHERE id = $2 AND xmin = $35::text::xid AND EXISTS (SELECT 1 FROM inst)
  RETURNING id, xmin::text AS version, cash, reserved_cash, realized_pnl, fees_paid, peak_equity, event_seq
), new_order AS (
  INSERT INTO orders (id, account_id, client_order_id, symbol, side, type, time_in_force, quantity,
                      filled_quantity, avg_fill_price, limit_price, stop_price, triggered, status,
                      reserved_cash, fees, expires_at, created_at, updated_at, reduce_only, notional)
  SELECT $1, account.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18,
         $39, $40 FROM account
  RETURNING id
), new_fill AS (
  INSERT INTO fills (id, order_id, account_id, symbol, side, quantity, price, fee, liquidity, created_at)
  SELECT $19, new_order.id, $2, $4, $5, $20, $21, $22, $23, $18 FROM new_order WHERE $19::uuid IS NOT NULL
), new_events AS (
  INSERT INTO order_events (order_id, account_id, type, status_from, status_to, reason, fill_id, data, created_at,
                            seq, order_state, position_qty)
  SELECT new_order.id, $2, e.type, e.status_from, e.status_to, e.reason, e.fill_id, e.data, $18,
         account.event_seq - $38 + e.ordinality, e.order_state, e.position_qty
    FROM new_order, account,
         ROWS FROM (jsonb_to_recordset($24::jsonb) AS (type text, status_from text, status_to text, reason text,
                                                      fill_id uuid, data jsonb, order_state jsonb,
                                                      position_qty numeric)) WITH ORDINALITY AS e
   ORDER BY e.ordinality
), position AS (
  INSERT INTO positions (account_id, symbol, quantity, avg_entry_price, realized_pnl, updated_at)
  SELECT account.id, $4, $25, $26, $27, $18 FROM account WHERE $28::boolean
  ON CONFLICT (account_id, symbol) DO UPDATE
     SET quantity = EXCLUDED.quantity, avg_entry_price = EXCLUDED.avg_entry_price,
         realized_pnl = EXCLUDED.realized_pnl, updated_at = EXCLUDED.updated_at
  RETURNING quantity, avg_entry_price, realized_pnl
), snapshot AS (
  INSERT INTO equity_snapshots (account_id, ts, equity, cash) SELECT account.id, $18, $34, $29 FROM account
   WHERE $28::boolean
)
SELECT (SELECT count(*) FROM account) AS applied, EXISTS (SELECT 1 FROM inst) AS instrument_unchanged,
       a.version AS account_version, a.cash, a.reserved_cash, a.realized_pnl, a.fees_paid, a.peak_equity,
       p.quantity AS position_quantity, p.avg_entry_price AS position_avg_entry_price,
       p.realized_pnl AS position_realized_pnl, a.event_seq
  FROM (SELECT 1) AS one LEFT JOIN account a ON true LEFT JOIN position p ON true
"""

# WRITE_SQL behind the group guard (group_pretrade.GUARD_CTE, $41 to $43): the groups' rows are taken
# first (the lock order of risk: groups, instrument, account), and nothing is written unless every group's
# version is still the one the decision read (and, for a decision on a kept state, every member's row and
# every instrument they hold).
GROUP_WRITE_SQL = (
    WRITE_SQL.replace("WITH inst AS (", f"WITH {group_pretrade.GUARD_CTE}, inst AS (", 1)
    .replace("   FOR KEY SHARE OF i\n", f"     AND {group_pretrade.GUARD_HOLDS}\n   FOR KEY SHARE OF i\n", 1)
    .replace("AS applied,", f"AS applied, {group_pretrade.GUARD_HOLDS} AS groups_unchanged,", 1)
)
assert GROUP_WRITE_SQL.count(group_pretrade.GUARD_HOLDS) == 2 and "guard AS" in GROUP_WRITE_SQL

# WRITE_SQL for an order with contingent columns (contingent.py: groups and trailing stops), still one
# statement: the order's class, leg and trail columns ($41-$45) and, for a group, its exit legs ($46, a
# JSON array of rows) whose events ride in $24 after the entry's, each naming its own order_id. The legs
# are written FROM `account` like everything else, so a lost race writes none of them; their parent (the
# entry) is inserted by the same statement, where foreign keys are checked at its end.
CONTINGENT_WRITE_SQL = (
    WRITE_SQL.replace(
        "reserved_cash, fees, expires_at, created_at, updated_at, reduce_only, notional)",
        "reserved_cash, fees, expires_at, created_at, updated_at, reduce_only, notional,\n"
        "                      order_class, leg, trail_price, trail_percent, hwm)",
        1,
    )
    .replace("         $39, $40 FROM account", "         $39, $40, $41, $42, $43, $44, $45 FROM account", 1)
    .replace("SELECT new_order.id, $2, e.type,", "SELECT coalesce(e.order_id, new_order.id), $2, e.type,", 1)
    .replace("jsonb_to_recordset($24::jsonb) AS (type text,",
             "jsonb_to_recordset($24::jsonb) AS (order_id uuid, type text,", 1)
    .replace(
        "), position AS (",
        """), legs AS (
  INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, limit_price, stop_price,
                      status, expires_at, created_at, updated_at, order_class, parent_id, leg, reduce_only)
  SELECT l.id, account.id, l.symbol, l.side, l.type, l.time_in_force, l.quantity, l.limit_price, l.stop_price,
         l.status, l.expires_at, $18, $18, l.order_class, l.parent_id, l.leg, true
    FROM account, jsonb_to_recordset($46::jsonb) AS l(id uuid, symbol text, side text, type text,
                                                      time_in_force text, quantity numeric, limit_price numeric,
                                                      stop_price numeric, status text, expires_at timestamptz,
                                                      order_class text, parent_id uuid, leg text)
), position AS (""",
        1,
    )
)
assert CONTINGENT_WRITE_SQL.count("$4") > WRITE_SQL.count("$4") and "legs AS" in CONTINGENT_WRITE_SQL
assert "coalesce(e.order_id" in CONTINGENT_WRITE_SQL and "order_id uuid, type text" in CONTINGENT_WRITE_SQL
assert "$41, $42, $43, $44, $45 FROM account" in CONTINGENT_WRITE_SQL
_CONTINGENT_COLUMNS = ("order_class", "leg", "trail_price", "trail_percent", "hwm")
# What the order after its last event gives a group's legs: their rows and their events (contingent.py).
LegsOf = Callable[[OrderOut], tuple[list[dict[str, Any]], list[dict[str, Any]]]]

VIOLATION_SQL = """
INSERT INTO risk_violations (id, account_id, limit_id, limit_type, limit_value, would_be, phase, detail, created_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pre_trade', $7::jsonb, $8)
"""


_encode_json = msgspec.json.Encoder().encode
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
        group = GroupState.of(read.get("group_figures"), read.get("group_members"))
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
        row = {**row, "group_figures": group.figures, "group_members": group.parts}
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
            groups=None if group is None else group_pretrade.guard(group.figures, group.digest()),
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
    other = await sizing.open_reduce_only(apg, book.id, data.symbol, data.side) if data.reduce_only else None
    plan = decision.decide(data, inst, book, other_reduce_only=other,
                           notional_field="quantity" if data.notional is None else "notional")
    price, breach = plan.price, plan.breach
    if breach is None and row["group_limited"]:
        breach = await group_pretrade.breach(apg, book, plan.proposed, group_figures)
    if breach is not None and not record:
        return breach
    if breach is not None:
        detail = {"symbol": data.symbol, "side": data.side, "type": data.type, "quantity": str(data.quantity),
                  "price": str(price), "dry_run": dry_run, "message": breach.message}
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
    groups: tuple[list[uuid.UUID], list[int], str | None] | None = None, caches: PlacementCaches | None = None,
) -> OrderOut | LostRace:
    """Execute the order against the last price and write everything, or say which row changed. With
    `remember` (the lean read the decision used), keep the state written for the account's next order in
    `caches`.
    `columns` (contingent.py): the order's class, leg and trail columns, which simple orders leave at their
    defaults, and `legs` a group's exit legs with their events, all written by the same statement
    (CONTINGENT_WRITE_SQL); the legs' events are published after the entry's. `groups` (a simple order
    under risk-group limits; never with `columns`): the ids and versions of the groups whose sums the
    decision read, which must be unchanged (GROUP_WRITE_SQL), and a kept state's digest of their parts.
    The stream messages are published at once (the write commits on its own) or, inside the locked
    path's transaction, appended to `after_commit` for the caller to publish after COMMIT."""
    book, inst, est_price = plan.book, plan.inst, plan.price

    order_id = new_time_ordered_uuid()
    expires_at = decision.next_session_close(now, inst.timezone, inst.session_close) if data.time_in_force == "day" else None

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
    status = OrderStatus.ACCEPTED
    filled, avg_price, fees, triggered = ZERO, None, ZERO, False
    fill_id = fill_qty = fill_price = fill_fee = liquidity = None
    if inst.last_price is not None:
        m = rules.match(view, inst.last_price, None, slippage_bps=inst.slippage_bps, tick_size=inst.tick_size,
                        lot_size=inst.lot_size, immediate=True,
                        # a market order's estimate is its fill price (decision.estimated_price, same inputs)
                        market_price=est_price if data.type == "market" else None)
        triggered = m.triggered and data.type in ("stop", "stop_limit")
        if m.newly_triggered:
            events.append({"type": EventType.TRIGGERED, "status_from": status, "status_to": status,
                           "data": {"last_price": str(inst.last_price)}, "order_state": state(status, ZERO, None, ZERO)})
        if data.time_in_force == "fok" and m.triggered and m.fill_qty != view.remaining:
            m = rules.MatchResult(m.triggered, ZERO, None, None, m.newly_triggered)
        if m.filled:
            assert m.fill_price is not None and m.liquidity is not None
            rate = inst.taker_fee_rate if m.liquidity == "taker" else inst.maker_fee_rate
            fill_fee, realized = book.apply_fill(data.symbol, data.side, m.fill_qty, m.fill_price, rate)
            fill_id, fill_qty, fill_price, liquidity = new_time_ordered_uuid(), m.fill_qty, m.fill_price, m.liquidity
            new_status = rules.transition(status, rules.fill_status(view, m.fill_qty))
            events.append({
                "type": EventType.FILLED if new_status is OrderStatus.FILLED else EventType.PARTIALLY_FILLED,
                "status_from": status, "status_to": new_status, "fill_id": str(fill_id),
                "data": {"quantity": str(m.fill_qty), "price": str(m.fill_price), "fee": str(fill_fee),
                         "liquidity": m.liquidity, "realized_pnl": str(realized)},
                "order_state": state(new_status, m.fill_qty, m.fill_price, fill_fee),
                "position_qty": book.position(data.symbol).quantity,
            })
            status, filled, avg_price, fees = new_status, m.fill_qty, m.fill_price, fill_fee
        if status is not OrderStatus.FILLED and m.triggered and data.time_in_force in ("ioc", "fok"):
            reason = "fok: could not fill entirely at once" if data.time_in_force == "fok" else "ioc: remainder canceled"
            events.append({"type": EventType.CANCELED, "status_from": status,
                           "status_to": rules.transition(status, OrderStatus.CANCELED), "reason": reason,
                           "order_state": state(OrderStatus.CANCELED, filled, avg_price, fees)})
            status = OrderStatus.CANCELED
    reserved = ZERO
    if status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED) and data.side == "buy":
        reserved = decision.reservation(data.quantity - filled, est_price, inst)
        book.reserved_cash += reserved
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
        extra = (*(columns.get(name) for name in _CONTINGENT_COLUMNS), _encode_json(leg_rows).decode())
    sql = GROUP_WRITE_SQL if groups is not None else WRITE_SQL if columns is None else CONTINGENT_WRITE_SQL
    written = await apg.fetchrow(
        sql,
        order_id, book.id, data.client_order_id, data.symbol, data.side, data.type, data.time_in_force,
        data.quantity, filled, avg_price, data.limit_price, data.stop_price, triggered, status.value,
        reserved, fees, expires_at, now,
        fill_id, fill_qty, fill_price, fill_fee, liquidity, _encode_json(events).decode(),
        position.quantity, position.avg_entry_price, position.realized_pnl, fill_id is not None,
        book.cash, book.reserved_cash, book.realized_pnl, book.fees_paid, book.peak_equity, equity,
        row_version, instrument_version, exchange_version, len(events),
        data.reduce_only if columns is None else columns.get("reduce_only", data.reduce_only), data.notional,
        *extra, *(groups or ()),
    )
    if not written["applied"]:
        if groups is not None and not written["groups_unchanged"]:
            return LostRace.GROUP
        return LostRace.ACCOUNT if written["instrument_unchanged"] else LostRace.INSTRUMENT
    if remember is not None and caches is not None:
        _remember(caches, remember, data, written, status, filled, inst.last_price)
    _counter(ORDERS, data.type, status.value).inc()
    if liquidity is not None:
        _counter(FILLS, liquidity).inc()
    messages = stream_messages(book, events, written["event_seq"], now, fill_id)
    if after_commit is None:
        streams.publish_all(messages)
    else:
        after_commit.extend(messages)
    return entry
