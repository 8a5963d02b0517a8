"""Synthetic portfolio data shared by the portfolio benchmarks (test_portfolio_bench.py) and the
vectorbt comparison (measure_vectorbt_portfolio.py, which runs without pytest)."""

from __future__ import annotations

import numpy as np

from app.domain.backtesting.portfolio import Commission, PortfolioBars, WeightPlan, rebalance_bars

COMMISSION = Commission(rate=0.0005, minimum=1.0)
SLIPPAGE_BPS = 1.0
INITIAL_CASH = 10_000_000.0


def weekday_days(n: int, start: int = 1_262_563_200) -> np.ndarray:
    """n weekday midnights (UTC) from 2010-01-04, a Monday."""
    days = start // 86_400 + np.arange(n * 7 // 5 + 7)
    days = days[((days + 3) % 7) < 5][:n]
    return days.astype(np.int64) * 86_400


def synthetic_portfolio(n: int = 2_520, m: int = 500, seed: int = 1) -> PortfolioBars:
    rng = np.random.default_rng(seed)
    close = 20.0 * rng.uniform(1, 10, m) * np.exp(np.cumsum(rng.normal(0.0002, 0.015, (n, m)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.004, (n, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.006, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.006, (n, m))))
    return PortfolioBars(
        symbols=tuple(f"S{i:03d}" for i in range(m)),
        ts=weekday_days(n),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=rng.uniform(1e3, 1e5, (n, m)),
    )


def monthly_equal_weights(bars: PortfolioBars) -> WeightPlan:
    decisions = rebalance_bars(bars.ts, "monthly")
    return WeightPlan(decisions, np.full((decisions.size, bars.m), 1.0 / bars.m))
