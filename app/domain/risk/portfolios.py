"""Many accounts' risk state in three statements: the set-based read behind stress tests and the sweep.

`load_book` reads one account per round trip (with its row locked, for placement and the single-account
monitor); a desk-wide question (stress 10,000 accounts, sweep every limit) reads the accounts, their
positions and their enabled limits for a whole batch at once, without locks, from one snapshot
(REPEATABLE READ is not needed: each statement's figures are used only together with rows of the same
statement, and the writes that follow are conditional, see `monitoring.py`). The ids arrive as one
array joined through `unnest` (a hash or nested-loop join), never `= ANY(array)`, which PostgreSQL
evaluates as a linear search of the array per row scanned.

The figures match `risk.services` / `risk.pretrade` for one account: a position is marked at its
instrument's last price, at cost when never priced; peak equity is the highest of the account's
`peak_equity`, every equity snapshot and equity now; daily PnL is equity now minus the first snapshot
of the UTC day (else the last one before it; 0 when there is none).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.risk import calculations, checks

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)

_ACCOUNTS_SQL = text(
    """
    SELECT a.id, a.owner_id, a.cash, a.reserved_cash, a.peak_equity, a.trading_state,
           (SELECT max(s.equity) FROM equity_snapshots s WHERE s.account_id = a.id) AS snapshot_peak,
           coalesce(
             (SELECT s.equity FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
             (SELECT s.equity FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts < date_trunc('day', now(), 'UTC')
               ORDER BY s.ts DESC LIMIT 1)
           ) AS day_open_equity,
           CASE WHEN :with_orders THEN
             (SELECT count(*) FROM orders o
               WHERE o.account_id = a.id AND o.status IN ('new', 'accepted', 'partially_filled')) END
             AS open_orders,
           CASE WHEN :with_orders AND EXISTS (
                  SELECT 1 FROM risk_limits r WHERE r.account_id = a.id AND r.enabled
                     AND r.limit_type = 'max_orders_per_minute')
                THEN (SELECT count(*) FROM orders o
                       WHERE o.account_id = a.id AND o.created_at > now() - interval '60 seconds')
                ELSE 0 END AS orders_last_minute
      FROM unnest(CAST(:ids AS uuid[])) AS t(id)
      JOIN accounts a ON a.id = t.id
     ORDER BY a.id
    """
)
_POSITIONS_SQL = text(
    """
    SELECT p.account_id, p.symbol, p.quantity, coalesce(i.last_price, p.avg_entry_price) AS price
      FROM unnest(CAST(:ids AS uuid[])) AS t(id)
      JOIN positions p ON p.account_id = t.id
      JOIN instruments i ON i.symbol = p.symbol
     WHERE p.quantity <> 0
    """
)
LIMITS_SQL = text(
    """
    SELECT r.id, r.account_id, r.limit_type, r.value, r.symbol, r.warn_at_pct, r.enabled, r.auto_reduce_only,
           r.alert_level
      FROM unnest(CAST(:ids AS uuid[])) AS t(id)
      JOIN risk_limits r ON r.account_id = t.id
     WHERE r.enabled
     ORDER BY r.account_id, r.created_at, r.id
    """
)


@dataclass
class Portfolio:
    """One account's risk state: `state` is what the limits measure (exact Decimal, as pre-trade and the
    monitor build it), `limits` the enabled limit rows (with their alert state)."""

    id: uuid.UUID
    owner_id: uuid.UUID
    trading_state: str
    state: checks.PortfolioState
    peak: Decimal
    stored_peak: Decimal
    day_open_equity: Decimal | None
    limits: list[Any] = field(default_factory=list)

    @property
    def equity(self) -> Decimal:
        return self.state.equity


async def load_portfolios(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], *, with_orders: bool = True
) -> list[Portfolio]:
    """The accounts of `ids` that exist, in id order. `with_orders` adds the open-order count and the
    submission-rate window (what the order-count limits measure); stress tests do not need them."""
    if not ids:
        return []
    params = {"ids": list(ids)}
    accounts = (await conn.execute(_ACCOUNTS_SQL, {**params, "with_orders": with_orders})).all()
    positions: dict[uuid.UUID, dict[str, tuple[Decimal, Decimal]]] = {}
    for account_id, symbol, quantity, price in await conn.execute(_POSITIONS_SQL, params):
        positions.setdefault(account_id, {})[symbol] = (quantity, price)
    limits: dict[uuid.UUID, list[Any]] = {}
    for row in await conn.execute(LIMITS_SQL, params):
        limits.setdefault(row.account_id, []).append(row)
    out = []
    for a in accounts:
        state = checks.PortfolioState(
            cash=a.cash,
            positions=positions.get(a.id, {}),
            open_orders=a.open_orders or 0,
            orders_last_minute=a.orders_last_minute or 0,
            reserved_cash=a.reserved_cash,
        )
        equity = state.equity
        peak = max(a.peak_equity, a.snapshot_peak if a.snapshot_peak is not None else a.peak_equity, equity)
        fraction = calculations.drawdown(equity, peak)
        state.drawdown_pct = fraction * _HUNDRED if fraction is not None else _ZERO
        state.daily_pnl = equity - a.day_open_equity if a.day_open_equity is not None else _ZERO
        out.append(
            Portfolio(
                id=a.id,
                owner_id=a.owner_id,
                trading_state=a.trading_state,
                state=state,
                peak=peak,
                stored_peak=a.peak_equity,
                day_open_equity=a.day_open_equity,
                limits=limits.get(a.id, []),
            )
        )
    return out
