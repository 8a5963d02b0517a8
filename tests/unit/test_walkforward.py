"""Walk-forward windows, the choice of the best combination, and stitching."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.backtesting.walkforward import grid_combinations, make_windows, pick_best, stitch


def test_windows_move_by_step_and_only_whole_windows_run():
    windows = make_windows(100, 40, 20)
    assert [(w.train, w.test) for w in windows] == [
        ((0, 40), (40, 60)),
        ((20, 60), (60, 80)),
        ((40, 80), (80, 100)),
    ]
    assert [w.test for w in make_windows(100, 40, 20, 30)] == [(40, 60), (70, 90)]
    assert make_windows(50, 40, 20) == []
    with pytest.raises(ValueError, match="overlap"):
        make_windows(100, 40, 20, 10)


def test_best_combination_by_objective():
    results = [
        ({"a": 1}, {"sharpe": 0.5}),
        ({"a": 2}, {"sharpe": None}),
        ({"a": 3}, {"sharpe": 1.5}),
        ({"a": 4}, {"sharpe": 1.5}),
    ]
    assert pick_best(results, "sharpe") == 2  # the first of a tie wins; None never wins
    # Smaller is better for volatility-like metrics.
    vols = [({}, {"annual_volatility": 0.3}), ({}, {"annual_volatility": 0.1})]
    assert pick_best(vols, "annual_volatility") == 1
    assert pick_best([({}, {"sharpe": None}), ({}, {"sharpe": None})], "sharpe") == 0


def test_stitch_chains_each_window_from_the_previous_end():
    ts, eq = stitch(
        [(np.array([1, 2]), np.array([100.0, 110.0])), (np.array([3, 4]), np.array([100.0, 90.0]))], 50.0
    )
    assert ts.tolist() == [1, 2, 3, 4]
    assert eq.tolist() == pytest.approx([50.0, 55.0, 55.0, 49.5])


def test_grid_combinations_in_grid_order():
    assert grid_combinations({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
