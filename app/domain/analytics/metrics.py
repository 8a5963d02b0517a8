"""Performance analytics: the metric set of DOMAIN.md ("Performance analytics"), pure numpy.

Conventions (where DOMAIN.md is silent, these are the rules this module follows):

- Every metric is a plain ``float``/``int`` or ``None``; never NaN or infinity. A metric that is
  undefined for the input (too few points, zero volatility, no downside, no drawdown, overflow when
  annualising) is ``None``.
- ``periods`` is the number of returns ``n`` (an equity series of ``m`` points gives ``m - 1``).
- Std-based metrics (``annual_volatility``, ``sharpe``, ``sortino``, ``skew``, ``kurtosis``, VaR/CVaR)
  need at least 2 returns. ``total_return``, ``cagr``, drawdowns and best/worst need at least 1.
- Volatility counts as zero when ``std <= 1e-10 * mean(|x|)``: a series that is constant up to
  floating-point rounding (e.g. returns recovered from a geometric equity curve) must not produce a
  Sharpe ratio of 1e15. ``annual_volatility`` is then reported as ``0.0`` and ``sharpe`` as ``None``.
- ``skew`` and ``kurtosis`` use population (biased) central moments, like ``scipy.stats.skew`` /
  ``kurtosis`` with their default ``bias=True``: ``skew = m3 / m2**1.5``,
  ``kurtosis = m4 / m2**2 - 3`` (excess), with ``m_k = mean((r - mean(r))**k)``.
- ``max_drawdown_duration`` is the longest run of consecutive periods the wealth path spends strictly
  below its running peak (the starting wealth counts as a peak). ``[1, 0.9, 1.0]`` has duration 1; a
  drawdown still open at the end counts up to the last period.
- Returns below -1 (losing more than everything) are rejected: the wealth path would turn negative and
  CAGR / drawdown have no meaning. A return of exactly -1 is accepted (wealth goes to zero).
- ``exposure_pct`` and every other ratio are fractions (0.25 = 25 %), like the return metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from app.domain.analytics.stats import historical_var_cvar

# Relative threshold below which a standard deviation is rounding noise, not volatility.
_ZERO_VOL_RTOL = 1e-10

PERFORMANCE_KEYS: tuple[str, ...] = (
    "periods",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "var_95",
    "cvar_95",
    "var_99",
    "cvar_99",
    "skew",
    "kurtosis",
    "best_period",
    "worst_period",
)

TRADE_KEYS: tuple[str, ...] = (
    "trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
    "exposure_pct",
)

Metric = float | int | None


def _as_series(values: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be a sequence of numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a one-dimensional sequence of numbers")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains a non-finite value (NaN or infinity)")
    return arr


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _std_or_zero(x: np.ndarray) -> float:
    """Sample std (ddof=1), snapped to 0.0 when it is only rounding noise (see module docstring)."""
    sd = float(np.std(x, ddof=1))
    scale = float(np.mean(np.abs(x)))
    if not math.isfinite(sd):
        return math.nan  # overflowed: neither zero nor a usable volatility
    if sd <= _ZERO_VOL_RTOL * scale:
        return 0.0
    return sd


def _annualised_growth(growth: float, periods_per_year: int, n: int) -> float | None:
    # growth**(P/n) via logs so an overflow (e.g. one huge minute return annualised) becomes None
    # instead of inf plus a RuntimeWarning.
    if growth == 0.0:
        return -1.0
    try:
        return _finite(math.exp(math.log(growth) * periods_per_year / n) - 1.0)
    except OverflowError:
        return None


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def _empty_performance(n: int = 0) -> dict[str, Metric]:
    out: dict[str, Metric] = dict.fromkeys(PERFORMANCE_KEYS)
    out["periods"] = n
    return out


def performance_metrics(
    *,
    returns: Sequence[float] | np.ndarray | None = None,
    equity: Sequence[float] | np.ndarray | None = None,
    periods_per_year: int = 252,
    risk_free_rate: float = 0.0,
) -> dict[str, Metric]:
    """The DOMAIN.md metric set for a return series or an equity series (exactly one of them).

    ``equity`` (all values > 0) is turned into ``r_t = e_t / e_{t-1} - 1``; its wealth path is
    ``e / e_0``. ``risk_free_rate`` is annual and becomes ``rf_p = (1 + rf)**(1/P) - 1`` per period;
    Sharpe and Sortino use excess returns ``a = r - rf_p``, everything else uses raw ``r``.

    Raises ``ValueError`` for invalid input: both or neither series given, non-finite numbers,
    equity values <= 0, returns < -1, ``periods_per_year`` < 1, ``risk_free_rate`` <= -1.
    Keys: see ``PERFORMANCE_KEYS``; undefined metrics are ``None`` (rules in the module docstring).
    """
    if (returns is None) == (equity is None):
        raise ValueError("give exactly one of `returns` or `equity`")
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int | np.integer):
        raise ValueError("`periods_per_year` must be an integer")
    if periods_per_year < 1:
        raise ValueError("`periods_per_year` must be at least 1")
    rf = float(risk_free_rate)
    if not math.isfinite(rf) or rf <= -1.0:
        raise ValueError("`risk_free_rate` must be a finite number greater than -1")
    P = int(periods_per_year)

    # Absurd but finite inputs (returns of 1e300) can overflow; such metrics end up None, not inf.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if equity is not None:
            e = _as_series(equity, "equity")
            if np.any(e <= 0.0):
                raise ValueError("`equity` values must all be greater than zero")
            if e.size < 2:
                return _empty_performance()
            r = e[1:] / e[:-1] - 1.0
            # e / e0 is the exact wealth path; compounding rounded returns would drift on long series.
            wealth = e[1:] / e[0]
        else:
            r = _as_series(returns, "returns")
            if np.any(r < -1.0):
                raise ValueError("`returns` below -1 (a loss of more than 100 %) are not valid")
            if r.size == 0:
                return _empty_performance()
            wealth = np.cumprod(1.0 + r)
        out = _compute(r, wealth, P, rf)
    return {k: v if v is None or isinstance(v, int) or math.isfinite(v) else None for k, v in out.items()}


def _compute(r: np.ndarray, wealth: np.ndarray, P: int, rf: float) -> dict[str, Metric]:
    n = int(r.size)
    out = _empty_performance(n)

    growth = float(wealth[-1])
    out["total_return"] = growth - 1.0
    out["cagr"] = _annualised_growth(growth, P, n)
    out["best_period"] = float(r.max())
    out["worst_period"] = float(r.min())

    # Starting wealth 1.0 is a peak: a loss in the very first period is already a drawdown.
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    drawdown = wealth / peak - 1.0
    max_dd = min(float(drawdown.min()), 0.0)
    out["max_drawdown"] = max_dd
    out["max_drawdown_duration"] = _longest_run(drawdown < 0.0)
    if max_dd < 0.0 and out["cagr"] is not None:
        out["calmar"] = _finite(out["cagr"] / abs(max_dd))

    if n < 2:
        return out

    sqrt_p = math.sqrt(P)
    rf_p = (1.0 + rf) ** (1.0 / P) - 1.0
    excess = r - rf_p

    out["annual_volatility"] = _std_or_zero(r) * sqrt_p
    sd_excess = _std_or_zero(excess)
    mean_excess = float(excess.mean())
    if sd_excess > 0.0:
        out["sharpe"] = _finite(mean_excess / sd_excess * sqrt_p)
    downside = np.minimum(excess, 0.0)
    worst = float(-downside.min())
    if worst > 0.0:
        # Scaled by the largest shortfall so squaring tiny returns cannot underflow to zero.
        scaled = downside / worst
        downside_dev = worst * math.sqrt(float(np.mean(scaled * scaled)))
        if downside_dev > 0.0:  # can still round to 0 for subnormal returns
            out["sortino"] = _finite(mean_excess * sqrt_p / downside_dev)

    for level, suffix in ((0.95, "95"), (0.99, "99")):
        var, cvar = historical_var_cvar(r, level)
        # Negating a zero percentile yields -0.0, which would serialise as "-0.0".
        out[f"var_{suffix}"] = None if var is None else var + 0.0
        out[f"cvar_{suffix}"] = None if cvar is None else cvar + 0.0

    if _std_or_zero(r) > 0.0:
        dev = r - r.mean()
        # Both ratios are scale-free; normalising first keeps m2**2 from underflowing for tiny returns.
        dev = dev / float(np.abs(dev).max())
        dev2 = dev * dev
        m2 = float(dev2.mean())
        m3 = float((dev2 * dev).mean())
        m4 = float((dev2 * dev2).mean())
        out["skew"] = _finite(m3 / m2**1.5)
        out["kurtosis"] = _finite(m4 / (m2 * m2) - 3.0)
    return out


def trade_metrics(
    pnls: Sequence[float] | np.ndarray,
    *,
    periods_in_market: int,
    total_periods: int,
) -> dict[str, Metric]:
    """Trade-list statistics (DOMAIN.md), from each trade's net PnL.

    - ``trades``: number of trades; a PnL of exactly 0 is neither a win nor a loss.
    - ``win_rate``: wins / trades. ``expectancy``: mean PnL per trade.
    - ``profit_factor``: gross profit / gross loss; ``None`` when there is no losing trade.
    - ``avg_win`` (> 0) / ``avg_loss`` (< 0, a signed mean): ``None`` without wins / losses.
    - ``exposure_pct``: ``periods_in_market / total_periods`` as a fraction; ``None`` for 0 periods.

    Raises ``ValueError`` for non-finite PnLs or inconsistent period counts.
    """
    p = _as_series(pnls, "pnls")
    if isinstance(periods_in_market, bool) or isinstance(total_periods, bool):
        raise ValueError("period counts must be integers")
    periods_in_market = int(periods_in_market)
    total_periods = int(total_periods)
    if total_periods < 0 or not 0 <= periods_in_market <= total_periods:
        raise ValueError("need 0 <= periods_in_market <= total_periods")

    out: dict[str, Metric] = dict.fromkeys(TRADE_KEYS)
    out["trades"] = int(p.size)
    if total_periods > 0:
        out["exposure_pct"] = periods_in_market / total_periods
    if p.size == 0:
        return out

    wins = p[p > 0.0]
    losses = p[p < 0.0]
    out["win_rate"] = wins.size / p.size
    out["expectancy"] = float(p.mean())
    if wins.size:
        out["avg_win"] = float(wins.mean())
    if losses.size:
        out["avg_loss"] = float(losses.mean())
        out["profit_factor"] = float(wins.sum()) / -float(losses.sum())
    return out
