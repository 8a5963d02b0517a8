"""The kill switch: halting an account cancels its open orders (held legs included) in the halt's own
transaction, unless the caller says `cancel_open_orders: false`. Matching never fills a halted account's
order in any case (matching.match_resting_orders).

Locks in the documented order, instrument -> orders -> account: the account's open orders' instruments
(FOR KEY SHARE, by symbol: a price update on them waits, and waits for nothing we hold), then the orders
(FOR UPDATE, by id), then the account row (the caller's FOR UPDATE). An order written between the first
read and the account lock (a placement commits by updating the account row, so none can commit after it)
is not locked: the caller sees it with `missed` and starts again. If orders keep arriving in that window
on every attempt, the last one halts the account with the orders it locked, and `cancel_after_halt`
cancels the rest in a transaction of its own: once the halt has committed no order can be placed, and
matching fills none of a halted account's orders meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.trading import groups as grouping
from app.domain.trading.queries import OPEN_OR_HELD
from app.domain.trading.rules import EventType

_OPEN_OR_HELD = f"status IN {OPEN_OR_HELD}"
_SYMBOLS_SQL = text(f"SELECT DISTINCT symbol FROM orders WHERE account_id = :a AND {_OPEN_OR_HELD}")
_LOCK_INSTRUMENTS_SQL = text(
    "SELECT symbol FROM instruments WHERE symbol = ANY(CAST(:s AS text[])) ORDER BY symbol FOR KEY SHARE"
)
_LOCK_ORDERS_SQL = text(
    f"SELECT {grouping.MEMBER_COLUMNS} FROM orders WHERE account_id = :a AND {_OPEN_OR_HELD} "
    "ORDER BY id FOR UPDATE"
)
_MISSED_SQL = text(
    f"SELECT EXISTS (SELECT 1 FROM orders WHERE account_id = :a AND {_OPEN_OR_HELD} "
    "AND NOT (id = ANY(CAST(:ids AS uuid[]))))"
)
ATTEMPTS = 5


class Retry(Exception):
    """An open order appeared between the reads and the account lock: start the transaction again."""


async def lock_open_orders(conn: AsyncConnection, account_id: uuid.UUID) -> list[grouping.Member]:
    """Lock the instruments of the account's open and held orders, then those orders. Before the account."""
    symbols = sorted((await conn.execute(_SYMBOLS_SQL, {"a": account_id})).scalars())
    if not symbols:
        return []
    await conn.execute(_LOCK_INSTRUMENTS_SQL, {"s": symbols})
    rows = (await conn.execute(_LOCK_ORDERS_SQL, {"a": account_id})).all()
    return [grouping.Member(**r._mapping) for r in rows]


async def missed(conn: AsyncConnection, account_id: uuid.UUID, locked: list[grouping.Member]) -> bool:
    """With the account locked: is any open order of it not among `locked`?"""
    return bool(await conn.scalar(_MISSED_SQL, {"a": account_id, "ids": [m.id for m in locked]}))


async def cancel_after_halt(conn: AsyncConnection, account_id: uuid.UUID, reason: str) -> list[uuid.UUID]:
    """Cancel the open orders a committed halt did not lock (in the same lock order), while the account
    is still halted; the ids canceled."""
    from sqlalchemy import select

    from app.domain.accounts.models import Account
    from app.lib.db import tx, utcnow

    for _ in range(ATTEMPTS):
        try:
            async with tx(conn):
                locked = await lock_open_orders(conn, account_id)
                state = await conn.scalar(
                    select(Account.trading_state).where(Account.id == account_id).with_for_update()
                )
                if state != "halted":
                    return []  # resumed meanwhile: its orders are its own again
                if await missed(conn, account_id, locked):
                    raise Retry  # (cannot happen while halted: kept for the lock order's sake)
                return await cancel_locked(conn, account_id, locked, reason, utcnow()) if locked else []
        except Retry:
            continue
    return []


async def cancel_locked(
    conn: AsyncConnection, account_id: uuid.UUID, locked: list[grouping.Member], reason: str, now: datetime
) -> list[uuid.UUID]:
    """Cancel every order of `locked` (all open or held; the account is locked) with one event each."""
    groups = grouping.Groups({m.id: m for m in locked})
    changes: list[grouping.Change] = []
    for m in locked:  # (each ends on its own: all of its group's open members are in `locked` too)
        frm = m.status
        m.status = "canceled"
        groups.release(m)
        changes.append(groups._change(m, EventType.CANCELED, frm, now, reason=reason))
    await grouping.apply(conn, groups, changes, now)
    return [m.id for m in locked]
