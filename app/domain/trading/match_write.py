"""What one price update's match stores, in one statement (matching.match_resting_orders).

A price can act on a thousand resting orders at once. Written row by row (an executemany per table, each
row bound and executed on its own, SQLAlchemy processing every parameter, the JSON columns encoded with
the standard library) the writes cost several times the matching itself. Here every row travels in one
JSON document per table, encoded by msgspec (the orders after each event as they are: msgspec writes
Structs, Decimals and UUIDs as the API does), and one statement of data-modifying CTEs applies them: the
orders (matched rows and group members), the trailing stops that moved, the fills, the accounts
(balances and the stream counter `event_seq`), the positions, the equity snapshots and the order events
with their stream numbers. The events' document is `jsonb`: parsed once, where `json` is parsed again by
json_to_recordset and each order state a third time into its jsonb column (~15 % of the statement's time
at 1,138 events). Foreign keys are checked at the end of the statement, so the events may name
fills inserted by a sibling CTE, as placement's WRITE_SQL does.

`seq` (app/domain/streams/log.py): each account's events take the next numbers of its counter, in the
order given, from the same UPDATE that writes its balances. The caller holds every account row locked
(services: load_books), so the numbers follow commit order and have no gaps.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.lib.db import raw_connection
from app.lib.decimals import encode_json

_encode = msgspec.json.Encoder().encode

MATCH_WRITE_SQL = """
WITH matched AS (
  UPDATE orders o
     SET quantity = r.quantity, filled_quantity = r.filled_quantity, avg_fill_price = r.avg_fill_price,
         fees = r.fees, status = r.status, reserved_cash = r.reserved_cash, triggered = r.triggered,
         reject_reason = r.reject_reason, updated_at = $8
    FROM json_to_recordset($1::json) AS r(id uuid, quantity numeric, filled_quantity numeric,
                                          avg_fill_price numeric, fees numeric, status text,
                                          reserved_cash numeric, triggered boolean, reject_reason text)
   WHERE o.id = r.id
), trailed AS (
  UPDATE orders o SET hwm = t.hwm, stop_price = t.stop, updated_at = $8
    FROM json_to_recordset($2::json) AS t(id uuid, hwm numeric, stop numeric)
   WHERE o.id = t.id
), new_fills AS (
  INSERT INTO fills (id, order_id, account_id, symbol, side, quantity, price, fee, liquidity, created_at)
  SELECT f.id, f.order_id, f.account_id, f.symbol, f.side, f.quantity, f.price, f.fee, f.liquidity, $8
    FROM ROWS FROM (json_to_recordset($3::json) AS (id uuid, order_id uuid, account_id uuid, symbol text,
                                                   side text, quantity numeric, price numeric, fee numeric,
                                                   liquidity text)) WITH ORDINALITY AS f
   ORDER BY f.ordinality
), account AS (
  UPDATE accounts a
     SET cash = b.cash, reserved_cash = b.reserved_cash, realized_pnl = b.realized_pnl,
         fees_paid = b.fees_paid, peak_equity = b.peak_equity, updated_at = $8, event_seq = a.event_seq + b.events
    FROM json_to_recordset($5::json) AS b(id uuid, cash numeric, reserved_cash numeric, realized_pnl numeric,
                                          fees_paid numeric, peak_equity numeric, events bigint)
   WHERE a.id = b.id
  RETURNING a.id, a.event_seq, a.owner_id, b.events
), new_events AS (
  INSERT INTO order_events (order_id, account_id, type, status_from, status_to, reason, fill_id, data,
                            created_at, seq, order_state, position_qty)
  SELECT e.order_id, e.account_id, e.type, e.status_from, e.status_to, e.reason, e.fill_id, e.data, $8,
         account.event_seq - account.events
           + row_number() OVER (PARTITION BY e.account_id ORDER BY e.ordinality),
         e.order_state, e.position_qty
    FROM ROWS FROM (jsonb_to_recordset($4::jsonb)
                      AS (order_id uuid, account_id uuid, type text, status_from text, status_to text,
                          reason text, fill_id uuid, data jsonb, order_state jsonb, position_qty numeric))
         WITH ORDINALITY AS e
    JOIN account ON account.id = e.account_id
   ORDER BY e.ordinality
), position AS (
  INSERT INTO positions (account_id, symbol, quantity, avg_entry_price, realized_pnl, updated_at)
  SELECT p.account_id, p.symbol, p.quantity, p.avg_entry_price, p.realized_pnl, $8
    FROM json_to_recordset($6::json) AS p(account_id uuid, symbol text, quantity numeric,
                                          avg_entry_price numeric, realized_pnl numeric)
  ON CONFLICT (account_id, symbol) DO UPDATE
     SET quantity = EXCLUDED.quantity, avg_entry_price = EXCLUDED.avg_entry_price,
         realized_pnl = EXCLUDED.realized_pnl, updated_at = EXCLUDED.updated_at
), snapshot AS (
  INSERT INTO equity_snapshots (account_id, ts, equity, cash)
  SELECT s.account_id, $8, s.equity, s.cash
    FROM json_to_recordset($7::json) AS s(account_id uuid, equity numeric, cash numeric)
)
SELECT id, event_seq, owner_id FROM account
"""


async def write_match(
    conn: Any,
    orders: list[dict[str, Any]],
    trails: list[dict[str, Any]],
    fills: list[dict[str, Any]],
    events: list[dict[str, Any]],
    books: list[Any],
    now: datetime,
) -> dict[uuid.UUID, uuid.UUID]:
    """Store a match (see the module docstring) and number `events` in place (`seq`), as
    streams.log.assign_seqs does; returns each account's owner. `events` are rules.event_row rows whose
    `order_state` is the order after the event (an OrderOut); `books` the AccountBooks of every account
    an event, a fill or a released reservation touched."""
    counts: dict[uuid.UUID, int] = {}
    for event in events:
        counts[event["account_id"]] = counts.get(event["account_id"], 0) + 1
    accounts: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    for book in books:
        account, changed, snapshot = book.take_writes(now)
        account["events"] = counts.pop(book.id, 0)
        accounts.append(account)
        positions.extend(changed)
        if snapshot is not None:
            snapshots.append(snapshot)
    if counts:  # an event of an account without its book would get no number: a bug, before any write
        raise RuntimeError(f"order events of accounts without a loaded book: {sorted(map(str, counts))}")
    apg = await raw_connection(conn)
    rows = await apg.fetch(
        MATCH_WRITE_SQL,
        _encode(orders).decode(),
        _encode(trails).decode(),
        _encode(fills).decode(),
        encode_json(events).decode(),  # (stored and paged by /activities: decimals in plain notation)
        _encode(accounts).decode(),
        _encode(positions).decode(),
        _encode(snapshots).decode(),
        now,
    )
    next_seq: dict[uuid.UUID, int] = {}
    owners: dict[uuid.UUID, uuid.UUID] = {}
    written = {a["id"]: a["events"] for a in accounts}
    for account_id, last, owner_id in rows:
        next_seq[account_id] = last - written[account_id] + 1
        owners[account_id] = owner_id
    for event in events:
        event["seq"] = next_seq[event["account_id"]]
        next_seq[event["account_id"]] += 1
    return owners
