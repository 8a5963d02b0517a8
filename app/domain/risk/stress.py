"""Stress tests: revalue many portfolios under many price scenarios at once (pure numpy, no I/O).

The service (`stress_service.py`) loads the books and resolves each scenario into one fractional move per
symbol (`shock_row`); `run` then prices every account under every scenario in a few vectorised passes:
a 10,000-account x 20-scenario run is a handful of `bincount`s over the positions, not 200,000 Python
loops (docs/BENCHMARKS.md, "Risk at desk scale").

Rules (docs/RISK.md):

* a shock `x` moves a symbol's price from `p` to `p·(1+x)`; the position's P&L is `q·p·x`; `*` is the
  move of every symbol without its own entry (0 when absent);
* `equity_after = equity + pnl` (cash does not move);
* the limits measured after the shock are the price-dependent kinds (position notional, gross exposure,
  leverage, concentration, daily loss, drawdown): the same figures and the same "over" rule as the
  monitor (`checks.current_value` / `current_breaches`: `used > value`, `>=` for the loss stops), here in
  float64. Quantity and order-count limits do not move with prices and are left to the monitor.
* With `equity_after <= 0`, leverage and concentration of a non-zero exposure are unbounded (`inf`).

Money leaves this module as float64; the service rounds it half-even to 1e-8 of the base currency. A
stress figure is an estimate of a hypothetical, computed in binary floating point for speed (about 15
significant digits, far finer than any shock's own precision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Limit kinds a price move changes, as integer codes for the vectorised measurement.
PRICE_LIMIT_TYPES: tuple[str, ...] = (
    "max_position_notional",
    "max_gross_exposure",
    "max_leverage",
    "max_concentration_pct",
    "max_daily_loss",
    "max_drawdown_pct",
)
KIND_CODE = {kind: code for code, kind in enumerate(PRICE_LIMIT_TYPES)}
_POSITION_NOTIONAL, _GROSS, _LEVERAGE, _CONCENTRATION, _DAILY_LOSS, _DRAWDOWN = range(len(PRICE_LIMIT_TYPES))
_STOPS = (_DAILY_LOSS, _DRAWDOWN)


def shock_row(symbols: Sequence[str], shocks: Mapping[str, float]) -> np.ndarray:
    """One scenario's move per symbol (in `symbols` order): its own entry, else `*`, else 0."""
    default = float(shocks.get("*", 0.0))
    return np.array([float(shocks.get(s, default)) for s in symbols], dtype=np.float64)


@dataclass(frozen=True)
class Books:
    """Many accounts' portfolios as flat arrays. Positions are rows (account index, symbol index,
    quantity, mark price); limits are rows (account index, kind code, value, position index or -1 for an
    account-wide limit, and whether the limit is scoped to a symbol the account does not hold)."""

    equity: np.ndarray  # (n,) cash + Σ q·p now
    daily_pnl: np.ndarray  # (n,) equity now minus the day's opening equity (0 when unknown)
    peak: np.ndarray  # (n,) highest equity observed (drawdown base); <= 0 means no drawdown is measured
    pos_account: np.ndarray  # (m,) int
    pos_symbol: np.ndarray  # (m,) int, index into the scenario columns
    pos_quantity: np.ndarray  # (m,)
    pos_price: np.ndarray  # (m,)
    limit_account: np.ndarray  # (L,) int
    limit_kind: np.ndarray  # (L,) int, KIND_CODE
    limit_value: np.ndarray  # (L,)
    limit_position: np.ndarray  # (L,) int: the scoped symbol's position row, -1 if account-wide or not held
    limit_scoped: np.ndarray  # (L,) bool: the limit names a symbol

    @property
    def accounts(self) -> int:
        return int(self.equity.shape[0])


@dataclass(frozen=True)
class StressResult:
    pnl: np.ndarray  # (s, n)
    equity_after: np.ndarray  # (s, n)
    used: np.ndarray  # (s, L) each limit's figure after the shock (inf: unbounded)
    breached: np.ndarray  # (s, L) bool


def _per_account(values: np.ndarray, account: np.ndarray, n: int) -> np.ndarray:
    """Σ over positions per account for each scenario row: (s, m) -> (s, n)."""
    out = np.zeros((values.shape[0], n), dtype=np.float64)
    for row in range(values.shape[0]):
        out[row] = np.bincount(account, weights=values[row], minlength=n)
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """numerator·scale / denominator; unbounded (inf) when the denominator is <= 0 and the numerator is
    not 0, 0 when both say nothing is held (the rule of checks._ratio)."""
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    positive = denominator > 0
    np.divide(numerator * scale, denominator, out=out, where=positive)
    out[~positive & (numerator != 0)] = np.inf
    return out


def _drawdown_pct(peak: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """`100·(1 - equity/peak)`, never below 0; 0 where no positive peak exists (calculations.drawdown)."""
    out = np.zeros(np.broadcast(peak, equity).shape, dtype=np.float64)
    peak = np.broadcast_to(peak, out.shape)
    np.divide((peak - equity) * 100.0, peak, out=out, where=peak > 0)
    return np.maximum(out, 0.0)


def run(books: Books, shocks: np.ndarray) -> StressResult:
    """Every account under every scenario. `shocks` is (s, k): one row per scenario, one column per
    symbol index used by `books.pos_symbol`."""
    shocks = np.atleast_2d(np.asarray(shocks, dtype=np.float64))
    n = books.accounts
    value_now = books.pos_quantity * books.pos_price  # (m,)
    moves = shocks[:, books.pos_symbol]  # (s, m)
    value_after = value_now * (1.0 + moves)
    pnl = _per_account(value_now * moves, books.pos_account, n)
    equity_after = books.equity + pnl
    abs_after = np.abs(value_after)
    gross = _per_account(abs_after, books.pos_account, n)
    largest = np.zeros((shocks.shape[0], n), dtype=np.float64)
    for row in range(shocks.shape[0]):
        np.maximum.at(largest[row], books.pos_account, abs_after[row])

    acct = books.limit_account
    scoped_pos = books.limit_position
    held = scoped_pos >= 0
    # The scoped symbol's |value| after the shock (0 when the account does not hold it).
    scoped_value = np.zeros((shocks.shape[0], acct.shape[0]), dtype=np.float64)
    scoped_value[:, held] = abs_after[:, scoped_pos[held]]
    position_value = np.where(books.limit_scoped, scoped_value, largest[:, acct])
    eq = equity_after[:, acct]
    kind = books.limit_kind
    used = np.select(
        [
            kind == _POSITION_NOTIONAL,
            kind == _GROSS,
            kind == _LEVERAGE,
            kind == _CONCENTRATION,
            kind == _DAILY_LOSS,
        ],
        [
            position_value,
            gross[:, acct],
            _ratio(gross[:, acct], eq),
            _ratio(position_value, eq, 100.0),
            np.maximum(-(books.daily_pnl[acct] + pnl[:, acct]), 0.0),
        ],
        default=_drawdown_pct(books.peak[acct], eq),
    )
    stop = np.isin(kind, _STOPS)
    breached = np.where(stop, used >= books.limit_value, used > books.limit_value)
    return StressResult(pnl=pnl, equity_after=equity_after, used=used, breached=breached)
