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
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.risk import calculations, checks, stress
from app.lib.db import raw_connection

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)

_ACCOUNTS_SQL = """
    SELECT a.id, a.owner_id, a.cash, a.reserved_cash, a.peak_equity, a.trading_state,
           (SELECT max(s.equity) FROM equity_snapshots s WHERE s.account_id = a.id) AS snapshot_peak,
           coalesce(
             (SELECT s.equity FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
             (SELECT s.equity FROM equity_snapshots s
               WHERE s.account_id = a.id AND s.ts < date_trunc('day', now(), 'UTC')
               ORDER BY s.ts DESC LIMIT 1)
           ) AS day_open_equity,
           CASE WHEN $2::boolean THEN
             (SELECT count(*) FROM orders o
               WHERE o.account_id = a.id AND o.status IN ('new', 'held', 'accepted', 'partially_filled')) END
             AS open_orders,
           CASE WHEN $2::boolean AND (  -- a count, not EXISTS: EXISTS was planned as a scan of every limit
                  SELECT count(*) FROM risk_limits r WHERE r.account_id = a.id AND r.enabled
                     AND r.limit_type = 'max_orders_per_minute') > 0  -- ix_risk_limits_order_rate
                THEN (SELECT count(*) FROM orders o
                       WHERE o.account_id = a.id AND o.created_at > now() - interval '60 seconds')
                ELSE 0 END AS orders_last_minute,
           a.xmin::text AS version
      FROM unnest($1::uuid[]) AS t(id)
      JOIN accounts a ON a.id = t.id
     ORDER BY a.id
    """
_POSITIONS_SQL = """
    SELECT p.account_id, p.symbol, p.quantity, coalesce(i.last_price, p.avg_entry_price) AS price,
           p.quantity::float8 AS quantity_f, coalesce(i.last_price, p.avg_entry_price)::float8 AS price_f
      FROM unnest($1::uuid[]) AS t(id)
      JOIN positions p ON p.account_id = t.id
      JOIN instruments i ON i.symbol = p.symbol
     WHERE p.quantity <> 0
    """
LIMITS_SQL = """
    SELECT r.id, r.account_id, r.limit_type, r.value, r.symbol, r.warn_at_pct, r.enabled, r.auto_reduce_only,
           r.alert_level, r.value::float8 AS value_f, least(r.warn_at_pct, 100)::float8 / 100 AS warn_f
      FROM unnest($1::uuid[]) AS t(id)
      JOIN risk_limits r ON r.account_id = t.id
     WHERE r.enabled
     ORDER BY r.account_id, r.created_at, r.id
    """
# The same for a batch of the monitors (up to PROBE_LIMIT accounts): each account's limits by its index
# (ix_risk_limits_account_id). Joined, the planner hashed every limit of the firm (40,000 here, spilling
# to disk) to probe it with the batch's 1,000 ids: 40 against 13 ms. OFFSET 0 keeps the subquery from
# being flattened back into that join. A stress test of every account still hashes: there it is cheaper.
LIMITS_BY_ACCOUNT_SQL = LIMITS_SQL.replace(
    """JOIN risk_limits r ON r.account_id = t.id
     WHERE r.enabled""",
    "CROSS JOIN LATERAL (SELECT * FROM risk_limits r WHERE r.account_id = t.id AND r.enabled OFFSET 0) r",
)
assert "LATERAL" in LIMITS_BY_ACCOUNT_SQL
PROBE_LIMIT = 2000


class LimitRow(NamedTuple):
    """A row of LIMITS_SQL. A tuple's attribute read costs a tenth of a SQLAlchemy Row's, and the checks
    read these attributes several times per limit."""

    id: uuid.UUID
    account_id: uuid.UUID
    limit_type: str
    value: Decimal
    symbol: str | None
    warn_at_pct: Decimal
    enabled: bool
    auto_reduce_only: bool
    alert_level: str | None
    value_f: float
    warn_f: float


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
    # The positions again as float64 (quantity, price), in `state.positions` order, for the numpy core
    # (`as_books`): PostgreSQL sends them as float8, which costs far less than float() of each Decimal.
    floats: list[tuple[float, float]] | None = None
    version: str | None = None  # the account row's version (xmin) when it was read

    @cached_property
    def equity(self) -> Decimal:
        return self.state.equity


