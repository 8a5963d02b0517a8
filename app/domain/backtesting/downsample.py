"""Equity curves reduced to a few points for charts and stored results, troughs and peaks kept."""

from __future__ import annotations

import numpy as np


def equity_downsample(ts: np.ndarray, equity: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of an equity curve for charts, in time order.

    Keeps the first and last point and, for each of ``(max_points - 2) // 2`` equal buckets of the
    points between, the minimum and the maximum (so drawdown troughs and peaks survive).
    """
    ts = np.asarray(ts)
    equity = np.asarray(equity, dtype=np.float64)
    if ts.shape != equity.shape or ts.ndim != 1:
        raise ValueError("ts and equity must be one-dimensional and of equal length")
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    n = equity.size
    if n <= max_points:
        return ts.copy(), equity.copy()
    inner = equity[1:-1]
    buckets = (max_points - 2) // 2
    if buckets == 0:
        idx = np.array([0, n - 1])
        return ts[idx], equity[idx]
    width = -(-inner.size // buckets)
    rows = -(-inner.size // width)
    # Edge padding repeats the last real value after it, so argmin/argmax (first occurrence) never
    # pick a padding slot.
    grid = np.pad(inner, (0, rows * width - inner.size), mode="edge").reshape(rows, width)
    base = np.arange(rows) * width
    picks = np.concatenate((base + grid.argmin(axis=1), base + grid.argmax(axis=1))) + 1
    idx = np.unique(np.concatenate(([0, n - 1], picks)))
    return ts[idx], equity[idx]
