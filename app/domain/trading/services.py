"""Orders on the paper exchange: placement (routed to placement.py or contingent.py), cancel, expiry, reads.
Price matching is matching.py's.

Lock order, everywhere: instrument -> order(s) -> account(s) (several accounts: by id). Placement's one
write statement takes the instrument row FOR KEY SHARE and then updates its account (placement.py: only
if neither changed since the decision, else a locked retry); a price update takes the instrument FOR
UPDATE, the resting orders FOR UPDATE SKIP LOCKED and then the accounts it fills, sorted. So placements
and price updates on one instrument serialise, orders of one account serialise, and nothing deadlocks.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import ensure_may_trade, visible_owner, visible_sql, visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.streams.events import defer_account_state
from app.domain.streams.log import assign_seqs, defer_trade_updates, stored_order
from app.domain.trading import contingent, decision, placement, rules
from app.domain.trading import groups as grouping
from app.domain.trading.kept import PlacementCaches
from app.domain.trading.models import Fill, Order, OrderEvent
from app.domain.trading.queries import INSTRUMENT_COLUMNS, INSTRUMENT_JOIN, ORDER_COLUMNS, ORDER_FIELDS
from app.domain.trading.rules import OPEN_STATUSES, EventType, InstrumentInfo, OrderStatus
from app.domain.trading.schemas import (
    FillOut,
    OrderCreate,
    OrderEventOut,
    OrderOut,
    PositionOut,
    ValidateOut,
)
from app.lib.db import raw_connection, tx, utcnow
from app.lib.decimals import nonnegative_zero
from app.lib.errors import ApiError, conflict, not_found
from app.lib.pagination import decode_cursor, decode_int_cursor, encode_cursor

ZERO = Decimal(0)

# OrderOut's and FillOut's columns, in their field order (rows build them positionally).
ORDER_COLS = tuple(getattr(Order, f) for f in ORDER_FIELDS)
FILL_COLS = tuple(getattr(Fill, f) for f in FillOut.__struct_fields__)

_INSTRUMENT_SQL = text(
    f"""
    SELECT {INSTRUMENT_COLUMNS}
      FROM {INSTRUMENT_JOIN}
     WHERE i.symbol = :symbol
     FOR KEY SHARE OF i
    """
)


async def load_instrument(conn: AsyncConnection, symbol: str) -> InstrumentInfo | None:
    """The instrument with its exchange, locked FOR KEY SHARE (no price update runs until the caller's
    transaction ends)."""
    row = (await conn.execute(_INSTRUMENT_SQL, {"symbol": symbol})).one_or_none()
    return InstrumentInfo(*row) if row is not None else None


# ------------------------------------------------------------------------------------------------ placement


async def place_order(
    conn: AsyncConnection | Any, principal: Principal, account_id: uuid.UUID, data: OrderCreate, *, dry_run: bool = False,
    caches: PlacementCaches | None = None,
) -> tuple[OrderOut | ValidateOut, bool]:
    """Place (or with dry_run, only check) an order. Returns (result, created). Simple orders: placement.py;
    contingent orders and trailing stops: contingent.py (a locked path of their own). `caches`: the app's
    placement caches (kept.PlacementCaches; without them nothing is kept)."""
    if decision.is_contingent(data):
        return await contingent.place_order(conn, principal, account_id, data, dry_run=dry_run, caches=caches)
    return await placement.place_order(conn, principal, account_id, data, dry_run=dry_run, caches=caches)


# --------------------------------------------------------------------------------------------- cancel/expire


class _GroupMember(Exception):
    """The order belongs to a contingent group: it is canceled with the group's locks and rules."""


