"""Portfolio risk metrics for monitoring: exposures, historical VaR/CVaR, volatility, drawdown.

Money stays `Decimal` (exposures, VaR amounts); statistics are numpy floats, reported as JSON numbers.

Return series (`portfolio_returns`), decided where DOMAIN.md is silent:

* today's quantities `q` are revalued over the historical closes: `value_t = closes_t · q`;
* long-only portfolio: `r_t = value_t / value_{t-1} - 1`, the literal rule, and the VaR base amount is
  today's value (`returns_base`);
* any short position: the value can be near zero or negative, so a ratio of values is meaningless;
  instead `r_t = (value_t - value_{t-1}) / gross_now`, the day's P&L relative to today's gross
  exposure `Σ|q·p_now|` (prices of the last row), and the VaR base amount is that gross exposure;
* no exposure at all: every return is 0 (a flat book has no market risk), not "too few points".
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from math import isfinite

import numpy as np

from app.domain.analytics.stats import historical_var_cvar

AMOUNT_QUANTUM = Decimal("1E-8")
VAR_LEVELS = ((95, 0.95), (99, 0.99))
_ZERO = Decimal(0)
_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN)


def exposures(positions: Mapping[str, tuple[Decimal, Decimal]], equity: Decimal) -> dict[str, object]:
    """Gross `Σ|q·p|`, net `Σq·p` (Decimal), leverage `gross/equity` and concentration
    `100·max|q·p|/equity` (floats, None when equity <= 0), and the symbol with the largest |q·p|."""
    gross = _ZERO
    net = _ZERO
    largest_symbol: str | None = None
    largest = _ZERO
    with localcontext(_WIDE):
        # Sorted so that a tie for the largest exposure always names the same symbol.
        for symbol, (q, p) in sorted(positions.items()):
            value = q * p
            gross += abs(value)
            net += value
            if abs(value) > largest:
                largest, largest_symbol = abs(value), symbol
    positive = equity > 0
    return {
        "gross": gross,
        "net": net,
        "leverage": float(gross / equity) if positive else None,
        "concentration_pct": float(largest * 100 / equity) if positive else None,
        "largest_symbol": largest_symbol,
    }


def portfolio_returns(quantities: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Daily returns (length n-1) of today's `quantities` (k,) revalued over `closes` (n, k).

    Rows of `closes` are days, oldest first, columns the instruments in the order of `quantities`;
    the last row is taken as today's prices. See the module docstring for the rule.
    """
    q = np.asarray(quantities, dtype=np.float64).reshape(-1)
    c = np.asarray(closes, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != q.shape[0]:
        raise ValueError(f"closes must have shape (n, {q.shape[0]}), got {c.shape}")
    if c.shape[0] < 2:
        return np.empty(0, dtype=np.float64)
    values = c @ q
    pnl = np.diff(values)
    if np.all(q >= 0):
        prev = values[:-1]
        if not np.any(q > 0):
            return np.zeros_like(pnl)
        out = np.full_like(pnl, np.nan)
        # A non-positive previous value has no return; it becomes NaN and is dropped by the statistics.
        np.divide(pnl, prev, out=out, where=prev > 0)
        return out
    gross_now = float(np.abs(q * c[-1]).sum())
    if gross_now <= 0:
        return np.zeros_like(pnl)
    return pnl / gross_now


def returns_base(quantities: np.ndarray, prices: np.ndarray) -> float:
    """The amount `portfolio_returns` are relative to: value if long-only, else gross exposure."""
    q = np.asarray(quantities, dtype=np.float64).reshape(-1)
    p = np.asarray(prices, dtype=np.float64).reshape(-1)
    if np.all(q >= 0):
        return float(q @ p)
    return float(np.abs(q * p).sum())


def _amount(fraction: float | None, base: Decimal) -> Decimal | None:
    if fraction is None or not isfinite(fraction):
        return None
    return (Decimal(repr(fraction)) * base).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def var_report(returns: np.ndarray, portfolio_value: Decimal | float) -> dict[str, object]:
    """1-day historical VaR/CVaR at 95% and 99% as positive fractions (floats) and amounts.

    Amounts are `fraction · portfolio_value` in the base currency, rounded half-even to 1e-8 (Decimal).
    `portfolio_value` must be the base the returns are relative to (`returns_base`). Fewer than two
    finite returns give None throughout.
    """
    base = portfolio_value if isinstance(portfolio_value, Decimal) else Decimal(repr(float(portfolio_value)))
    r = np.asarray(returns, dtype=np.float64)
    report: dict[str, object] = {"observations": int(np.isfinite(r).sum())}
    for label, level in VAR_LEVELS:
        var, cvar = historical_var_cvar(r, level)
        report[f"var_{label}"] = var
        report[f"cvar_{label}"] = cvar
        report[f"var_{label}_amount"] = _amount(var, base)
        report[f"cvar_{label}_amount"] = _amount(cvar, base)
    return report


def annualised_volatility(returns: np.ndarray, periods: int = 252) -> float | None:
    """std(r, ddof=1) · sqrt(periods); None with fewer than two finite returns."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None
    return float(np.std(r, ddof=1) * np.sqrt(periods))


def drawdown(equity_now: Decimal, peak: Decimal) -> Decimal | None:
    """`1 - equity / peak` as a fraction (0 at or above the peak); None when the peak is not positive."""
    equity_now, peak = Decimal(equity_now), Decimal(peak)
    if peak <= 0:
        return None
    return max(Decimal(1) - equity_now / peak, _ZERO)
