"""A walk-forward run end to end (informational, not gated). Run on its own:

    python -m pytest benchmarks/test_walkforward_bench.py -p no:xdist -q -s

10 windows x 20 sma_cross combinations over 10 years of daily bars (2,520; train 504 bars, test 201),
submitted through the API and run by two SAQ workers in this process: the time from
POST /api/v1/backtests/walkforward until the stitched result is stored (goal < 30 s). Each window is
one job that runs its 20 training simulations and the test run, so the two workers share the windows.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from benchmarks.workers import daily_instrument, in_process_workers

GRID = {"fast": [5, 10, 15, 20, 30], "slow": [50, 100, 150, 200]}
WORKERS = 2
CONCURRENCY = 4


@pytest.fixture(scope="module")
def walkforward_env(driver, loop, bench_settings):
    admin = {"authorization": f"Bearer {bench_settings.admin_api_key}"}
    daily_instrument(driver, admin, "WFX", "WF10Y", seed=12)

    with in_process_workers(loop, bench_settings, WORKERS, CONCURRENCY):
        yield admin


def test_walkforward_10_windows_20_combinations(benchmark, driver, loop, walkforward_env):
    admin = walkforward_env

    async def one_run() -> dict:
        status, body = await driver.request(
            "POST",
            "/api/v1/backtests/walkforward",
            json={
                "strategy": "sma_cross",
                "symbol": "WF10Y",
                "timeframe": "1d",
                "initial_cash": "100000",
                "commission": "0.0005",
                "grid": GRID,
                "train_bars": 504,
                "test_bars": 201,
                "objective": "sharpe",
            },
            headers=admin,
        )
        assert status == 202, body
        wf = msgspec.json.decode(body)
        assert wf["windows_total"] == 10
        deadline = time.monotonic() + 300
        while True:
            status, body = await driver.request(
                "GET", f"/api/v1/backtests/walkforward/{wf['id']}", headers=admin
            )
            out = msgspec.json.decode(body)
            if out["status"] != "running":
                return out
            assert time.monotonic() < deadline, out["windows_done"]
            await asyncio.sleep(0.02)

    result = benchmark.pedantic(lambda: loop.run_until_complete(one_run()), rounds=3, iterations=1)
    assert result["status"] == "completed" and result["windows_done"] == 10, result
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(windows=10, combinations=20, workers=WORKERS, best_seconds=round(best, 3))
    print(
        f"\nwalk-forward: 10 windows x 20 combinations, {WORKERS} workers x {CONCURRENCY}: "
        f"best {best:.2f} s, "
        f"mean {benchmark.stats.stats.mean:.2f} s"
    )
    assert best < 30
