"""Paper accounts: creation, listing, valuation, trading state."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account, EquitySnapshot, TradingStateChange
from app.domain.accounts.schemas import AccountCreate, AccountOut, TradingStateOut
from app.domain.audit.services import record as audit
from app.domain.identity.schemas import Principal
from app.domain.streams.events import defer_account_state
from app.domain.trading.book import AccountBook, load_book
from app.lib.db import tx, utcnow
from app.lib.errors import NotFound, invalid
from app.lib.pagination import decode_cursor, encode_cursor


def account_out(book: AccountBook, row: dict) -> AccountOut:
    unrealized = book.unrealized_pnl
    return AccountOut(
        id=book.id, name=row["name"], base_currency=row["base_currency"], initial_cash=book.initial_cash,
        cash=book.cash, equity=book.equity, buying_power=book.buying_power, reserved_cash=book.reserved_cash,
        realized_pnl=book.realized_pnl, unrealized_pnl=unrealized, fees_paid=book.fees_paid,
        allow_short=book.allow_short, trading_state=book.trading_state,  # type: ignore[arg-type]
        trading_state_reason=row["trading_state_reason"], owner_id=book.owner_id, created_at=row["created_at"],
    )


async def create_account(conn: AsyncConnection, principal: Principal, data: AccountCreate) -> AccountOut:
    account_id = uuid.uuid4()
    async with tx(conn):
        await conn.execute(
            insert(Account).values(
                id=account_id, owner_id=principal.user_id, name=data.name, base_currency=data.base_currency,
                initial_cash=data.initial_cash, cash=data.initial_cash, peak_equity=data.initial_cash,
                allow_short=data.allow_short,
            )
        )
        await conn.execute(
            insert(EquitySnapshot).values(account_id=account_id, equity=data.initial_cash, cash=data.initial_cash)
        )
    return await get_account(conn, principal, account_id)


async def get_account(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID) -> AccountOut:
    book = await load_book(conn, account_id, reader=principal)
    if book is None:
        raise NotFound("Account")
    row = (
        await conn.execute(
            select(Account.name, Account.base_currency, Account.trading_state_reason, Account.created_at).where(
                Account.id == account_id
            )
        )
    ).one()
    return account_out(book, row._mapping)


async def list_accounts(
    conn: AsyncConnection, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[AccountOut], str | None]:
    stmt = (
        select(Account.id, Account.created_at)
        .where(visible_to(principal))
        .order_by(Account.created_at.desc(), Account.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(Account.created_at, Account.id) < func.row(ts, last))
    rows = (await conn.execute(stmt)).all()
    items = [await get_account(conn, principal, r.id) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return items, nxt


async def set_trading_state(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, state: str, reason: str | None,
    cancel_open_orders: bool | None = None,
) -> TradingStateOut:
    """Halt / reduce-only / resume, audited. Effective for the next order (same account lock). Halting
    cancels the account's open orders in the same transaction unless `cancel_open_orders` is false
    (app/domain/trading/killswitch.py: its locks come before the account's); with another state it is a
    422: those cancel nothing, and a flag that does nothing must not look as if it did."""
    from app.domain.trading import killswitch

    if cancel_open_orders is not None and state != "halted":
        raise invalid(
            f"cancel_open_orders applies to state halted only: {state} cancels no orders (cancel them with "
            "DELETE .../orders)",
            "cancel_open_orders",
        )
    cancel = state == "halted" and cancel_open_orders is not False
    for attempt in range(killswitch.ATTEMPTS):
        try:
            async with tx(conn):
                locked = await killswitch.lock_open_orders(conn, account_id) if cancel else []
                current = await conn.scalar(
                    select(Account.trading_state)
                    .where(Account.id == account_id, visible_to(principal))
                    .with_for_update()
                )
                if current is None:
                    raise NotFound("Account")
                stale = cancel and await killswitch.missed(conn, account_id, locked)
                if stale and attempt + 1 < killswitch.ATTEMPTS:
                    raise killswitch.Retry
                now = utcnow()
                await conn.execute(
                    update(Account)
                    .where(Account.id == account_id)
                    .values(trading_state=state, trading_state_reason=reason, updated_at=now)
                )
                await conn.execute(
                    insert(TradingStateChange).values(
                        account_id=account_id, actor_id=principal.user_id, old_state=current, new_state=state,
                        reason=reason,
                    )
                )
                canceled = (
                    await killswitch.cancel_locked(conn, account_id, locked, f"account halted: {reason}", now)
                    if locked else []
                )
                change: dict[str, Any] = {"from": current, "to": state, "reason": reason}
                if canceled:
                    change["canceled_orders"] = [str(order_id) for order_id in canceled]
                await audit(conn, "account.trading_state_changed", account_id=account_id, details=change)
                await defer_account_state(conn, account_id, now)  # the `accounts` stream, after commit
        except killswitch.Retry:
            continue
        if stale:
            # Orders kept committing between this transaction's reads and its account lock on every
            # attempt: the account is halted now, so none can be placed any more; cancel the ones it missed.
            canceled += await killswitch.cancel_after_halt(conn, account_id, f"account halted: {reason}")
        return TradingStateOut(  # type: ignore[arg-type]
            account_id=account_id, state=state, reason=reason, previous_state=current,
            canceled_orders=canceled,
        )
    raise AssertionError("unreachable: the last attempt does not retry")
