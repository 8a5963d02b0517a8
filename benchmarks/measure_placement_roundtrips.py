"""What deciding an account's next order on the state its previous write left saves, against real
PostgreSQL: client CPU and wall time per market order, placed one after another on one account.

    python -m benchmarks.measure_placement_roundtrips [--orders 1000] [--repeats 3]

A scratch database (td_meas_*) is migrated and seeded like `measure_placement_cpu`'s. Then, alternating
in one sitting, batches of orders go through `placement.place_order` on one asyncpg connection set up as
the order pool's: "kept" lets each order be decided on the previous write's state (one statement per
order), "read" forgets that state before every order (the read and the write, as before the fifth
session). Reported per order: this process's CPU (`process_time`: asyncpg, the event loop, the kernel's
side of the socket and our Python) and wall time, median of the repeats. The database is dropped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
import msgspec

from app.lib.db import _numeric_as_text
from benchmarks.conftest import _admin, _url
from benchmarks.measure_placement_cpu import ORDER_BODY, _seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from app.domain.identity.schemas import Principal
    from app.domain.trading import placement
    from app.domain.trading.kept import PlacementCaches
    from app.domain.trading.schemas import OrderCreate

    db = f"td_meas_{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))

    async def measure(account: uuid.UUID, owner: uuid.UUID) -> dict[str, list[tuple[float, float]]]:
        conn = await asyncpg.connect(_url(db))
        await _numeric_as_text(conn)  # as on the order pool
        principal = Principal(user_id=owner, role="trader", key_id=uuid.uuid4(), email="meas@example.com")
        caches = PlacementCaches()  # as an app's

        async def batch(forget: bool) -> tuple[float, float]:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.orders):
                if forget:
                    caches.take_snapshot(account)
                data = msgspec.json.decode(ORDER_BODY, type=OrderCreate)
                _, created = await placement.place_order(conn, principal, account, data, caches=caches)
                assert created
            n = args.orders
            return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6

        try:
            await batch(False)  # warm-up: statement cache, buffers
            results: dict[str, list[tuple[float, float]]] = {"kept": [], "read": []}
            for _ in range(args.repeats):
                results["kept"].append(await batch(False))
                results["read"].append(await batch(True))
            return results
        finally:
            await conn.close()

    try:
        _, account, owner = _seed(db, loop)
        results = loop.run_until_complete(measure(account, owner))
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    for mode, runs in results.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"{mode:5s} client CPU {cpu:6.1f} us/order, wall {wall:6.1f} us/order "
              f"(CPU per batch: {', '.join(f'{c:.0f}' for c, _ in runs)})")
    kept, read = (statistics.median(c for c, _ in results[m]) for m in ("kept", "read"))
    print(f"kept / read client CPU: {kept / read:.2f}")


if __name__ == "__main__":
    main()
