"""Benchmark fixtures: a fresh migrated database, the real app on one event loop, seeded data.

Run with `make bench` (pytest-benchmark turns itself off under xdist, so always `-p no:xdist`).
The gate (benchmarks/gate.py) runs these fixtures against its reference commit's `app/` and `migrations/`
too: keep them to public HTTP endpoints and long-lived entry points (Settings, create_app, upgrade).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from app.lib.db import async_url, libpq_url
from app.lib.settings import Settings
from benchmarks import inject
from benchmarks.harness import AsgiDriver

SERVER_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = uuid.uuid4().hex[:8]
DB = f"td_bench_{RUN}"


def _url(name: str) -> str:
    head, _, tail = libpq_url(SERVER_URL).rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    return f"{head}/{name}{query}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_url("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop_redis_keys(namespace: str) -> None:
    """Every key of one run (its Redis prefix and queue name both contain `namespace`)."""
    import redis.asyncio as aioredis

    redis = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"*{namespace}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def pytest_configure(config) -> None:
    """Under the gate, `app` must come from the tree being measured (its worktree for the reference)."""
    tree = os.environ.get("TRADEDESK_BENCH_TREE")
    if tree:
        import app

        here = Path(app.__file__).resolve()
        if not here.is_relative_to(Path(tree).resolve()):
            raise pytest.UsageError(f"benchmarks import app from {here}, not from the measured tree {tree}")


ROUNDS = int(os.environ.get("TRADEDESK_BENCH_ROUNDS", "1"))


@pytest.fixture(autouse=True)
def gate_round(request) -> int:
    """Which in-process round of the gate this is (TRADEDESK_BENCH_ROUNDS > 1 parametrizes it)."""
    return getattr(request, "param", 0)


def pytest_generate_tests(metafunc) -> None:
    if ROUNDS > 1 and metafunc.module.__name__.endswith("test_gate_bench"):
        metafunc.parametrize("gate_round", range(ROUNDS))


def pytest_collection_modifyitems(items) -> None:
    """Round by round (every benchmark once, then again): a benchmark's rounds spread over the run."""
    def round_of(item) -> int:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("gate_round", 0) if callspec else 0

    items.sort(key=round_of)


@pytest.fixture(scope="session", autouse=True)
def injected_slowdowns():
    """The gate's self-test slows a core from outside (benchmarks/inject.py); a no-op otherwise."""
    with inject.patched_cores(inject.active()):
        yield


@pytest.fixture(scope="session")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def bench_settings() -> Settings:
    return replace(
        Settings(),
        env="bench",
        database_url=async_url(_url(DB)),
        redis_url=REDIS_URL,
        queue_name=f"tdbench-{RUN}",
        redis_prefix=f"tdbench-{RUN}",
        admin_api_key=f"td_bench_admin_{RUN}_0123456789abcdefghij",
        workers_in_process=False,
        log_level="WARNING",
        access_log=False,
        rate_limit_read=10**9,
        rate_limit_write=10**9,
        rate_limit_orders=10**9,
        rate_limit_anonymous=10**9,
    )


@pytest.fixture(scope="session")
def driver(loop, bench_settings):
    from app.lib.migrate import upgrade
    from app.server.app import create_app

    loop.run_until_complete(_admin(f'CREATE DATABASE "{DB}"'))
    try:
        upgrade(_url(DB))
        drv = AsgiDriver(inject.wrap_app(create_app(bench_settings), inject.active()), loop)
        drv.start()
        yield drv
        drv.stop()
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))

        loop.run_until_complete(drop_redis_keys(f"tdbench-{RUN}"))


class Seed:
    admin: dict[str, str]
    trader: dict[str, str]
    account: str
    validate_account: str
    symbol: str


@pytest.fixture(scope="session")
def seed(driver, bench_settings) -> Seed:
    import msgspec

    from app.domain.markets.synthetic import candles_to_csv, generate_candles

    s = Seed()
    s.admin = {"authorization": f"Bearer {bench_settings.admin_api_key}"}
    status, body = driver.call("POST", "/api/v1/users", json={"email": f"bench-{RUN}@example.com"}, headers=s.admin)
    assert status == 201, body
    s.trader = {"authorization": "Bearer " + msgspec.json.decode(body)["api_key"]}
    s.symbol = "BENCH"
    assert driver.call("POST", "/api/v1/exchanges", json={"code": "BX", "name": "bench", "taker_fee_rate": "0.001",
                                                          "maker_fee_rate": "0.0005"}, headers=s.admin)[0] == 201
    assert driver.call("POST", "/api/v1/instruments", json={"symbol": "BENCH", "exchange": "BX", "base_asset": "B",
                                                            "quote_asset": "USD", "tick_size": "0.01", "lot_size": "1",
                                                            "min_quantity": "1"}, headers=s.admin)[0] == 201
    csv = candles_to_csv(generate_candles(bars=2_000, seed=1, timeframe="1d"))

    status, body = driver.call("POST", "/api/v1/instruments/BENCH/candles?timeframe=1d", content=csv.encode(),
                               headers={**s.admin, "content-type": "text/csv"})
    assert status == 201, body
    status, body = driver.call("POST", "/api/v1/accounts", json={"name": "bench", "initial_cash": "1000000000"},
                               headers=s.trader)
    assert status == 201, body
    s.account = msgspec.json.decode(body)["id"]
    # Validation gets its own account: placements made by other benchmarks must not change its book.
    status, body = driver.call("POST", "/api/v1/accounts", json={"name": "bench-validate", "initial_cash": "1000000"},
                               headers=s.trader)
    assert status == 201, body
    s.validate_account = msgspec.json.decode(body)["id"]
    for i in range(150):
        status, _ = driver.call("POST", f"/api/v1/accounts/{s.account}/orders",
                                json={"symbol": "BENCH", "side": "buy", "type": "limit", "quantity": "1",
                                      "limit_price": str(10 + i % 50)}, headers=s.trader)
        assert status == 201
    return s

