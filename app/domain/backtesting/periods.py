"""Annualisation that follows the data's calendar (DOMAIN.md "Portfolio backtests"), for every run:
one instrument, a portfolio, a sweep's runs and walk-forward windows."""

from __future__ import annotations

import numpy as np


def infer_periods_per_year(ts: np.ndarray) -> int:
    """Bars per year from the data's calendar: 252 for weekday-only daily bars, 365 for daily bars
    with weekends, else the bar count of an average (365.25-day) year over the data's span."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size < 2:
        return 252
    step = int(np.median(np.diff(ts)))
    if step == 86_400:
        weekday = (ts // 86_400 + 3) % 7  # 0 = Monday
        return 365 if np.any(weekday >= 5) else 252
    span = float(ts[-1] - ts[0] + step)
    return max(1, round(ts.size * 365.25 * 86_400 / span))
