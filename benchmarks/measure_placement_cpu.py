"""CPU of order placement's own Python, without I/O: the rules, accounting, risk seam, the write's
parameters, the response Struct and its JSON, per market order.

    python -m benchmarks.measure_placement_cpu [--orders 2000] [--repeats 7] [--profile]

A scratch database (td_meas_*) is migrated and seeded through the real app (one instrument with a last
price, one account with five filled orders), then the lean read's row is fetched once. Placement then
runs against a stand-in connection that answers that row for the read and "applied" for the write, so
what is timed is only our code: `process_time` per order, median of the repeats. `--profile` adds a
cProfile listing. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
import uuid
from dataclasses import replace
from decimal import Decimal

import asyncpg
import msgspec

from app.lib.db import _numeric_as_text, async_url, libpq_url
from app.lib.settings import Settings
from benchmarks.conftest import REDIS_URL, _admin, _url, drop_redis_keys
from benchmarks.harness import AsgiDriver

ORDER_BODY = b'{"symbol":"BENCH","side":"buy","type":"market","quantity":"1"}'


def _seed(db: str, loop: asyncio.AbstractEventLoop) -> tuple[object, uuid.UUID, uuid.UUID]:
    from app.domain.trading import placement
    from app.lib.migrate import upgrade
    from app.server.app import create_app

    run = db.rsplit("_", 1)[1]
    upgrade(_url(db))
    settings = replace(
        Settings(), env="bench", database_url=async_url(_url(db)), redis_url=REDIS_URL,
        queue_name=f"tdmeas-{run}", redis_prefix=f"tdmeas-{run}",
        admin_api_key=f"td_meas_admin_{run}_0123456789abcdefghij", workers_in_process=False,
        log_level="WARNING", access_log=False, rate_limit_read=10**9, rate_limit_write=10**9,
        rate_limit_orders=10**9, rate_limit_anonymous=10**9,
    )
    driver = AsgiDriver(create_app(settings), loop)
    driver.start()
    try:
        admin = {"authorization": f"Bearer {settings.admin_api_key}"}
        email = {"email": f"meas-{run}@example.com"}
        _, body = driver.call("POST", "/api/v1/users", json=email, headers=admin)
        trader = {"authorization": "Bearer " + msgspec.json.decode(body)["api_key"]}
        for path, payload in (
            ("/api/v1/exchanges",
             {"code": "BX", "name": "b", "taker_fee_rate": "0.001", "maker_fee_rate": "0.0005"}),
            ("/api/v1/instruments",
             {"symbol": "BENCH", "exchange": "BX", "base_asset": "B", "quote_asset": "USD",
              "tick_size": "0.01", "lot_size": "1", "min_quantity": "1"}),
            ("/api/v1/instruments/BENCH/price", {"price": "100"}),
        ):
            status, body = driver.call("POST", path, json=payload, headers=admin)
            assert status in (200, 201), body
        _, body = driver.call("POST", "/api/v1/accounts", json={"name": "m", "initial_cash": "1000000000"},
                              headers=trader)
        account = uuid.UUID(msgspec.json.decode(body)["id"])
        for _ in range(5):
            status, body = driver.call("POST", f"/api/v1/accounts/{account}/orders", content=ORDER_BODY,
                                       headers={**trader, "content-type": "application/json"})
            assert status == 201, body
    finally:
        driver.stop()
        loop.run_until_complete(drop_redis_keys(f"tdmeas-{run}"))

    async def lean_row():
        conn = await asyncpg.connect(libpq_url(_url(db)))
        try:
            await _numeric_as_text(conn)  # as on the order pool
            return await conn.fetchrow(placement.LEAN_READ_SQL, account, "buy", "BENCH", None)
        finally:
            await conn.close()

    row = loop.run_until_complete(lean_row())
    return row, account, row["owner_id"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from app.domain.identity.schemas import Principal
    from app.domain.trading import placement
    from app.domain.trading.kept import PlacementCaches
    from app.domain.trading.schemas import OrderCreate

    db = f"td_meas_{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        row, account, owner = _seed(db, loop)
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    # What WRITE_SQL returns when it applies: the account and position as stored (the seeded values will
    # do: only the shape matters here) and the account row's new version.
    written = {
        "applied": 1, "instrument_unchanged": True, "account_version": row["row_version"],
        **{k: row[k] for k in ("cash", "reserved_cash", "realized_pnl", "fees_paid", "peak_equity")},
        "position_quantity": Decimal(5), "position_avg_entry_price": Decimal(100), "position_realized_pnl": Decimal(0),
        "event_seq": 4,  # the account's last stream number after the order's events
    }

    class StandIn:
        """Answers the lean read with the seeded row and the write with `written`. From the second order on,
        placement decides on the state the previous write left (no read), as for a bot on a real server."""

        async def fetchrow(self, sql: str, *params: object) -> object:
            return row if sql is placement.LEAN_READ_SQL else written

    conn = StandIn()
    caches = PlacementCaches()  # as an app's
    principal = Principal(user_id=owner, role="trader", key_id=uuid.uuid4(), email="meas@example.com")

    async def orders(n: int) -> None:
        for _ in range(n):
            data = msgspec.json.decode(ORDER_BODY, type=OrderCreate)
            order, created = await placement.place_order(conn, principal, account, data, caches=caches)
            assert created
            msgspec.json.encode(order)

    loop.run_until_complete(orders(500))  # warm-up
    per_order = []
    for _ in range(args.repeats):
        started = time.process_time()
        loop.run_until_complete(orders(args.orders))
        per_order.append((time.process_time() - started) / args.orders * 1e6)
    print(f"placement Python CPU per market order: median {statistics.median(per_order):.1f} us "
          f"(min {min(per_order):.1f}, max {max(per_order):.1f}; {args.repeats} x {args.orders} orders)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(loop.run_until_complete, orders(args.orders))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
