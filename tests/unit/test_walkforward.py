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


def test_the_test_run_gets_the_training_bars_as_history():
    from app.domain.backtesting.walkforward import Window, run_window

    calls = []

    def run(bar_slice, params, history):
        calls.append((bar_slice, params["p"], history))
        return {"total_return": params["p"]}, np.array([bar_slice[0]]), np.array([1.0])

    out = run_window(Window(0, (20, 60), (60, 80)), [{"p": 1}, {"p": 2}], run, "total_return")
    assert calls == [((20, 60), 1, 0), ((20, 60), 2, 0), ((60, 80), 2, 40)]
    assert out["params"] == {"p": 2}


def test_a_warm_run_trades_only_after_its_history_on_signals_computed_over_all_of_it():
    from app.domain.backtesting.engine import Bars, run_backtest, run_strategy
    from app.domain.backtesting.strategies import STRATEGIES, parse_params
    from app.domain.markets.synthetic import generate_candles

    rows = generate_candles(bars=200, seed=3, timeframe="1d")
    bars = Bars(
        ts=np.array([int(r.ts.timestamp()) for r in rows]),
        **{k: np.array([float(getattr(r, k)) for r in rows]) for k in ("open", "high", "low", "close")},
        volume=np.array([float(r.volume) for r in rows]),
    )
    params = {"fast": 5, "slow": 20}
    target = STRATEGIES["sma_cross"].signals(bars, parse_params("sma_cross", params))
    cut = next(i for i in range(30, 200) if target[i] != 0)  # a bar where the strategy is long coming in
    tail = Bars(**{k: getattr(bars, k)[cut:] for k in ("ts", "open", "high", "low", "close", "volume")})
    warm = run_strategy(bars, "sma_cross", params, initial_cash=1000.0, commission=0.0, warmup=cut)
    same = run_backtest(tail, target[cut:], initial_cash=1000.0, commission=0.0)
    assert warm.equity.tolist() == same.equity.tolist() and len(warm.equity) == 200 - cut
    assert warm.trades and warm.trades[0].entry_ts == int(tail.ts[1])  # in at the first traded open
    cold = run_strategy(tail, "sma_cross", params, initial_cash=1000.0, commission=0.0)
    assert cold.equity.tolist() != warm.equity.tolist()  # cold indicators wait for a new cross
    with pytest.raises(ValueError, match="warmup"):
        run_strategy(bars, "sma_cross", params, initial_cash=1000.0, commission=0.0, warmup=200)