async def cancel_order(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> OrderOut:
    try:
        await cancel_one(conn, principal, account_id, order_id, "canceled by client")
    except rules.OrderNotOpen as exc:
        raise conflict(str(exc), order_status=exc.status) from None
    return await get_order(conn, principal, account_id, order_id)


async def cancel_one(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID,
                     reason: str, *, access_checked: bool = False) -> list[uuid.UUID]:
    """Cancel one order of the account, in a transaction of its own: a simple order alone (order, then
    account), a member of a contingent group with its group (groups.cancel: instrument, group, account).
    The one cancel routine of a client cancel and of cancel-all (bulk.py). 404 for an order the account
    does not have, `rules.OrderNotOpen` for one already final. `access_checked`: the caller has checked
    that the principal may trade on the account. Returns the ids it canceled (a group's members with it)."""
    try:
        async with tx(conn):
            if not access_checked:
                ensure_may_trade(principal, await visible_owner(conn, principal, account_id))
            row = (
                await conn.execute(
                    select(Order.status, Order.reserved_cash, Order.order_class, Order.symbol)
                    .where(Order.id == order_id, Order.account_id == account_id).with_for_update()
                )
            ).one_or_none()
            if row is None:
                raise not_found("Order")
            if row.order_class != "simple":  # (rolled back: a group is locked instrument first)
                raise _GroupMember(row.symbol)
            if row.status not in OPEN_STATUSES:
                raise rules.OrderNotOpen(row.status)
            await close_order(conn, account_id, order_id, row.status, row.reserved_cash,
                              OrderStatus.CANCELED, EventType.CANCELED, reason)
        return [order_id]
    except _GroupMember as group:
        return await grouping.cancel(conn, principal, account_id, order_id, group.args[0])


async def close_order(conn: AsyncConnection, account_id: uuid.UUID, order_id: uuid.UUID, status: str,
                       reserved: Decimal, to: OrderStatus, etype: EventType, reason: str) -> None:
    now = utcnow()
    """End one open simple order (canceled, expired) whose row the caller locked: its event, its
    reservation released, the stream messages after commit."""
    event = rules.event_row(order_id, account_id, etype, status, to.value, now, reason=reason)
    closed = (
        await conn.execute(
            update(Order).where(Order.id == order_id).values(status=to.value, reserved_cash=ZERO, updated_at=now)
            .returning(*ORDER_COLS)
        )
    ).one()
    if reserved:
        await conn.execute(
            update(Account).where(Account.id == account_id).values(reserved_cash=Account.reserved_cash - reserved, updated_at=now)
        )
    state = OrderOut(*closed)
    event["order_state"] = stored_order(state)
    owners = await assign_seqs(conn, [event])
    await conn.execute(insert(OrderEvent).values(**event))
    defer_trade_updates(conn, [event], owners, [state])
    if reserved:
        await defer_account_state(conn, account_id, now)


_OPEN_VALUES = tuple(s.value for s in OrderStatus if s in OPEN_STATUSES)


async def expire_day_orders(conn: AsyncConnection, now: datetime | None = None, batch: int = 500) -> int:
    """Expire `day` orders whose exchange session has closed, in short transactions of up to `batch`
    simple orders, then the members of contingent groups (groups.py: expire_groups)."""
    now = now or utcnow()
    expired = 0
    while True:
        async with tx(conn):
            rows = (
                await conn.execute(
                    select(Order.id, Order.account_id, Order.status, Order.reserved_cash)
                    .where(Order.expires_at <= now, Order.status.in_(_OPEN_VALUES), Order.order_class == "simple")
                    .order_by(Order.expires_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            # Accounts in id order, as matching locks them: each close updates its account (the event's seq).
            for r in sorted(rows, key=lambda r: r.account_id):
                await close_order(conn, r.account_id, r.id, r.status, r.reserved_cash, OrderStatus.EXPIRED,
                                   EventType.EXPIRED, "day order: session closed")
            expired += len(rows)
        if len(rows) < batch:
            # Groups, each with its instrument locked first (groups.py).
            return expired + await grouping.expire_groups(conn, now, batch)


# --------------------------------------------------------------------------------------------------- reads


async def get_order(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID,
                    *, nested: bool = False) -> OrderOut:
    row = (
        await conn.execute(
            select(*ORDER_COLS)
            .join(Account, Account.id == Order.account_id)
            .where(Order.id == order_id, Order.account_id == account_id, visible_to(principal))
        )
    ).one_or_none()
    if row is None:
        raise not_found("Order")
    out = OrderOut(*row)
    return (await with_legs(conn, [out]))[0] if nested else out


async def with_legs(conn: AsyncConnection | Any, orders: list[OrderOut]) -> list[OrderOut]:
    """`?nested=true`: each order with `legs`, the exit legs of its group other than itself (an entry's
    legs, a leg's sibling; [] for a simple order), in id order. One query for the whole page."""
    import msgspec

    roots = {o.parent_id or o.id for o in orders if o.order_class != "simple"}
    members: list[OrderOut] = []
    if roots and isinstance(conn, AsyncConnection):
        rows = await conn.execute(
            select(*ORDER_COLS)
            .where(func.coalesce(Order.parent_id, Order.id).in_(roots), Order.leg.is_not(None))
            .order_by(Order.id)
        )
        members = [OrderOut(*r) for r in rows]
    elif roots:  # an asyncpg connection (the list's)
        members = [OrderOut(*r) for r in await conn.fetch(_LEGS_OF_SQL, list(roots))]
    return [
        msgspec.structs.replace(o, legs=[m for m in members if (m.parent_id or m.id) == (o.parent_id or o.id)
                                         and m.id != o.id])
        for o in orders
    ]


def _list_orders_sql(with_cursor: bool) -> str:
    # One round trip: zero rows when the account is not visible (-> 404), one row of NULLs when it is
    # visible but has no matching order. The keyset predicate is a row comparison so the
    # (account_id, created_at DESC, id DESC) index serves every page.
    keyset = "AND (o.created_at, o.id) < ($8, $9)" if with_cursor else ""
    return f"""
    SELECT {ORDER_COLUMNS}
      FROM (SELECT id FROM accounts WHERE id = $1 AND {visible_sql("", "$2", "$3")}) a
      LEFT JOIN LATERAL (
        SELECT {ORDER_COLUMNS} FROM orders o
         WHERE o.account_id = $1  -- the constant, not a.id: lets the planner use this account's statistics
           AND ($4::text IS NULL OR o.status = $4) AND ($5::text IS NULL OR o.symbol = $5)
           AND ($6::text IS NULL OR o.side = $6) {keyset}
         ORDER BY o.created_at DESC, o.id DESC
         LIMIT $7
      ) o ON true
    """


_LEGS_OF_SQL = f"""
SELECT {ORDER_COLUMNS} FROM orders o
 WHERE coalesce(o.parent_id, o.id) = ANY($1::uuid[]) AND o.leg IS NOT NULL ORDER BY o.id
"""

_LIST_ORDERS_SQL = {False: _list_orders_sql(False), True: _list_orders_sql(True)}


async def list_orders(
    conn: AsyncConnection | Any, principal: Principal, account_id: uuid.UUID, *, limit: int, cursor: str | None,
    status: str | None, symbol: str | None, side: str | None, nested: bool = False,
) -> tuple[list[OrderOut], str | None]:
    """Newest first; asyncpg straight into msgspec Structs (this is the most frequent read)."""
    args: list[Any] = [account_id, principal.user_id, principal.can_read_all_accounts, status, symbol, side, limit + 1]
    if cursor:
        args.extend(decode_cursor(cursor))
    apg = await raw_connection(conn)
    rows = await apg.fetch(_LIST_ORDERS_SQL[bool(cursor)], *args)
    if not rows:
        raise not_found("Account")
    if rows[0][0] is None:
        return [], None
    items = [OrderOut(*r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    if nested:
        items = await with_legs(apg, items)
    return items, nxt


async def order_by_client_id(
    conn: AsyncConnection | Any, principal: Principal, account_id: uuid.UUID, client_order_id: str
) -> OrderOut:
    """The account's order with this client_order_id (unique per account), or 404 (also for an account the
    caller may not see: never reveal that it exists)."""
    apg = await raw_connection(conn)
    row = await apg.fetchrow(
        _BY_CLIENT_ID_SQL, account_id, principal.user_id, principal.can_read_all_accounts, client_order_id
    )
    if row is None:
        raise not_found("Order")
    return OrderOut(*row)


_BY_CLIENT_ID_SQL = f"""
SELECT {ORDER_COLUMNS} FROM orders o JOIN accounts a ON a.id = o.account_id
 WHERE o.account_id = $1 AND {visible_sql("a", "$2", "$3")} AND o.client_order_id = $4
"""


async def order_fills(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID) -> list[FillOut]:
    await get_order(conn, principal, account_id, order_id)
    rows = await conn.execute(select(*FILL_COLS).where(Fill.order_id == order_id).order_by(Fill.created_at, Fill.seq))
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
    await visible_owner(conn, principal, account_id)
    conditions = [Fill.account_id == account_id]
    if cursor:
        ts, last_seq = _fill_cursor(cursor)
        conditions.append(func.row(Fill.created_at, Fill.seq) < func.row(ts, last_seq))
    if symbol:
        conditions.append(Fill.symbol == symbol)
    # Booking order: the fills of one price share a timestamp and are told apart by `seq`. The index on
    # (account_id, created_at DESC, id DESC) still serves the page: PostgreSQL sorts only within one
    # timestamp (an incremental sort: 0.06 ms against 0.03 ms for a page of 101 of 100,000 fills).
    rows = (
        await conn.execute(
            select(*FILL_COLS, Fill.seq).where(and_(*conditions))
            .order_by(Fill.created_at.desc(), Fill.seq.desc()).limit(limit + 1)
        )
    ).all()
    items = [FillOut(*r[:-1]) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].seq) if len(rows) > limit else None
    return items, nxt


def _fill_cursor(cursor: str) -> tuple[datetime, Any]:
    """(created_at, seq) of the last fill of the previous page. A cursor of the (created_at, id) form
    issued before fills were listed in booking order names its fill by id: its seq is read in SQL."""
    try:
        return decode_int_cursor(cursor)
    except ApiError:
        ts, fill_id = decode_cursor(cursor)
        return ts, select(Fill.seq).where(Fill.id == fill_id).scalar_subquery()


async def positions(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID) -> list[PositionOut]:
    await visible_owner(conn, principal, account_id)
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
        upnl = nonnegative_zero((last - avg) * qty) if last is not None else None  # (a short at its entry)
        out.append(PositionOut(symbol, qty, avg, last, mv, upnl, realized))
    return out

