"""What the stream costs order placement when nobody subscribes, in one process, side by side.

    python -m benchmarks.measure_stream_publish [--orders 300] [--rounds 6]

The real app in-process (benchmarks.harness.AsgiDriver, Redis channels backend) on a scratch database;
one account, market orders placed one after the other, in alternating blocks of `--orders` under three
publisher settings of the same process:

- `everything`: every account-scoped message built and published, as if some process subscribed to
  every account (the publisher without its subscriber registry: `publish._PUBLISHER.interest = None`);
- `registry`: what the code does: no process has a subscriber for the account, nothing is built or sent;
- `off`: publishing off altogether (no channels plugin), the floor.

Reports per mode the median over rounds of process CPU and wall time per order (the CPU includes the
publisher's background task and the process's own pub/sub receive of what it published).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import replace

import msgspec

from app.lib.db import async_url
from app.lib.settings import Settings
from benchmarks.conftest import REDIS_URL, _admin, _url, drop_redis_keys
from benchmarks.harness import AsgiDriver

ORDER_BODY = b'{"symbol":"BENCH","side":"buy","type":"market","quantity":"1"}'
MODES = ("everything", "registry", "off")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    from app.domain.streams import publish
    from app.lib.migrate import upgrade
    from app.server.app import create_app

    db = f"td_meas_{uuid.uuid4().hex[:8]}"
    run = db.rsplit("_", 1)[1]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        upgrade(_url(db))
        settings = replace(
            Settings(),
            env="bench",
            database_url=async_url(_url(db)),
            redis_url=REDIS_URL,
            queue_name=f"tdmeas-{run}",
            redis_prefix=f"tdmeas-{run}",
            admin_api_key=f"td_meas_admin_{run}_0123456789abcdefghij",
            workers_in_process=False,
            log_level="WARNING",
            access_log=False,
            rate_limit_read=10**9,
            rate_limit_write=10**9,
            rate_limit_orders=10**9,
            rate_limit_anonymous=10**9,
        )
        driver = AsgiDriver(create_app(settings), loop)
        driver.start()
        try:
            admin = {"authorization": f"Bearer {settings.admin_api_key}"}
            _, body = driver.call(
                "POST", "/api/v1/users", json={"email": f"m-{run}@example.com"}, headers=admin
            )
            trader = {"authorization": "Bearer " + msgspec.json.decode(body)["api_key"]}
            for path, payload in (
                (
                    "/api/v1/exchanges",
                    {"code": "BX", "name": "b", "taker_fee_rate": "0.001", "maker_fee_rate": "0.0005"},
                ),
                (
                    "/api/v1/instruments",
                    {
                        "symbol": "BENCH",
                        "exchange": "BX",
                        "base_asset": "B",
                        "quote_asset": "USD",
                        "tick_size": "0.01",
                        "lot_size": "1",
                        "min_quantity": "1",
                    },
                ),
                ("/api/v1/instruments/BENCH/price", {"price": "100"}),
            ):
                status, body = driver.call("POST", path, json=payload, headers=admin)
                assert status in (200, 201), body
            _, body = driver.call(
                "POST", "/api/v1/accounts", json={"name": "m", "initial_cash": "1000000000"}, headers=trader
            )
            path = f"/api/v1/accounts/{msgspec.json.decode(body)['id']}/orders"
            headers = {**trader, "content-type": "application/json"}
            plugin, interest = publish._PUBLISHER.plugin, publish._PUBLISHER.interest

            def block(mode: str) -> tuple[float, float]:
                publish._PUBLISHER.plugin = None if mode == "off" else plugin
                publish._PUBLISHER.interest = None if mode == "everything" else interest
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.orders):
                    status, body = driver.call("POST", path, content=ORDER_BODY, headers=headers)
                    assert status == 201, body
                driver.call("GET", "/health")  # let the publisher's queue drain inside the block
                return (time.process_time() - cpu) / args.orders * 1e6, (
                    time.perf_counter() - wall
                ) / args.orders * 1e6

            block("everything")  # warm-up
            results: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for i in range(args.rounds):
                for mode in MODES if i % 2 == 0 else MODES[::-1]:
                    results[mode].append(block(mode))
            publish._PUBLISHER.plugin, publish._PUBLISHER.interest = plugin, interest
        finally:
            driver.stop()
            loop.run_until_complete(drop_redis_keys(f"tdmeas-{run}"))
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    cpu = {m: statistics.median(c for c, _ in v) for m, v in results.items()}
    wall = {m: statistics.median(w for _, w in v) for m, v in results.items()}
    for mode in MODES:
        print(f"{mode:<10} CPU {cpu[mode]:8.1f} us/order  wall {wall[mode]:8.1f} us/order")
    print(
        f"CPU everything/registry {cpu['everything'] / cpu['registry']:.3f}, registry/off "
        f"{cpu['registry'] / cpu['off']:.3f}; "
        f"wall everything/registry {wall['everything'] / wall['registry']:.3f}"
        f" ({args.rounds} rounds x {args.orders} orders per mode)"
    )


if __name__ == "__main__":
    main()
