"""The gated benchmarks: hot endpoints through the real app and the pure cores.

Each stores the times of CALLS calls (`extra_info["times_us"]`, benchmarks/harness.py:turn_times). The
gate (benchmarks/gate.py) runs this file in two processes at once, one on its reference commit's `app/`
and one on this tree's, taking turns call by call, and compares call i of one with call i of the other.
The bodies call public HTTP endpoints and pure functions with stable signatures only: they must also run
against the reference commit. Pure cores are named `test_core_*`: the gate measures them in a process pair
of their own, without the app loaded (benchmarks/gate.py, PROCESS_GROUPS).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import numpy as np

from benchmarks.harness import turn_times

CALLS = 150
ROUNDS = 30  # pytest-benchmark's own table (and warm-up) only; the gate reads the paired calls


def _ok(status_body, expected=200):
    status, body = status_body
    assert status == expected, body[:300]


def _gate(benchmark, target, calls=CALLS, rounds=ROUNDS):
    benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=10)
    benchmark.extra_info.update(turn_times(target, calls))


def test_health(benchmark, driver):
    """/health through our middleware and router: what the app adds to every request."""
    _gate(benchmark, lambda: driver.call("GET", "/health"))


def test_auth_and_rate_limit_whoami(benchmark, driver, seed):
    """Authentication (cached key) + one atomic rate-limit INCR in Redis, no other I/O: their cost."""
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/auth/whoami", headers=seed.trader)))


def test_authenticated_read_me(benchmark, driver, seed):
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/users/me", headers=seed.trader)))


def test_instrument_list_cached(benchmark, driver, seed):
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/instruments?limit=50", headers=seed.trader)))


def test_candles_query_1000(benchmark, driver, seed):
    path = "/api/v1/instruments/BENCH/candles?timeframe=1d&limit=1000"
    _gate(benchmark, lambda: _ok(driver.call("GET", path, headers=seed.trader)))


def test_orders_list_100(benchmark, driver, seed):
    path = f"/api/v1/accounts/{seed.account}/orders?limit=100"
    _gate(benchmark, lambda: _ok(driver.call("GET", path, headers=seed.trader)))


def test_order_placement_market(benchmark, driver, seed):
    driver.call("POST", "/api/v1/instruments/BENCH/price", json={"price": "100"}, headers=seed.admin)
    path = f"/api/v1/accounts/{seed.account}/orders"
    body = {"symbol": "BENCH", "side": "buy", "type": "market", "quantity": "1"}
    _gate(benchmark, lambda: _ok(driver.call("POST", path, json=body, headers=seed.trader), 201))


def test_order_validate_with_limits(benchmark, driver, seed):
    limits = f"/api/v1/accounts/{seed.validate_account}/risk/limits"
    existing = driver.call("GET", limits, headers=seed.admin)
    if b'"max_order_notional"' not in existing[1]:
        for kind, value in (("max_order_notional", "1000000"), ("max_order_quantity", "10000"),
                            ("max_position_quantity", "1000000"), ("max_gross_exposure", "100000000"),
                            ("max_open_orders", "100000"), ("max_orders_per_minute", "1000000")):
            _ok(driver.call("POST", limits, json={"limit_type": kind, "value": value}, headers=seed.admin), 201)
    path = f"/api/v1/accounts/{seed.validate_account}/orders/validate"
    body = {"symbol": "BENCH", "side": "buy", "type": "limit", "quantity": "1", "limit_price": "99"}
    _gate(benchmark, lambda: _ok(driver.call("POST", path, json=body, headers=seed.trader)))


def test_analytics_performance_1000(benchmark, driver, seed):
    rng = np.random.default_rng(7)
    returns = [round(float(x), 8) for x in rng.normal(0.0004, 0.01, 1000)]
    _gate(benchmark, lambda: _ok(driver.call("POST", "/api/v1/analytics/performance", json={"returns": returns},
                                             headers=seed.trader)))


def test_core_pre_trade_check(benchmark):
    from app.domain.risk import checks

    state = checks.PortfolioState(cash=Decimal("1000000"),
                                  positions={f"S{i}": (Decimal(10 + i), Decimal("100.5")) for i in range(50)})
    limits = [checks.Limit(id=str(uuid.uuid4()), limit_type=t, value=Decimal("1e12")) for t in checks.LIMIT_TYPES]
    order = checks.ProposedOrder("S1", "buy", Decimal(5), Decimal("100.5"))
    _gate(benchmark, lambda: checks.check_pre_trade(state, order, limits), rounds=100, calls=400)


def test_core_performance_metrics(benchmark):
    from app.domain.analytics.metrics import performance_metrics

    returns = np.random.default_rng(3).normal(0.0004, 0.01, 5000)
    _gate(benchmark, lambda: performance_metrics(returns=returns), calls=200)


def test_core_backtest_engine_100k(benchmark):
    from app.domain.backtesting.engine import Bars, run_strategy

    n = 100_000
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = Bars(ts=np.arange(n, dtype=np.int64) * 60, open=close, high=close * 1.001, low=close * 0.999,
                close=close, volume=np.ones(n))
    _gate(benchmark, lambda: run_strategy(bars, "sma_cross", {"fast": 10, "slow": 30}, initial_cash=1e6,
                                          commission=0.001), rounds=5, calls=30)
