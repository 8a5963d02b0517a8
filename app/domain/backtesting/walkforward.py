"""Walk-forward research (DOMAIN.md "Portfolio backtests" > walk-forward): pure parts, no I/O.

Windows of ``train_bars`` then ``test_bars`` move by ``step_bars`` (default ``test_bars``) over the
range's bars; only whole windows are run. In each window every parameter combination of the grid is
run on the training bars, the one with the best ``objective`` (ties and undefined values: the first
in grid order wins; an undefined value never beats a defined one) is run on the test bars, and the
test runs are chained: each window's equity is scaled to start from the previous window's end. Test
windows must not overlap (``step_bars >= test_bars``), so every bar of the chain is out of sample once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.domain.analytics.metrics import performance_metrics
from app.domain.backtesting.schemas import ASCENDING_METRICS


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    train: tuple[int, int]  # bar slice [start, stop)
    test: tuple[int, int]


def make_windows(n_bars: int, train_bars: int, test_bars: int, step_bars: int | None = None) -> list[Window]:
    step = test_bars if step_bars is None else step_bars
    if step < test_bars:
        raise ValueError("`step_bars` must be at least `test_bars` (test windows would overlap)")
    out: list[Window] = []
    start = 0
    while start + train_bars + test_bars <= n_bars:
        mid = start + train_bars
        out.append(Window(len(out), (start, mid), (mid, mid + test_bars)))
        start += step
    return out


def grid_combinations(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def objective_value(metrics: dict[str, Any], objective: str) -> float | None:
    value = metrics.get(objective)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return -value if objective in ASCENDING_METRICS else value


def pick_best(results: Sequence[tuple[dict[str, Any], dict[str, Any]]], objective: str) -> int:
    """Index of the best (params, metrics) pair by ``objective`` (higher is better unless the metric is
    one where smaller is better); the first wins ties; undefined values lose to defined ones."""
    best, best_value = 0, None
    for i, (_, metrics) in enumerate(results):
        value = objective_value(metrics, objective)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = i, value
    return best


def stitch(
    pieces: Sequence[tuple[np.ndarray, np.ndarray]], initial_cash: float
) -> tuple[np.ndarray, np.ndarray]:
    """Chain test-window equity curves (ts, equity): each is scaled so that it starts where the
    previous one ended (the first starts at ``initial_cash``)."""
    ts_parts, eq_parts = [], []
    level = float(initial_cash)
    for ts, equity in pieces:
        scaled = np.asarray(equity, dtype=np.float64) * (level / float(equity[0]))
        ts_parts.append(np.asarray(ts, dtype=np.int64))
        eq_parts.append(scaled)
        level = float(scaled[-1])
    if not ts_parts:
        return np.empty(0, dtype=np.int64), np.empty(0)
    return np.concatenate(ts_parts), np.concatenate(eq_parts)


def stitched_metrics(equity: np.ndarray, periods_per_year: int) -> dict[str, Any]:
    if equity.size == 0 or np.any(equity <= 0):
        return {}
    return performance_metrics(equity=equity, periods_per_year=periods_per_year)


def run_window(
    window: Window,
    combos: Sequence[dict[str, Any]],
    run: Callable[[tuple[int, int], dict[str, Any], int], tuple[dict[str, Any], np.ndarray, np.ndarray]],
    objective: str,
) -> dict[str, Any]:
    """Run every combination on the window's training bars, the best on its test bars, with the training
    bars as the test run's history: its signals are computed over them too (indicators start warm, and a
    position the chosen parameters hold coming into the window is held from its first bar), and only the
    test bars are traded and measured.

    ``run(bar_slice, params, history)`` returns (metrics, ts, equity) of one simulation.
    """
    in_sample = [(params, run(window.train, params, 0)[0]) for params in combos]
    best = pick_best(in_sample, objective)
    params, train_metrics = in_sample[best]
    history = window.train[1] - window.train[0]
    test_metrics, ts, equity = run(window.test, params, history)
    return {
        "params": params,
        "in_sample": train_metrics,
        "out_of_sample": test_metrics,
        "ts": ts,
        "equity": equity,
        "scores": [objective_value(m, objective) for _, m in in_sample],
    }
