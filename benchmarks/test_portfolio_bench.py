"""Portfolio engine and rules language throughput (pytest-benchmark; informational, not gated). Run:

    python -m pytest benchmarks/test_portfolio_bench.py -p no:xdist -q -s

- 500 symbols x 2,520 weekday daily bars (10 years), fixed equal weights rebalanced monthly, with a
  rate+minimum commission and slippage (goal < 2 s), and the same with a trailing stop on every
  position (exits are scanned on every bar of every held symbol);
- a rules expression (two SMAs, a cross and an RSI) parsed and evaluated over 1,000,000 bars (goal <
  0.5 s).

The data (benchmarks/portfolio_data.py) is shared with measure_vectorbt_portfolio.py, which runs
vectorbt on the same data in its own virtual environment.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.backtesting.portfolio import Exits, PortfolioBars, run_portfolio
from app.domain.backtesting.rules_lang import SERIES, evaluate, parse_condition
from benchmarks.portfolio_data import (
    COMMISSION,
    INITIAL_CASH,
    SLIPPAGE_BPS,
    monthly_equal_weights,
    synthetic_portfolio,
)

RULE = "crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70"


@pytest.fixture(scope="module")
def bars() -> PortfolioBars:
    return synthetic_portfolio()


def test_portfolio_500_symbols_10y_monthly(benchmark, bars):
    plan = monthly_equal_weights(bars)
    result = benchmark.pedantic(
        lambda: run_portfolio(
            bars, plan, initial_cash=INITIAL_CASH, commission=COMMISSION, slippage_bps=SLIPPAGE_BPS
        ),
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(symbols=bars.m, bars=bars.n, fills=result.fills, best_seconds=round(best, 4))
    print(f"\nportfolio 500 x 2,520 monthly: best {best:.3f} s, {result.fills} fills")
    assert best < 2.0


def test_portfolio_500_symbols_10y_monthly_with_trailing_stops(benchmark, bars):
    plan = monthly_equal_weights(bars)
    exits = Exits(trailing_stop_pct=10.0)
    result = benchmark.pedantic(
        lambda: run_portfolio(
            bars,
            plan,
            initial_cash=INITIAL_CASH,
            commission=COMMISSION,
            slippage_bps=SLIPPAGE_BPS,
            exits=exits,
        ),
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    best = benchmark.stats.stats.min
    exits_taken = sum(1 for t in result.trades if t.exit_reason == "trailing_stop")
    benchmark.extra_info.update(fills=result.fills, trailing_exits=exits_taken, best_seconds=round(best, 4))
    print(
        f"\nportfolio 500 x 2,520 monthly + 10% trailing stops: best {best:.3f} s, {exits_taken} stop exits"
    )


def test_rules_expression_1m_bars(benchmark):
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, 1_000_000)))
    series = dict.fromkeys(SERIES, close)
    out = benchmark.pedantic(
        lambda: evaluate(parse_condition(RULE), series), rounds=5, iterations=1, warmup_rounds=1
    )
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(bars=1_000_000, signals=int(out.sum()), best_seconds=round(best, 4))
    print(f"\nrules over 1,000,000 bars: best {best:.3f} s ({int(out.sum())} bars true)")
    benchmark.extra_info["goal_met"] = best < 0.5  # informational: the machine is shared
