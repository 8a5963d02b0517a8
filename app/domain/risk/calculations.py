"""Portfolio risk metrics for monitoring: exposures, historical VaR/CVaR, volatility, drawdown.

Money stays `Decimal` (exposures, VaR amounts); statistics are numpy floats, reported as JSON numbers.

Return series (`portfolio_returns`), decided where DOMAIN.md is silent:

* today's quantities `q` are revalued over the historical closes: `value_t = closes_t · q`;
* long-only portfolio: `r_t = value_t / value_{t-1} - 1`, the literal rule, and the VaR base amount is
  today's value (`returns_base`);
* any short position: the value can be near zero or negative, so a ratio of values is meaningless;
  instead each instrument's day return `c_t / c_{t-1} - 1` is applied to today's position value
  `q·p_now` (prices of the last row), `r_t = Σ q·p_now·(c_t / c_{t-1} - 1) / gross_now`, relative to
  today's gross exposure `Σ|q·p_now|`, and the VaR base amount is that gross exposure. (The day's P&L
  at the historical price levels, `q·(c_t - c_{t-1})`, would scale a move of a month when the price was
  higher to today's smaller position value: adding one short share to a long book would switch the
  VaR to a figure the parametric and Monte Carlo models, which scale to the mark, disagree with.);
* no exposure at all: every return is 0 (a flat book has no market risk), not "too few points".
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from math import isfinite
from statistics import NormalDist

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
    exposure_now = q * c[-1]
    gross_now = float(np.abs(exposure_now).sum())
    if gross_now <= 0:
        return np.zeros_like(pnl)
    moves = np.full_like(c[1:], np.nan)
    np.divide(np.diff(c, axis=0), c[:-1], out=moves, where=c[:-1] > 0)  # (no price: no return that day)
    return (moves @ exposure_now) / gross_now


def returns_base(quantities: np.ndarray, prices: np.ndarray) -> float:
    """The amount `portfolio_returns` are relative to: value if long-only, else gross exposure."""
    q = np.asarray(quantities, dtype=np.float64).reshape(-1)
    p = np.asarray(prices, dtype=np.float64).reshape(-1)
    if np.all(q >= 0):
        return float(q @ p)
    return float(np.abs(q * p).sum())


def amount(fraction: float | None, base: Decimal) -> Decimal | None:
    """A model's fraction of `base` as an amount of the base currency (None when not finite)."""
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
        report[f"var_{label}_amount"] = amount(var, base)
        report[f"cvar_{label}_amount"] = amount(cvar, base)
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


# ---------------------------------------------------------------------------------- model-based VaR
#
# Beside the historical revaluation above, two model-based 1-day VaRs over the same daily closes:
#
# * parametric (variance-covariance): each held instrument's simple daily returns give a mean vector
#   `mu` and a covariance matrix `cov` (ddof 1); with exposures `w = q·p_now`, the day's P&L is normal
#   with mean `w·mu` and variance `wᵀ·cov·w`, so `VaR_a = z_a·sigma - mean` and
#   `CVaR_a = sigma·pdf(z_a)/(1-a) - mean` (z_a the standard normal quantile at `a`);
# * Monte Carlo: `simulations` draws of the return vector from N(mu, cov), seeded (the same inputs
#   give the same figures), valued as `draws @ w`; VaR and CVaR are read from the simulated P&L with
#   the historical rule (`historical_var_cvar`). It converges to the parametric figures as the
#   number of draws grows: it exists as the template for non-normal models, and as a check.
#
# Both report amounts (positive = a loss) and fractions of the same base as the historical VaR
# (`returns_base`). The normal quantile comes from the standard library (statistics.NormalDist):
# scipy is not a dependency for one inverse CDF.

_NORMAL = NormalDist()
MC_SIMULATIONS = 10_000
MC_SEED = 0


def asset_returns(closes: np.ndarray) -> np.ndarray:
    """Simple daily returns (n-1, k) of each column of `closes` (n, k), oldest first."""
    c = np.asarray(closes, dtype=np.float64)
    return c[1:] / c[:-1] - 1.0


def return_moments(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean vector, covariance matrix with ddof 1) of daily returns (n, k); needs n >= 2."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError("need at least two return observations per instrument")
    return r.mean(axis=0), np.atleast_2d(np.cov(r, rowvar=False, ddof=1))


