"""The messages a trading write publishes: its trade_updates (one per order event) and the account's
new state, built from what the writer stored (never re-read)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.domain.streams import publish
from app.domain.streams.log import trade_update_payload
from app.domain.streams.messages import AccountUpdate, RiskMessage, encode, trade_update
from app.domain.trading.book import AccountBook


def account_update(book: AccountBook, at: datetime) -> AccountUpdate:
    return AccountUpdate(
        account_id=book.id,
        at=at,
        cash=book.cash,
        equity=book.equity,
        buying_power=book.buying_power,
        reserved_cash=book.reserved_cash,
        realized_pnl=book.realized_pnl,
        unrealized_pnl=book.unrealized_pnl,
        trading_state=book.trading_state,
    )


def account_payload(book: AccountBook, at: datetime) -> tuple[str, bytes]:
    return publish.ACCOUNTS, publish.header(book.owner_id, book.id) + encode(account_update(book, at))


def stream_messages(
    book: AccountBook, events: list[dict[str, Any]], last_seq: int, at: datetime, fill_id: uuid.UUID | None
) -> list[tuple[str, bytes]]:
    """Placement's messages: `events` are the rows it wrote (each with its `order_state`), numbered up to
    `last_seq`; `fill_id` is the one fill a placement can make. None at all when no process has a
    subscriber for the account (publish.wanted): the log keeps the events for one that comes later."""
    if not publish.wanted(book.owner_id, book.id):
        publish.skipped(book.owner_id, book.id, last_seq, len(events), 1)
        return []
    first = last_seq - len(events) + 1
    out = []
    for i, event in enumerate(events):
        fill = fill_id if event.get("fill_id") is not None else None
        update = trade_update(
            book.id,
            first + i,
            event["type"],
            at,
            event["order_state"],
            fill,
            event.get("data"),
            event.get("position_qty"),
        )
        out.append((publish.TRADE_UPDATES, trade_update_payload(book.owner_id, update)))
    out.append(account_payload(book, at))
    return out


def defer_account_update(conn: Any, book: AccountBook, at: datetime) -> None:
    """Publish the account's state when `conn`'s transaction commits."""
    if not publish.wanted(book.owner_id, book.id):
        publish.skipped(book.owner_id, book.id, 0, 0, 1)
        return
    publish.defer(conn, *account_payload(book, at))


async def defer_account_state(conn: Any, account_id: uuid.UUID, at: datetime) -> None:
    """For writers that change the account without its book in hand (a cancel releasing cash, a
    trading-state change): read the book inside the transaction (the row is already locked by the
    writer) and publish it when the transaction commits."""
    if not publish.anyone():
        return
    from app.domain.trading.book import read_book_in_tx

    book = await read_book_in_tx(conn, account_id)
    if book is not None:
        defer_account_update(conn, book, at)


def risk_payload(
    kind: str, owner_id: uuid.UUID, account_id: uuid.UUID, at: datetime, data: Any
) -> tuple[str, bytes]:
    """A `violation` or `risk_alert` message; `data` is the stored row as the REST list shows it."""
    body = RiskMessage(type=kind, account_id=account_id, at=at, data=msgspec.to_builtins(data))
    return publish.RISK, publish.header(owner_id, account_id) + encode(body)


def defer_risk_messages(
    conn: Any, book: AccountBook, at: datetime, violations: list[Any], alerts: list[Any], trading_state: str
) -> None:
    """A post-trade check's outcome for the `risk` stream (and `accounts` when it changed the trading
    state), published when its transaction commits."""
    if not publish.wanted(book.owner_id, book.id):
        return
    for violation in violations:
        publish.defer(conn, *risk_payload("violation", book.owner_id, book.id, at, violation))
    for alert in alerts:
        publish.defer(conn, *risk_payload("risk_alert", book.owner_id, book.id, at, alert))
    if trading_state != book.trading_state:
        defer_account_update(conn, dataclasses.replace(book, trading_state=trading_state), at)
