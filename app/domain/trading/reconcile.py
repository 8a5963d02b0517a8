"""Cash and positions must always be reproducible from the fills: this replays them and reports drift."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.models import Account, Position
from app.domain.trading import accounting
from app.domain.trading.models import Fill


@dataclass
class Drift:
    account_id: uuid.UUID
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def reconcile_account(conn: AsyncConnection, account_id: uuid.UUID) -> Drift:
    account = (
        await conn.execute(select(Account.initial_cash, Account.cash, Account.realized_pnl).where(Account.id == account_id))
    ).one()
    fills = [
        accounting.FillRecord(r.symbol, r.side, r.quantity, r.price, r.fee)
        for r in await conn.execute(
            select(Fill.symbol, Fill.side, Fill.quantity, Fill.price, Fill.fee).where(Fill.account_id == account_id).order_by(Fill.seq)
        )
    ]
    cash, expected = accounting.reconcile(fills, account.initial_cash)
    drift = Drift(account_id)
    if cash != account.cash:
        drift.problems.append(f"cash {account.cash} != {cash} replayed from {len(fills)} fills")
    stored = {
        r.symbol: r
        for r in await conn.execute(
            select(Position.symbol, Position.quantity, Position.avg_entry_price, Position.realized_pnl).where(
                Position.account_id == account_id
            )
        )
    }
    realized_total = Decimal(0)
    for symbol in sorted(set(stored) | set(expected)):
        want = expected.get(symbol, accounting.PositionState.flat())
        realized_total += want.realized_pnl
        have = stored.get(symbol)
        have_qty = have.quantity if have else Decimal(0)
        if have_qty != want.quantity:
            drift.problems.append(f"{symbol}: quantity {have_qty} != {want.quantity}")
        if have and have.avg_entry_price != want.avg_entry_price:
            drift.problems.append(f"{symbol}: avg_entry_price {have.avg_entry_price} != {want.avg_entry_price}")
        if have and have.realized_pnl != want.realized_pnl:
            drift.problems.append(f"{symbol}: realized_pnl {have.realized_pnl} != {want.realized_pnl}")
    if realized_total != account.realized_pnl:
        drift.problems.append(f"account realized_pnl {account.realized_pnl} != {realized_total}")
    # fills.account_id and order_events.account_id copy their order's account (no foreign key of their
    # own, migration 0005): a copy that disagrees would move cash or history to the wrong account.
    mismatched = (await conn.execute(_MISFILED_SQL, {"account_id": account_id})).one()
    if mismatched.fills:
        drift.problems.append(f"{mismatched.fills} fills carry this account but belong to another account's orders")
    if mismatched.events:
        drift.problems.append(f"{mismatched.events} order events of this account's orders carry another account")
    return drift


# Both through indexes: fills by (account_id, ...), events through this account's orders and
# (order_id) (order_events has no account index: it would cost every placement three more index inserts).
# Over all accounts the two directions cover every row: a misfiled fill is counted where it is filed, a
# misfiled event where its order is.
_MISFILED_SQL = text("""
SELECT (SELECT count(*) FROM fills f JOIN orders o ON o.id = f.order_id
         WHERE f.account_id = :account_id AND o.account_id <> f.account_id) AS fills,
       (SELECT count(*) FROM orders o JOIN order_events e ON e.order_id = o.id
         WHERE o.account_id = :account_id AND e.account_id <> o.account_id) AS events
""")


async def reconcile_all(conn: AsyncConnection, batch: int = 500) -> list[Drift]:
    drifts: list[Drift] = []
    last: uuid.UUID | None = None
    while True:
        stmt = select(Account.id).order_by(Account.id).limit(batch)
        if last is not None:
            stmt = stmt.where(Account.id > last)
        ids = list(await conn.scalars(stmt))
        for account_id in ids:
            d = await reconcile_account(conn, account_id)
            if not d.ok:
                drifts.append(d)
        await conn.rollback()  # release the snapshot between batches
        if len(ids) < batch:
            return drifts
        last = ids[-1]
