"""The durable log: order events numbered per account, read back for resume, SSE and activities.

`seq` comes from `accounts.event_seq`, bumped in the transaction that writes the events, on the account
row that every writer already locks or updates (placement's one-statement write bumps it in the same
UPDATE; matching, cancels and expiry here). Seq order is therefore commit order per account, and a
rolled-back write leaves no number behind, so the sequence has no gaps.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.streams import publish
from app.domain.streams.messages import TradeUpdate, encode, trade_update
from app.domain.trading.schemas import OrderOut
from app.lib.decimals import json_builtins

_BUMP_SQL = text(
    """
    UPDATE accounts a SET event_seq = a.event_seq + c.n
      FROM unnest(CAST(:ids AS uuid[]), CAST(:counts AS bigint[])) AS c(id, n)
     WHERE a.id = c.id
    RETURNING a.id, a.event_seq, a.owner_id
    """
)


async def assign_seqs(conn: AsyncConnection, events: Sequence[dict[str, Any]]) -> dict[uuid.UUID, uuid.UUID]:
    """Number `events` (order_events rows about to be inserted, in order) per account, in place, and
    return each account's owner. The caller's transaction must already hold the accounts' rows (every
    writer locks them before deciding), so this takes no new lock and cannot deadlock."""
    counts: dict[uuid.UUID, int] = {}
    for event in events:
        counts[event["account_id"]] = counts.get(event["account_id"], 0) + 1
    if not counts:
        return {}
    rows = (await conn.execute(_BUMP_SQL, {"ids": list(counts), "counts": list(counts.values())})).all()
    next_seq: dict[uuid.UUID, int] = {}
    owners: dict[uuid.UUID, uuid.UUID] = {}
    for account_id, last, owner_id in rows:
        next_seq[account_id] = last - counts[account_id] + 1
        owners[account_id] = owner_id
    for event in events:
        event["seq"] = next_seq[event["account_id"]]
        next_seq[event["account_id"]] += 1
    return owners


def stored_order(order: OrderOut) -> dict[str, Any]:
    """The order_state column's value for SQLAlchemy inserts (JSON types only, as the wire has them:
    decimals in plain notation)."""
    return json_builtins(order)


def trade_update_payload(owner_id: uuid.UUID, update: TradeUpdate) -> bytes:
    return publish.header(owner_id, update.account_id, update.seq) + encode(update)


def defer_trade_updates(
    conn: AsyncConnection,
    events: Sequence[dict[str, Any]],
    owners: dict[uuid.UUID, uuid.UUID],
    orders: Sequence[OrderOut],
) -> None:
    """Queue the trade_updates of inserted `events` (with `orders[i]` the order after `events[i]`) for
    publication when the transaction commits. Those of an account no process has a subscriber for are
    not built (publish.wanted, as placement's stream_messages): a price that fills a thousand orders
    would build and encode a thousand messages to drop them at publication; the log keeps them."""
    wanted: dict[uuid.UUID, bool] = {}
    skipped: dict[uuid.UUID, tuple[int, int]] = {}  # account -> (last seq, count) of unbuilt messages
    for event, order in zip(events, orders, strict=True):
        account_id = event["account_id"]
        wants = wanted.get(account_id)
        if wants is None:
            wants = wanted[account_id] = publish.wanted(owners[account_id], account_id)
        if not wants:
            skipped[account_id] = (event["seq"], skipped.get(account_id, (0, 0))[1] + 1)
            continue
        update = trade_update(
            account_id,
            event["seq"],
            event["type"],
            event["created_at"],
            order,
            event.get("fill_id"),
            event.get("data"),
            event.get("position_qty"),
        )
        publish.defer(conn, publish.TRADE_UPDATES, trade_update_payload(owners[account_id], update))
    for account_id, (last_seq, count) in skipped.items():
        publish.skipped(owners[account_id], account_id, last_seq, count, 0)


# The log of one account after a seq, as stored. Events written before migration 0008 have no stored
# order: they show the order as it is now, with the event's status (the best that can be said of them).
_READ_SQL = """
SELECT e.seq, e.type, e.created_at, e.fill_id, e.data::text AS data, e.position_qty,
       coalesce(e.order_state, (
         SELECT jsonb_build_object(
                  'id', o.id, 'client_order_id', o.client_order_id, 'account_id', o.account_id, 'symbol', o.symbol,
                  'side', o.side, 'type', o.type, 'quantity', o.quantity::text,
                  'filled_quantity', o.filled_quantity::text, 'avg_fill_price', o.avg_fill_price::text,
                  'limit_price', o.limit_price::text, 'stop_price', o.stop_price::text,
                  'time_in_force', o.time_in_force, 'status', e.status_to, 'reject_reason', o.reject_reason,
                  'fees', o.fees::text, 'created_at', o.created_at, 'updated_at', e.created_at)
           FROM orders o WHERE o.id = e.order_id))::text AS order_state
  FROM order_events e
 WHERE e.account_id = $1 AND e.seq > $2 AND ($3::bigint IS NULL OR e.seq <= $3)
 ORDER BY e.seq
 LIMIT $4
"""


async def read_log(
    apg: Any, account_id: uuid.UUID, after_seq: int, limit: int, upto: int | None = None
) -> list[TradeUpdate]:
    """Events of `account_id` with `after_seq < seq (<= upto)`, ascending (`apg`: an asyncpg connection)."""
    rows = await apg.fetch(_READ_SQL, account_id, after_seq, upto, limit)
    return [
        trade_update(
            account_id,
            r["seq"],
            r["type"],
            r["created_at"],
            r["order_state"],
            r["fill_id"],
            r["data"],
            r["position_qty"],
        )
        for r in rows
    ]


# Visibility and the log's bounds in one read: no row when the caller may not read the account (which
# answers exactly like an unknown account).
_STATE_SQL = """
SELECT a.owner_id, a.event_seq, (SELECT min(seq) FROM order_events e WHERE e.account_id = a.id) AS first_seq
  FROM accounts a WHERE a.id = $1 AND (a.owner_id = $2 OR $3)
"""


class LogState(msgspec.Struct, frozen=True):
    owner_id: uuid.UUID
    last_seq: int
    first_seq: int | None  # the oldest retained event (None: no event yet)

    def resume_error(self, since: int) -> tuple[str, str] | None:
        """Why a resume from `since` cannot be exact, or None."""
        if since < 0 or since > self.last_seq:
            return "invalid-since", f"since {since} is outside this account's log (last seq {self.last_seq})"
        if self.first_seq is not None and since < self.first_seq - 1:
            return (
                "resume-too-old",
                f"events after seq {since} are no longer retained (oldest {self.first_seq})",
            )
        return None


async def log_state(apg: Any, account_id: uuid.UUID, user_id: uuid.UUID, read_all: bool) -> LogState | None:
    row = await apg.fetchrow(_STATE_SQL, account_id, user_id, read_all)
    return None if row is None else LogState(row["owner_id"], row["event_seq"], row["first_seq"])


_VISIBLE_SEQS_SQL = "SELECT id, event_seq FROM accounts WHERE owner_id = $1 OR $2"


async def visible_seqs(apg: Any, user_id: uuid.UUID, read_all: bool) -> dict[uuid.UUID, int]:
    """The last seq of every account the caller may read (where a fresh `trade_updates` starts)."""
    return {r["id"]: r["event_seq"] for r in await apg.fetch(_VISIBLE_SEQS_SQL, user_id, read_all)}