def parametric_var(
    exposures_now: np.ndarray, mean: np.ndarray, cov: np.ndarray, level: float
) -> tuple[float, float]:
    """(VaR, CVaR) amounts at confidence `level` of a normal P&L with the given return moments."""
    w = np.asarray(exposures_now, dtype=np.float64)
    mu = float(w @ mean)
    sigma = float(np.sqrt(max(float(w @ cov @ w), 0.0)))
    z = _NORMAL.inv_cdf(level)
    return z * sigma - mu, sigma * _NORMAL.pdf(z) / (1.0 - level) - mu


def monte_carlo_pnl(
    exposures_now: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    *,
    simulations: int = MC_SIMULATIONS,
    seed: int = MC_SEED,
) -> np.ndarray:
    """`simulations` seeded one-day P&Ls: draws of N(mean, cov) valued at `exposures_now`."""
    rng = np.random.default_rng(seed)
    # numpy's default (SVD-based) sampling accepts the singular covariance of perfectly correlated or
    # constant instruments, which a Cholesky factorisation rejects.
    draws = rng.multivariate_normal(mean, cov, size=simulations, check_valid="ignore")
    return draws @ np.asarray(exposures_now, dtype=np.float64)


def monte_carlo_var(
    exposures_now: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    level: float,
    *,
    simulations: int = MC_SIMULATIONS,
    seed: int = MC_SEED,
) -> tuple[float, float]:
    """(VaR, CVaR) amounts at `level` from `simulations` seeded draws of N(mean, cov)."""
    return _tail(monte_carlo_pnl(exposures_now, mean, cov, simulations=simulations, seed=seed), level)


def _tail(pnl: np.ndarray, level: float) -> tuple[float, float]:
    var, cvar = historical_var_cvar(pnl, level)
    if var is None or cvar is None:
        raise ValueError("need at least two simulated outcomes")
    return var, cvar


def component_var(
    account_exposures: np.ndarray, mean: np.ndarray, cov: np.ndarray, level: float
) -> np.ndarray:
    """Each row's share of the parametric VaR of the sum of the rows (Euler allocation).

    `account_exposures` is (m, k): one row per account (or group), one column per instrument. The
    components `z·(W_i·cov·w)/sigma - W_i·mu` add up to `parametric_var(w)` where `w` is the column sum;
    a negative component is an account that hedges the rest. All zero when the total has no variance.
    """
    rows = np.atleast_2d(np.asarray(account_exposures, dtype=np.float64))
    w = rows.sum(axis=0)
    sigma = float(np.sqrt(max(float(w @ cov @ w), 0.0)))
    if sigma == 0.0:
        return -(rows @ mean)
    z = _NORMAL.inv_cdf(level)
    return z * (rows @ (cov @ w)) / sigma - rows @ mean


def model_var_report(
    quantities: np.ndarray,
    closes: np.ndarray,
    base: Decimal,
    *,
    marks: np.ndarray | None = None,
    simulations: int = MC_SIMULATIONS,
    seed: int = MC_SEED,
) -> dict[str, dict[str, object]] | None:
    """Parametric and Monte Carlo VaR/CVaR at 95% and 99% of today's `quantities` over `closes` (n, k),
    as amounts (Decimal, 1e-8) and fractions of `base`. None with fewer than 3 closes (2 returns).
    The exposures are the quantities at `marks` (k,), the prices `base` is valued at (the last prices;
    default the last closes): the returns come from the closes, the amounts from today's values, so
    an amount is its fraction of `base` however far the last price is from the last close."""
    c = np.asarray(closes, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 3:
        return None
    mean, cov = return_moments(asset_returns(c))
    prices = c[-1] if marks is None else np.asarray(marks, dtype=np.float64)
    w = np.asarray(quantities, dtype=np.float64) * prices
    b = float(base)
    simulated = monte_carlo_pnl(w, mean, cov, simulations=simulations, seed=seed)
    out: dict[str, dict[str, object]] = {}
    for method in ("parametric", "monte_carlo"):
        report: dict[str, object] = {}
        for label, level in VAR_LEVELS:
            if method == "parametric":
                var, cvar = parametric_var(w, mean, cov, level)
            else:
                var, cvar = _tail(simulated, level)
            report[f"var_{label}"] = var / b if b > 0 else None
            report[f"cvar_{label}"] = cvar / b if b > 0 else None
            report[f"var_{label}_amount"] = amount(var, Decimal(1))
            report[f"cvar_{label}_amount"] = amount(cvar, Decimal(1))
        out[method] = report
    return out
