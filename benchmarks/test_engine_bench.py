"""Backtest engine throughput (pytest-benchmark). Run on its own:

    python -m pytest benchmarks/test_engine_bench.py -p no:xdist -q

The vectorised path (sma_cross signals + engine + metrics) must handle 1,000,000 bars in well under a
second, with or without exits inside bars; the plain-Python loop reference is timed on 100,000 bars
for comparison.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.backtesting.engine import Bars, run_strategy
from app.domain.backtesting.exits import Exits
from tests.unit.engine_reference import run_backtest_loop

# Costs small enough that the account keeps trading for the whole series (about 20k round trips on
# the 1M bars), so the benchmark measures trading work rather than an idle drained account.
COSTS = {"initial_cash": 100_000.0, "commission": 0.0001, "slippage_bps": 0.0, "lot_size": 0.001}
PARAMS = {"fast": 10, "slow": 30}


def synthetic_bars(n: int, seed: int = 42) -> Bars:
    # Low per-bar volatility keeps a million-bar random walk in a tradeable price range.
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.0003, n))
    return Bars(
        ts=1_600_000_000 + 60 * np.arange(n, dtype=np.int64),
        open=open_,
        high=np.maximum(open_, close) * 1.0005,
        low=np.minimum(open_, close) * 0.9995,
        close=close,
        volume=rng.uniform(1.0, 100.0, n),
    )


@pytest.fixture(scope="module")
def bars_1m() -> Bars:
    return synthetic_bars(1_000_000)


@pytest.fixture(scope="module")
def bars_100k() -> Bars:
    return synthetic_bars(100_000, seed=7)


def _report(benchmark, n_bars: int, label: str) -> float:
    best = benchmark.stats.stats.min
    rate = n_bars / best
    benchmark.extra_info["bars"] = n_bars
    benchmark.extra_info["best_seconds"] = round(best, 4)
    benchmark.extra_info["bars_per_second"] = round(rate)
    print(f"\n{label}: {n_bars:,} bars in {best:.3f} s (best of rounds) = {rate:,.0f} bars/s")
    return best


def test_vectorised_sma_cross_1m_bars(benchmark, bars_1m):
    result = benchmark.pedantic(
        run_strategy,
        args=(bars_1m, "sma_cross", PARAMS),
        kwargs=COSTS,
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    best = _report(benchmark, len(bars_1m), "vectorised sma_cross (signals + engine + metrics)")
    assert len(result.trades) > 10_000, "the benchmark must actually trade"
    assert result.metrics["exposure_pct"] > 0.4
    assert result.equity.shape == (1_000_000,)
    assert best < 1.0


def test_vectorised_sma_cross_with_exits_1m_bars(benchmark, bars_1m):
    exits = Exits(stop_loss_pct=0.3, take_profit_pct=1.0, trailing_stop_pct=0.6)
    result = benchmark.pedantic(
        run_strategy,
        args=(bars_1m, "sma_cross", PARAMS),
        kwargs={**COSTS, "exits": exits},
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    best = _report(benchmark, len(bars_1m), "vectorised sma_cross with stop-loss, take-profit, trailing stop")
    reasons = {t.exit_reason for t in result.trades}
    assert {"stop_loss", "take_profit", "trailing_stop"} <= reasons, reasons
    assert best < 1.0


def test_loop_reference_100k_bars(benchmark, bars_100k):
    result = benchmark.pedantic(
        run_backtest_loop, args=(bars_100k,), kwargs={**PARAMS, **COSTS}, rounds=3, iterations=1
    )
    _report(benchmark, len(bars_100k), "plain-Python loop sma_cross")
    assert len(result.trades) > 100
    assert result.trades == run_strategy(bars_100k, "sma_cross", PARAMS, **COSTS).trades
