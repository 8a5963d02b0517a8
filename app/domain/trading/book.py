"""An account's money and positions, loaded with the account row locked and written back once.

Every fill goes through `AccountBook.apply_fill`, at placement and when a price update sweeps resting
orders, so cash, positions, fees and realised PnL change in one place and always agree with the fills.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_sql
from app.domain.trading import accounting
from app.domain.trading.queries import OPEN_OR_HELD_STATUS_SQL, open_sells
from app.domain.trading.rules import fee as fee_for
from app.domain.trading.rules import notional
from app.lib.ids import new_time_ordered_uuid

ZERO = Decimal(0)

# One round trip: the locked account row plus everything pre-trade checks need, aggregated server-side.
# Numbers travel as text inside JSON so that no value passes through a float.
# The account's positions with each instrument's last price, as JSON (shared with placement's lean read).
POSITIONS_JSON_SQL = """(SELECT coalesce(json_agg(json_build_array(p.symbol, p.quantity::text, p.avg_entry_price::text,
                                                      p.realized_pnl::text, i.last_price::text)), '[]')
              FROM positions p JOIN instruments i ON i.symbol = p.symbol
             WHERE p.account_id = a.id)"""


def book_sql(account_id: str, with_stats: str, symbol: str, *, columns: str = "", joins: str = "") -> str:
    """The account `a` with its positions and, when `with_stats` (a boolean parameter) holds, everything
    pre-trade risk reads: open orders, the last minute's submissions, open sells in `symbol`, the day's
    opening equity and the enabled limits. The three arguments are the statement's parameters (named for
    SQLAlchemy, positional for asyncpg); `columns` come before the account's (each ending in a comma) and
    `joins` after `FROM accounts a` (placement adds the instrument, its replay lookup and row versions)."""
    return f"""
    SELECT {columns}a.id, a.owner_id, a.cash, a.reserved_cash, a.realized_pnl, a.fees_paid, a.peak_equity,
           a.allow_short, a.trading_state, a.initial_cash,
           {POSITIONS_JSON_SQL} AS positions,
           CASE WHEN {with_stats} THEN json_build_array(
             (SELECT count(*) FROM orders o  -- what max_open_orders counts: held legs too
               WHERE o.account_id = a.id AND o.{OPEN_OR_HELD_STATUS_SQL}),
             -- The submission-rate window is only needed when such a limit exists; counting it always
             -- would cost a busy bot an index range scan over its last minute of orders per order.
             CASE WHEN EXISTS (SELECT 1 FROM risk_limits r WHERE r.account_id = a.id AND r.enabled
                                 AND r.limit_type = 'max_orders_per_minute')
                  THEN (SELECT count(*) FROM orders o
                         WHERE o.account_id = a.id AND o.created_at > now() - interval '60 seconds')
                  ELSE 0 END,
             {open_sells(symbol)})
           END AS order_stats,
           CASE WHEN {with_stats} THEN coalesce(
             (SELECT s.equity::text FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
             (SELECT s.equity::text FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts < date_trunc('day', now(), 'UTC') ORDER BY s.ts DESC LIMIT 1))
           END AS day_open_equity,
           CASE WHEN {with_stats} THEN (
             SELECT coalesce(json_agg(json_build_array(r.id::text, r.limit_type, r.value::text, r.symbol,
                                                       r.warn_at_pct::text)), '[]')
               FROM risk_limits r WHERE r.account_id = a.id AND r.enabled)
           END AS limits
      FROM accounts a{joins}
     WHERE a.id = {account_id}
    """


# Lock first, read second. In READ COMMITTED a statement that waits for a row lock re-checks only the
# locked row; its subqueries (positions, order stats) keep the snapshot from before the wait and would
# miss what the previous lock holder just committed. The read that follows the lock gets a new snapshot.
LOCK_ACCOUNT_SQL = text("SELECT id FROM accounts WHERE id = :account_id FOR UPDATE")
_LOAD_SQL = text(book_sql(":account_id", ":with_stats", ":symbol"))
_READ_SQL = text(
    book_sql(":account_id", ":with_stats", ":symbol") + " AND " + visible_sql("a", ":user_id", ":read_all")
)


@dataclass
class AccountBook:
    id: uuid.UUID
    owner_id: uuid.UUID
    cash: Decimal
    reserved_cash: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    peak_equity: Decimal
    allow_short: bool
    trading_state: str
    initial_cash: Decimal
    positions: dict[str, accounting.PositionState]
    prices: dict[str, Decimal | None]
    open_orders: int = 0
    orders_last_minute: int = 0
    open_sell_quantity: Decimal = ZERO
    day_open_equity: Decimal | None = None
    limits: list[tuple[str, str, Decimal, str | None, Decimal]] = field(default_factory=list)
    dirty_symbols: set[str] = field(default_factory=set)
    filled: bool = False

    @property
    def equity(self) -> Decimal:
        total = self.cash
        for symbol, pos in self.positions.items():
            price = self.prices.get(symbol)
            if pos.quantity and price is not None:
                total += pos.quantity * price
            elif pos.quantity:
                total += pos.quantity * pos.avg_entry_price  # never priced: carry at cost
        return total

    @property
    def unrealized_pnl(self) -> Decimal:
        """Open positions marked at their last prices (positions never priced count zero)."""
        total = ZERO
        for symbol, pos in self.positions.items():
            price = self.prices.get(symbol)
            if pos.quantity and price is not None:
                total += pos.unrealized_pnl(price)
        return total

    @property
    def buying_power(self) -> Decimal:
        return self.cash - self.reserved_cash

    def position(self, symbol: str) -> accounting.PositionState:
        return self.positions.get(symbol) or accounting.PositionState.flat()

    def apply_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal, fee_rate: Decimal) -> tuple[Decimal, Decimal]:
        """Book one fill; returns (fee, realised PnL of this fill)."""
        fee = fee_for(notional(qty, price), fee_rate)
        before = self.position(symbol)
        after = accounting.apply_fill(before, side, qty, price)
        realized = after.realized_pnl - before.realized_pnl
        self.positions[symbol] = after
        self.cash += accounting.cash_delta(side, qty, price, fee)
        self.realized_pnl += realized
        self.fees_paid += fee
        self.prices.setdefault(symbol, price)
        self.dirty_symbols.add(symbol)
        self.filled = True
        return fee, realized

    def take_writes(self, now: datetime) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
        """What the book changed, as rows to write: the account's columns, the positions that changed, and
        (after fills) an equity snapshot; marks them written (matching writes them: match_write.py)."""
        equity = self.equity
        if self.filled and equity > self.peak_equity:
            self.peak_equity = equity
        account = {
            "id": self.id, "cash": self.cash, "reserved_cash": self.reserved_cash, "realized_pnl": self.realized_pnl,
            "fees_paid": self.fees_paid, "peak_equity": self.peak_equity,
        }
        positions = [
            {
                "account_id": self.id, "symbol": s, "quantity": self.positions[s].quantity,
                "avg_entry_price": self.positions[s].avg_entry_price,
                "realized_pnl": self.positions[s].realized_pnl, "updated_at": now,
            }
            for s in sorted(self.dirty_symbols)
        ]
        snapshot = {"account_id": self.id, "equity": equity, "cash": self.cash} if self.filled else None
        self.dirty_symbols.clear()
        self.filled = False
        return account, positions, snapshot


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


async def load_book(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    with_stats: bool = False,
    symbol: str = "",
    reader: Any = None,
) -> AccountBook | None:
    """Lock the account row and load its book (with order stats and limits for pre-trade checks).

    With `reader` (a Principal) it is a plain read filtered by owner in SQL, without the lock.
    """
    params = {"account_id": account_id, "with_stats": with_stats, "symbol": symbol}
    if reader is not None:
        params.update(user_id=reader.user_id, read_all=reader.can_read_all_accounts)
    if reader is None:
        if (await conn.execute(LOCK_ACCOUNT_SQL, {"account_id": account_id})).one_or_none() is None:
            return None
    row = (await conn.execute(_READ_SQL if reader is not None else _LOAD_SQL, params)).one_or_none()
    if row is None:
        return None
    return book_from_row(row._mapping, with_stats)


_LOCK_ACCOUNTS_SQL = text("SELECT id FROM accounts WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE")
_LOAD_MANY_SQL = text(book_sql("ANY(CAST(:ids AS uuid[]))", ":with_stats", ":symbol"))


async def load_books(conn: AsyncConnection, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, AccountBook]:
    """Lock several accounts and load their books (no order stats), in two statements whatever their
    number. The rows are locked in id order (the lock sits above the sort), as the documented lock order
    wants; the read comes after the lock for the reason given at LOCK_ACCOUNT_SQL."""
    params = {"ids": account_ids, "with_stats": False, "symbol": ""}
    await conn.execute(_LOCK_ACCOUNTS_SQL, params)
    rows = (await conn.execute(_LOAD_MANY_SQL, params)).all()
    return {row.id: book_from_row(row._mapping, False) for row in rows}


async def read_book_in_tx(conn: AsyncConnection, account_id: uuid.UUID) -> AccountBook | None:
    """The book as the caller's transaction sees it, without taking a lock (the caller holds one)."""
    row = (await conn.execute(_LOAD_SQL, {"account_id": account_id, "with_stats": False, "symbol": ""})).one_or_none()
    return None if row is None else book_from_row(row._mapping, False)


def book_from_row(row: Any, with_stats: bool) -> AccountBook:
    """Build the book from one row of `book_sql` (a SQLAlchemy mapping or an asyncpg Record)."""
    positions: dict[str, accounting.PositionState] = {}
    prices: dict[str, Decimal | None] = {}
    raw_positions = row["positions"]
    if isinstance(raw_positions, str):
        raw_positions = msgspec.json.decode(raw_positions)
    for sym, qty, avg, realized, last in raw_positions:
        positions[sym] = accounting.PositionState(Decimal(qty), Decimal(avg), Decimal(realized))
        prices[sym] = _dec(last)
    book = AccountBook(
        id=row["id"], owner_id=row["owner_id"], cash=row["cash"], reserved_cash=row["reserved_cash"],
        realized_pnl=row["realized_pnl"], fees_paid=row["fees_paid"], peak_equity=row["peak_equity"],
        allow_short=row["allow_short"], trading_state=row["trading_state"], initial_cash=row["initial_cash"],
        positions=positions, prices=prices,
    )
    if with_stats:
        stats = row["order_stats"]
        limits = row["limits"]
        if isinstance(stats, str):
            stats, limits = msgspec.json.decode(stats), msgspec.json.decode(limits)
        open_orders, last_minute, open_sells = stats
        book.open_orders = int(open_orders)
        book.orders_last_minute = int(last_minute)
        book.open_sell_quantity = Decimal(open_sells)
        book.day_open_equity = _dec(row["day_open_equity"])
        book.limits = [(lid, ltype, Decimal(value), sym, Decimal(warn)) for lid, ltype, value, sym, warn in limits]
    return book


def fill_row(order_id: uuid.UUID, account_id: uuid.UUID, symbol: str, side: str, qty: Decimal, price: Decimal,
             fee: Decimal, liquidity: str, now: datetime) -> dict[str, Any]:
    return {
        "id": new_time_ordered_uuid(), "order_id": order_id, "account_id": account_id, "symbol": symbol, "side": side,
        "quantity": qty, "price": price, "fee": fee, "liquidity": liquidity, "created_at": now,
    }
