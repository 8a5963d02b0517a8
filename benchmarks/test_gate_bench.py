"""The gated benchmarks: hot endpoints through the real app and the pure cores.

Each stores `extra_info["ratio"]` (see benchmarks/gate.py): endpoints relative to the `health` fixture
(/health + one PostgreSQL and one Redis round trip) measured back to back, /health relative to the same
harness calling a bare ASGI callable, and each pure core relative to a reference doing the same kind of work (Decimal
arithmetic, short numpy calls, whole-array numpy passes; see benchmarks/harness.py).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import numpy as np
import pytest

from benchmarks.harness import (
    AsgiDriver,
    array_pipeline_reference,
    decimal_reference,
    interleaved_ratio,
    small_array_reference,
)

PAIRS = 300
ROUNDS = 200


def _ok(status_body, expected=200):
    status, body = status_body
    assert status == expected, body[:300]


@pytest.fixture(scope="module")
def health(driver, bench_settings):
    """The reference for endpoints: /health through the whole app plus one PostgreSQL and one Redis
    round trip. Endpoints are mostly round trips; when a neighbour loads the database, the reference
    slows with them, so the ratio moves only when the endpoint itself changes."""
    import asyncpg
    import redis.asyncio as aioredis

    from app.lib.db import libpq_url

    pg = driver.loop.run_until_complete(asyncpg.connect(libpq_url(bench_settings.database_url)))
    rd = aioredis.from_url(bench_settings.redis_url)

    async def reference() -> None:
        await driver.request("GET", "/health")
        await pg.fetchval("SELECT 1")
        await rd.ping()

    yield lambda: driver.loop.run_until_complete(reference())
    driver.loop.run_until_complete(pg.close())
    driver.loop.run_until_complete(rd.aclose())


def _gate(benchmark, target, reference, pairs=PAIRS, rounds=ROUNDS):
    benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=10)
    benchmark.extra_info.update(interleaved_ratio(target, reference, pairs))


def test_health(benchmark, driver):
    """/health through our middleware and router, against the same harness calling a bare ASGI callable
    on the same loop: the ratio is what the app adds to the event loop's and the harness's own cost.
    (Against the bytecode loop it swung 0.055-0.105 between runs on one machine and 4x between two.)"""
    bare = AsgiDriver(_bare_health, driver.loop)
    _gate(benchmark, lambda: driver.call("GET", "/health"), lambda: bare.call("GET", "/health"))


async def _bare_health(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


def test_auth_and_rate_limit_whoami(benchmark, driver, seed, health):
    """Authentication (cached key) + one atomic rate-limit INCR in Redis, no other I/O: their cost."""
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/auth/whoami", headers=seed.trader)), health)


def test_authenticated_read_me(benchmark, driver, seed, health):
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/users/me", headers=seed.trader)), health)


def test_instrument_list_cached(benchmark, driver, seed, health):
    _gate(benchmark, lambda: _ok(driver.call("GET", "/api/v1/instruments?limit=50", headers=seed.trader)), health)


def test_candles_query_1000(benchmark, driver, seed, health):
    path = "/api/v1/instruments/BENCH/candles?timeframe=1d&limit=1000"
    _gate(benchmark, lambda: _ok(driver.call("GET", path, headers=seed.trader)), health)


def test_orders_list_100(benchmark, driver, seed, health):
    path = f"/api/v1/accounts/{seed.account}/orders?limit=100"
    _gate(benchmark, lambda: _ok(driver.call("GET", path, headers=seed.trader)), health)


def test_order_placement_market(benchmark, driver, seed, health):
    driver.call("POST", "/api/v1/instruments/BENCH/price", json={"price": "100"}, headers=seed.admin)
    path = f"/api/v1/accounts/{seed.account}/orders"
    body = {"symbol": "BENCH", "side": "buy", "type": "market", "quantity": "1"}
    _gate(benchmark, lambda: _ok(driver.call("POST", path, json=body, headers=seed.trader), 201), health)


def test_order_validate_with_limits(benchmark, driver, seed, health):
    limits = f"/api/v1/accounts/{seed.validate_account}/risk/limits"
    existing = driver.call("GET", limits, headers=seed.admin)
    if b'"max_order_notional"' not in existing[1]:
        for kind, value in (("max_order_notional", "1000000"), ("max_order_quantity", "10000"),
                            ("max_position_quantity", "1000000"), ("max_gross_exposure", "100000000"),
                            ("max_open_orders", "100000"), ("max_orders_per_minute", "1000000")):
            _ok(driver.call("POST", limits, json={"limit_type": kind, "value": value}, headers=seed.admin), 201)
    path = f"/api/v1/accounts/{seed.validate_account}/orders/validate"
    body = {"symbol": "BENCH", "side": "buy", "type": "limit", "quantity": "1", "limit_price": "99"}
    _gate(benchmark, lambda: _ok(driver.call("POST", path, json=body, headers=seed.trader)), health)


def test_analytics_performance_1000(benchmark, driver, seed, health):
    rng = np.random.default_rng(7)
    returns = [round(float(x), 8) for x in rng.normal(0.0004, 0.01, 1000)]
    _gate(benchmark, lambda: _ok(driver.call("POST", "/api/v1/analytics/performance", json={"returns": returns},
                                             headers=seed.trader)), health)


def test_core_pre_trade_check(benchmark):
    from app.domain.risk import checks

    state = checks.PortfolioState(cash=Decimal("1000000"),
                                  positions={f"S{i}": (Decimal(10 + i), Decimal("100.5")) for i in range(50)})
    limits = [checks.Limit(id=str(uuid.uuid4()), limit_type=t, value=Decimal("1e12")) for t in checks.LIMIT_TYPES]
    order = checks.ProposedOrder("S1", "buy", Decimal(5), Decimal("100.5"))
    _gate(benchmark, lambda: checks.check_pre_trade(state, order, limits), decimal_reference, rounds=300, pairs=300)


def test_core_performance_metrics(benchmark):
    from app.domain.analytics.metrics import performance_metrics

    returns = np.random.default_rng(3).normal(0.0004, 0.01, 5000)
    _gate(benchmark, lambda: performance_metrics(returns=returns), small_array_reference, rounds=200, pairs=200)


def test_core_backtest_engine_100k(benchmark):
    from app.domain.backtesting.engine import Bars, run_strategy

    n = 100_000
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    bars = Bars(ts=np.arange(n, dtype=np.int64) * 60, open=close, high=close * 1.001, low=close * 0.999,
                close=close, volume=np.ones(n))
    _gate(benchmark, lambda: run_strategy(bars, "sma_cross", {"fast": 10, "slow": 30}, initial_cash=1e6, commission=0.001),
          array_pipeline_reference, rounds=20, pairs=40)
