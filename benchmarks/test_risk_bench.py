"""Pure risk-core timings (pytest-benchmark). Run on its own:

    python -m pytest benchmarks/test_risk_bench.py -p no:xdist -q

The pre-trade check runs inside the order transaction with the account row locked, so its cost is
added to every order's lock hold time: with all eleven limits on a 50-position book it should stay far
below a millisecond (about 0.1 ms on a laptop). The monitor's VaR step (250 days x 50 symbols) is
timed for comparison.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from app.domain.risk import calculations, checks

D = Decimal


def _book(n: int = 50) -> checks.PortfolioState:
    positions = {f"S{i:03d}": (D(10 + i), D("100.25") + i) for i in range(n)}
    return checks.PortfolioState(
        cash=D("1000000"),
        positions=positions,
        open_orders=7,
        orders_last_minute=3,
        daily_pnl=D("-1234.5"),
        drawdown_pct=D("2.5"),
    )


def _limits() -> list[checks.Limit]:
    values = {
        "max_order_notional": "1e6",
        "max_order_quantity": "1e4",
        "max_position_quantity": "1e5",
        "max_position_notional": "1e7",
        "max_gross_exposure": "1e8",
        "max_leverage": "10",
        "max_concentration_pct": "90",
        "max_open_orders": "100",
        "max_orders_per_minute": "600",
        "max_daily_loss": "1e6",
        "max_drawdown_pct": "50",
    }
    return [checks.Limit(id=f"L{i}", limit_type=t, value=D(v)) for i, (t, v) in enumerate(values.items())]


def test_pre_trade_check_all_limits(benchmark):
    state, limits = _book(), _limits()
    order = checks.ProposedOrder("S010", "buy", D("5"), D("110.25"))
    assert benchmark(checks.check_pre_trade, state, order, limits) is None


def test_monitor_utilisation_all_limits(benchmark):
    state, limits = _book(), _limits()

    def run() -> list[Decimal | None]:
        checks.current_breaches(state, limits)
        return [checks.utilisation(state, lim) for lim in limits]

    assert len(benchmark(run)) == len(limits)


def test_var_report_250_days_50_symbols(benchmark):
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (250, 50)), axis=0))
    q = rng.integers(1, 100, 50).astype(np.float64)

    def run() -> dict[str, object]:
        r = calculations.portfolio_returns(q, closes)
        return calculations.var_report(r, calculations.returns_base(q, closes[-1]))

    assert benchmark(run)["observations"] == 249
