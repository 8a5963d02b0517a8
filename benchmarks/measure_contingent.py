"""Contingent orders against real PostgreSQL: bracket placement against simple placement, and one price
update matching 1,000 resting orders of mixed classes (trailing stops included).

    python -m benchmarks.measure_contingent [--orders 300] [--repeats 3] [--book 1000] [--accounts 10]

A scratch database (td_meas_*) is migrated and seeded like `measure_placement_cpu`'s; it is dropped at the
end. Printed with the machine's load average before and after.

1. Placement, alternating in one sitting on one asyncpg connection set up as the order pool's: batches
   of `--orders` simple limit buys resting below the market (placement.py's optimistic path) and of
   brackets with the same entry plus a take-profit and a stop-loss (contingent.py's locked transaction:
   three orders and seven events). Per order: wall time and this process's CPU, median of the repeats;
   the ratio is bracket throughput / simple throughput.
2. Matching: per repeat a fresh instrument at 100 and `--accounts` accounts holding a long position, and a
   book of `--book` resting orders spread over them round-robin: 20 % simple sell limits at 101, 30 % OCO
   groups (take-profit 101, stop-loss 95: each group two resting orders), 20 % bracket exit legs (entries
   filled at placement: take-profit 101, stop-loss 95) and 30 % sell trailing stops (hwm 100, trail 2). One
   price of 101 then acts on every one of them: the limits and take-profits fill (as makers), every
   stop-loss is canceled by its filled take-profit (one-cancels-other), every trailing stop moves its hwm
   and stop. Timed: that one price update (`markets.services.set_price`, its whole transaction), in wall
   time, this process's CPU time and the CPU time of its PostgreSQL backend process (/proc, when the
   server is local). The same with a book of `--book` simple sell limits at 101 for comparison. Every run
   takes a connection of one pool, warmed first by untimed runs over a book of 20, as a server's pooled
   connections are: their statements prepared and asyncpg's type information loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from app.lib.db import _numeric_as_text
from app.lib.settings import Settings
from benchmarks.conftest import _admin, _url
from benchmarks.measure_placement_cpu import _seed

SIMPLE = b'{"symbol":"BENCH","side":"buy","type":"limit","quantity":"1","limit_price":"90"}'
BRACKET = (
    b'{"symbol":"BENCH","side":"buy","type":"limit","quantity":"1","limit_price":"90","order_class":"bracket",'
    b'"take_profit":{"limit_price":"110"},"stop_loss":{"stop_price":"80"}}'
)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def placement(db: str, account: uuid.UUID, owner: uuid.UUID, orders: int, repeats: int) -> dict:
    from app.domain.identity.schemas import Principal
    from app.domain.trading import services as place
    from app.domain.trading.kept import PlacementCaches
    from app.domain.trading.schemas import OrderCreate

    conn = await asyncpg.connect(_url(db))
    await _numeric_as_text(conn)
    principal = Principal(user_id=owner, role="trader", key_id=uuid.uuid4(), email="meas@example.com")
    caches = PlacementCaches()  # as an app's

    async def batch(body: bytes) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(orders):
            _, created = await place.place_order(
                conn, principal, account, msgspec.json.decode(body, type=OrderCreate), caches=caches
            )
            assert created
        return (time.process_time() - cpu) / orders * 1e6, (time.perf_counter() - wall) / orders * 1e6

    try:
        await batch(SIMPLE)
        await batch(BRACKET)  # warm-up: statement caches, buffers
        results: dict[str, list[tuple[float, float]]] = {"simple": [], "bracket": []}
        for i in range(repeats):
            for kind in ("simple", "bracket") if i % 2 == 0 else ("bracket", "simple"):
                results[kind].append(await batch(SIMPLE if kind == "simple" else BRACKET))
        return results
    finally:
        await conn.close()


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by PostgreSQL backend `pid`: readable when the server runs
    on this machine (NaN otherwise). Clock-tick resolution (10 ms): read the median of several runs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def matching(
    engine: Any, book_size: int, n_accounts: int, mixed: bool
) -> tuple[float, int, int, float, float]:
    """Seed one book on a fresh instrument and time the one price that acts on all of it: wall ms, resting
    orders, fills, this process's CPU ms, the PostgreSQL backend's CPU ms. `engine` is shared by the runs
    (`main` warms it with untimed runs): a server's pooled connection has already prepared the price
    path's statements and loaded asyncpg's type information (the uuid[] parameters of the groups' and the
    accounts' reads cost a cold connection one introspection query, ~3 ms of PostgreSQL time)."""
    from sqlalchemy import text

    from app.domain.accounts.schemas import AccountCreate
    from app.domain.accounts.services import create_account
    from app.domain.identity.schemas import Principal
    from app.domain.identity.services import create_user
    from app.domain.markets.services import set_price, upsert_exchange, upsert_instrument
    from app.domain.trading.schemas import OrderCreate, StopLoss, TakeProfit
    from app.domain.trading.services import place_order
    suffix = uuid.uuid4().hex[:8].upper()
    symbol = f"M{suffix}"
    async with engine.connect() as conn:
        user, _, key_id = await create_user(conn, f"m-{suffix.lower()}@example.com", "trader")
        principal = Principal(user_id=user.id, role="trader", key_id=key_id, email=user.email)
        async with conn.begin():
            await upsert_exchange(
                conn,
                {
                    "code": f"X{suffix}",
                    "name": "m",
                    "taker_fee_rate": Decimal("0.001"),
                    "maker_fee_rate": Decimal("0.0005"),
                    "slippage_bps": Decimal("0"),
                },
            )
            await upsert_instrument(
                conn,
                {
                    "symbol": symbol,
                    "exchange_code": f"X{suffix}",
                    "base_asset": "M",
                    "quote_asset": "USD",
                    "tick_size": Decimal("0.01"),
                    "lot_size": Decimal("1"),
                    "min_quantity": Decimal("1"),
                    "min_notional": Decimal("0"),
                },
            )
        await conn.commit()
        await set_price(conn, symbol, Decimal(100), None, None)
        accounts = []
        for i in range(n_accounts):
            a = await create_account(
                conn, principal, AccountCreate(name=f"m{i}", initial_cash=Decimal(10**7))
            )
            await place_order(
                conn,
                principal,
                a.id,
                OrderCreate(symbol=symbol, side="buy", type="market", quantity=Decimal(book_size)),
            )
            accounts.append(a.id)
        q = Decimal(1)
        resting = 0
        i = 0
        while resting < book_size:
            acct = accounts[i % n_accounts]
            i += 1
            kind = i % 10 if mixed else 0
            if kind in (0, 1):  # 20 %: simple sell limits
                body = OrderCreate(
                    symbol=symbol, side="sell", type="limit", quantity=q, limit_price=Decimal(101)
                )
                resting += 1
            elif kind in (2, 3, 4):  # 30 % of the orders: OCO groups (two each)
                body = OrderCreate(
                    symbol=symbol,
                    side="sell",
                    type="limit",
                    quantity=q,
                    order_class="oco",
                    take_profit=TakeProfit(limit_price=Decimal(101)),
                    stop_loss=StopLoss(stop_price=Decimal(95)),
                )
                resting += 2
            elif kind in (5, 6):  # 20 %: bracket exit legs, the entry filled at placement (two each)
                body = OrderCreate(
                    symbol=symbol,
                    side="buy",
                    type="market",
                    quantity=q,
                    order_class="bracket",
                    take_profit=TakeProfit(limit_price=Decimal(101)),
                    stop_loss=StopLoss(stop_price=Decimal(95)),
                )
                resting += 2
            else:  # 30 %: trailing stops
                body = OrderCreate(
                    symbol=symbol, side="sell", type="trailing_stop", quantity=q, trail_price=Decimal(2)
                )
                resting += 1
            await place_order(conn, principal, acct, body)
        await conn.commit()
        count = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM orders WHERE symbol = :s"
                    " AND status IN ('new', 'accepted', 'partially_filled')"
                ),
                {"s": symbol},
            )
        ).scalar()
        await conn.commit()
        await conn.execute(text("ANALYZE orders"))
        await conn.commit()
        backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        await conn.commit()
        server_cpu = _backend_cpu(backend)
        start, cpu = time.perf_counter(), time.process_time()
        await set_price(conn, symbol, Decimal(101), None, None)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        server_cpu = _backend_cpu(backend) - server_cpu
        fills = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM fills f JOIN orders o ON o.id = f.order_id WHERE o.symbol = :s"
                    " AND f.price = 101"
                ),
                {"s": symbol},
            )
        ).scalar()
        await conn.commit()
        return elapsed * 1000, count, fills, cpu * 1000, server_cpu * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--book", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--skip-placement", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {_load()}")
    db = f"td_meas_{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        _, account, owner = _seed(db, loop)
        if not args.skip_placement:
            res = loop.run_until_complete(placement(db, account, owner, args.orders, args.repeats))
            med = {
                k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
                for k, v in res.items()
            }
            for k, (cpu, wall) in med.items():
                print(
                    f"{k:8s} wall {wall:7.1f} us/order ({1e6 / wall:6.0f} orders/s), "
                    f"client CPU {cpu:7.1f} us/order "
                    f"(wall per batch: {', '.join(f'{w:.0f}' for _, w in res[k])})"
                )
            print(
                f"bracket / simple throughput: {med['simple'][1] / med['bracket'][1]:.2f}"
                f" (client CPU {med['simple'][0] / med['bracket'][0]:.2f})"
            )
        from app.lib.db import async_url, create_engine
        from app.server.wiring import wire

        wire()  # the price path matches through the hooks the composition root registers
        engine = create_engine(replace(Settings(), database_url=async_url(_url(db)), db_pool_size=2))
        # untimed runs warm the pool's connections (the post-trade check takes a second one), as a server's
        # would be
        for _ in range(2):
            loop.run_until_complete(matching(engine, 20, 2, True))
        for mixed in (True, False):
            runs = [
                loop.run_until_complete(matching(engine, args.book, args.accounts, mixed))
                for _ in range(args.repeats)
            ]
            label = "mixed classes" if mixed else "simple limits"
            print(
                f"one price over {runs[0][1]} resting orders ({label}, {args.accounts} accounts, "
                f"{runs[0][2]} fills): median {statistics.median(r[0] for r in runs):.1f} ms "
                f"(runs: {', '.join(f'{r[0]:.1f}' for r in runs)}); CPU median: this process "
                f"{statistics.median(r[3] for r in runs):.1f} ms, PostgreSQL backend "
                f"{statistics.median(r[4] for r in runs):.0f} ms"
            )
        loop.run_until_complete(engine.dispose())
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
