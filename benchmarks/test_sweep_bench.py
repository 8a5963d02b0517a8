"""A parameter sweep end to end (informational, not gated). Run on its own:

    python -m pytest benchmarks/test_sweep_bench.py -p no:xdist -q -s

100 sma_cross combinations over 10 years of daily bars (2,520), submitted through the API and run by
two SAQ workers in this process: the time from POST /api/v1/backtests/sweeps until every run is
stored. The figure is dominated by per-run overhead (queue round trips, three small transactions and
the result write), not by the simulation, which takes a few milliseconds per run.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from benchmarks.workers import daily_instrument, in_process_workers

GRID = {
    "fast": [3, 5, 8, 10, 12, 15, 20, 25, 30, 40],
    "slow": [50, 60, 80, 100, 120, 150, 180, 200, 250, 300],
}
WORKERS = 2
CONCURRENCY = 4


@pytest.fixture(scope="module")
def sweep_env(driver, loop, bench_settings):
    admin = {"authorization": f"Bearer {bench_settings.admin_api_key}"}
    daily_instrument(driver, admin, "SWX", "SWEEP10Y", seed=10)

    with in_process_workers(loop, bench_settings, WORKERS, CONCURRENCY):
        yield admin


def test_sweep_100_combinations_10y_daily(benchmark, driver, loop, sweep_env):
    admin = sweep_env

    async def one_sweep() -> dict:
        status, body = await driver.request(
            "POST",
            "/api/v1/backtests/sweeps",
            json={
                "strategy": "sma_cross",
                "grid": GRID,
                "symbol": "SWEEP10Y",
                "timeframe": "1d",
                "initial_cash": "100000",
                "commission": "0.0005",
            },
            headers=admin,
        )
        assert status == 202, body
        sweep_id = msgspec.json.decode(body)["id"]
        deadline = time.monotonic() + 300
        while True:
            status, body = await driver.request(
                "GET", f"/api/v1/backtests/sweeps/{sweep_id}?limit=3", headers=admin
            )
            out = msgspec.json.decode(body)
            if out["status"] != "running" and out["status"] != "queued":
                return out
            assert time.monotonic() < deadline, out["counts"]
            await asyncio.sleep(0.02)

    result = benchmark.pedantic(lambda: loop.run_until_complete(one_sweep()), rounds=3, iterations=1)
    assert result["counts"]["completed"] == 100, result["counts"]
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(
        runs=100,
        bars=2_520,
        workers=WORKERS,
        concurrency=CONCURRENCY,
        best_seconds=round(best, 3),
        runs_per_second=round(100 / best, 1),
    )
    print(
        f"\nsweep: 100 runs x 2,520 daily bars, {WORKERS} workers x {CONCURRENCY}: best {best:.2f} s "
        f"({100 / best:.0f} runs/s), mean {benchmark.stats.stats.mean:.2f} s"
    )