async def load_portfolios(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], *, with_orders: bool = True
) -> list[Portfolio]:
    """The accounts of `ids` that exist, in id order. `with_orders` adds the open-order count and the
    submission-rate window (what the order-count limits measure); stress tests do not need them."""
    if not ids:
        return []
    # asyncpg directly, inside the caller's transaction: SQLAlchemy's result processing cost about as
    # much as the rest of the read for the 100,000 rows of a 10,000-account stress test.
    apg = await raw_connection(conn)
    ids = list(ids)
    accounts = await apg.fetch(_ACCOUNTS_SQL, ids, with_orders)
    positions: dict[uuid.UUID, dict[str, tuple[Decimal, Decimal]]] = {}
    floats: dict[uuid.UUID, list[tuple[float, float]]] = {}
    for account_id, symbol, quantity, price, quantity_f, price_f in await apg.fetch(_POSITIONS_SQL, ids):
        positions.setdefault(account_id, {})[symbol] = (quantity, price)
        floats.setdefault(account_id, []).append((quantity_f, price_f))
    limits: dict[uuid.UUID, list[Any]] = {}
    for row in await apg.fetch(LIMITS_BY_ACCOUNT_SQL if len(ids) <= PROBE_LIMIT else LIMITS_SQL, ids):
        limits.setdefault(row[1], []).append(LimitRow._make(row))
    out = []
    for row in accounts:
        account_id, owner_id, cash, reserved_cash, stored_peak, trading_state, snapshot_peak = row[:7]
        day_open_equity, open_orders, orders_last_minute, version = row[7:]
        state = checks.PortfolioState(
            cash=cash,
            positions=positions.get(account_id, {}),
            open_orders=open_orders or 0,
            orders_last_minute=orders_last_minute or 0,
            reserved_cash=reserved_cash,
        )
        equity = state.equity
        peak = max(stored_peak, snapshot_peak if snapshot_peak is not None else stored_peak, equity)
        fraction = calculations.drawdown(equity, peak)
        state.drawdown_pct = fraction * _HUNDRED if fraction is not None else _ZERO
        state.daily_pnl = equity - day_open_equity if day_open_equity is not None else _ZERO
        portfolio = Portfolio(
            id=account_id,
            owner_id=owner_id,
            trading_state=trading_state,
            state=state,
            peak=peak,
            stored_peak=stored_peak,
            day_open_equity=day_open_equity,
            limits=limits.get(account_id, []),
            floats=floats.get(account_id, []),
            version=version,
        )
        portfolio.__dict__["equity"] = equity  # the cached_property's value, already computed
        out.append(portfolio)
    return out


def as_books(portfolios: Sequence[Portfolio], symbols: Sequence[str]) -> tuple[stress.Books, list[Any]]:
    """The portfolios as flat float64 arrays for the numpy core (risk/stress.py), with the rows of the limits
    a price moves, in the core's limit order. `symbols` are the scenario columns. Positions and limit values
    are taken in float8 as PostgreSQL sent them to `load_portfolios` (`floats`, `value_f`) when it did."""
    column = {s: j for j, s in enumerate(symbols)}
    pos_account: list[int] = []
    pos_symbol: list[int] = []
    quantities: list[Decimal | float] = []
    prices: list[Decimal | float] = []
    lim_account: list[int] = []
    lim_rows: list[Any] = []
    for i, p in enumerate(portfolios):
        positions = p.state.positions
        if positions:
            pos_account.extend([i] * len(positions))
            pos_symbol.extend([column[s] for s in positions])
            for q, price in p.floats if p.floats is not None else positions.values():
                quantities.append(q)
                prices.append(price)
        for row in p.limits:
            if row.limit_type in stress.KIND_CODE:
                lim_account.append(i)
                lim_rows.append(row)
    first = np.zeros(len(portfolios) + 1, dtype=np.intp)  # each account's first position row
    np.cumsum([len(p.state.positions) for p in portfolios], out=first[1:])
    lim_position = []
    for i, row in zip(lim_account, lim_rows, strict=True):
        held = portfolios[i].state.positions
        if row.symbol is None or row.symbol not in held:
            lim_position.append(-1)
        else:
            lim_position.append(int(first[i]) + list(held).index(row.symbol))
    books = stress.Books(
        equity=np.array([p.equity for p in portfolios], dtype=np.float64),
        daily_pnl=np.array([p.state.daily_pnl for p in portfolios], dtype=np.float64),
        peak=np.array([p.peak for p in portfolios], dtype=np.float64),
        pos_account=np.array(pos_account, dtype=np.intp),
        pos_symbol=np.array(pos_symbol, dtype=np.intp),
        pos_quantity=np.array(quantities, dtype=np.float64),
        pos_price=np.array(prices, dtype=np.float64),
        limit_account=np.array(lim_account, dtype=np.intp),
        limit_kind=np.array([stress.KIND_CODE[r.limit_type] for r in lim_rows], dtype=np.intp),
        limit_value=np.array([getattr(r, "value_f", r.value) for r in lim_rows], dtype=np.float64),
        limit_position=np.array(lim_position, dtype=np.intp),
        limit_scoped=np.array([r.symbol is not None for r in lim_rows], dtype=bool),
    )
    return books, lim_rows
