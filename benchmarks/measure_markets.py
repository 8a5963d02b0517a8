"""Market-data figures for docs/BENCHMARKS.md: bulk CSV load of 1M candles, candle range queries.

    python -m benchmarks.measure_markets [--rows 1000000]

Runs the real app in-process (no network) on a fresh database against the local PostgreSQL/Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import replace

import msgspec

from app.domain.markets.synthetic import candles_to_csv, generate_candles
from app.lib.settings import Settings
from benchmarks.conftest import REDIS_URL, _admin, _url
from benchmarks.harness import AsgiDriver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    db = f"td_mkt_{run}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        from app.lib.migrate import upgrade
        from app.server.app import create_app

        upgrade(_url(db))
        settings = replace(
            Settings(), database_url=_url(db), redis_url=REDIS_URL, redis_prefix=f"mkt-{run}", queue_name=f"mkt-{run}",
            admin_api_key=f"td_mkt_{run}_0123456789abcdefghijklmn", access_log=False, log_level="WARNING",
            rate_limit_read=10**9, rate_limit_write=10**9,
        )
        drv = AsgiDriver(create_app(settings), loop)
        drv.start()
        admin = {"authorization": f"Bearer {settings.admin_api_key}"}
        drv.call("POST", "/api/v1/exchanges", json={"code": "MX", "name": "m"}, headers=admin)
        drv.call("POST", "/api/v1/instruments", json={"symbol": "M1", "exchange": "MX", "base_asset": "M",
                                                      "quote_asset": "USD", "tick_size": "0.01", "lot_size": "1"},
                 headers=admin)
        t0 = time.perf_counter()
        csv = candles_to_csv(generate_candles(bars=args.rows, seed=42, timeframe="1m")).encode()
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        status, body = drv.call("POST", "/api/v1/instruments/M1/candles?timeframe=1m", content=csv,
                                headers={**admin, "content-type": "text/csv"})
        load_s = time.perf_counter() - t0
        assert status == 201, body[:300]
        rows = msgspec.json.decode(body)["rows"]
        print(f"| load {rows:,} 1m candles from CSV ({len(csv) / 1e6:.0f} MB) | {load_s:.2f} s | "
              f"{rows / load_s:,.0f} rows/s | (generating the CSV took {gen_s:.1f} s, not counted) |")
        for limit in (1000, 10000):
            base = "/api/v1/instruments/M1/candles?timeframe=1m&limit=" + str(limit)
            for kind in ("cached", "uncached"):
                times = []
                for i in range(60 if limit == 1000 else 25):
                    path = base if kind == "cached" else f"{base}&start=2020-01-01T{i // 60:02d}:{i % 60:02d}:00Z"
                    t0 = time.perf_counter()
                    status, body = drv.call("GET", path, headers=admin)
                    times.append(time.perf_counter() - t0)
                    assert status == 200
                times = times[3:]  # the first cached call is the miss
                med = statistics.median(times)
                p99 = sorted(times)[max(int(len(times) * 0.99) - 1, 0)]
                print(f"| GET candles limit={limit} {kind} | p50 {med * 1000:.2f} ms | p99 {p99 * 1000:.2f} ms | "
                      f"{1 / med:,.0f} req/s (one client, in-process) |")
        drv.stop()
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()


if __name__ == "__main__":
    main()
