"""Series of the portfolio tear sheet, computed once from the full equity curve (pure numpy, no I/O).

The report (report_portfolio.py) only draws what is computed here, because the stored equity curve is
downsampled and neither monthly returns nor a rolling Sharpe ratio can be recovered from it exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_ROLLING_POINTS = 1_000


def monthly_returns(ts: np.ndarray, equity: np.ndarray) -> list[list[float]]:
    """[[year, month, return], ...]: each calendar month's last equity over the previous month's last
    (the first month over the starting equity)."""
    months = np.asarray(ts, dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    last = np.flatnonzero(np.append(months[1:] != months[:-1], True))
    ends = equity[last]
    starts = np.concatenate(([equity[0]], ends[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(starts > 0, ends / starts - 1.0, np.nan)
    out = []
    for month, value in zip(months[last].tolist(), returns.tolist(), strict=True):
        if math.isfinite(value):
            out.append([1970 + month // 12, month % 12 + 1, value])
    return out


def rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: int) -> np.ndarray:
    """Sharpe ratio (no risk-free rate, ddof 1) of each trailing ``window`` of returns; NaN before the
    first full window and where the window's volatility is zero."""
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(r.size, np.nan)
    if window < 2 or r.size < window:
        return out
    # Window sums of values centred on the global mean, so a large mean does not cancel the variance.
    centre = float(r.mean())
    dev = r - centre
    s1 = np.cumsum(np.concatenate(([0.0], dev)))
    s2 = np.cumsum(np.concatenate(([0.0], dev * dev)))
    sum1 = s1[window:] - s1[:-window]
    sum2 = s2[window:] - s2[:-window]
    std = np.sqrt(np.maximum((sum2 - sum1 * sum1 / window) / (window - 1), 0.0))
    mean = sum1 / window + centre
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(std > 1e-12, mean / std * math.sqrt(periods_per_year), np.nan)
    out[window - 1 :] = values
    return out


def tear_sheet_data(ts: np.ndarray, equity: np.ndarray, periods_per_year: int) -> dict[str, Any]:
    ts = np.asarray(ts, dtype=np.int64)
    equity = np.asarray(equity, dtype=np.float64)
    data: dict[str, Any] = {"monthly": monthly_returns(ts, equity) if np.all(equity > 0) else []}
    if equity.size > 2 and np.all(equity > 0):
        returns = equity[1:] / equity[:-1] - 1.0
        window = max(2, min(periods_per_year // 4 or 2, returns.size // 2))
        values = rolling_sharpe(returns, window, periods_per_year)
        step = max(1, -(-values.size // MAX_ROLLING_POINTS))
        picks = np.arange(window - 1, values.size, step)
        keep = np.isfinite(values[picks])
        data["rolling_sharpe"] = {
            "window": int(window),
            "ts": ts[1:][picks][keep].tolist(),
            "values": values[picks][keep].tolist(),
        }
    return data
