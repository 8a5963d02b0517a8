"""Placement throughput of accounts under a group limit against accounts without one, same run, as markdown.

    python -m benchmarks.measure_group_placement [--accounts 32] [--concurrency 16] [--seconds 5] [--rounds 3]
                                                 [--groups 1] [--resting 0]

A scratch database (td_meas_*) gets one priced instrument, `--accounts` accounts in `--groups` groups
(account k in group k mod groups), each group with an enabled group limit (`max_gross_exposure`, far from
reached: every order passes its check, as in normal trading), and as many accounts without a group.
`place_order` (the HTTP handler's service call, on the order pool's asyncpg connections, no HTTP) places
market orders of 1 from `--concurrency` tasks, each on its own account (task i on account i: with as many
groups as tasks, every task is in a group of its own, which checks that accounts of different groups are
not serialised), for `--seconds` per phase; phases alternate grouped / ungrouped `--rounds` times so both
see the same machine load. `--resting K`: before the phases, every account (grouped or not) gets K buy
limits far below the market that rest throughout, so that the group guard compares every member's row
(members with open orders: app/domain/risk/group_pretrade.py); with none (the default) it compares only
the instrument's. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import replace
from decimal import Decimal

import asyncpg

from app.lib.settings import Settings
from benchmarks.conftest import _admin, _url

SETUP = """
INSERT INTO exchanges (code, name, taker_fee_rate, maker_fee_rate) VALUES ('GX', 'group bench', 0, 0);
INSERT INTO instruments (symbol, exchange_code, base_asset, quote_asset, tick_size, lot_size, min_quantity,
                         min_notional, last_price, last_price_at)
VALUES ('GP', 'GX', 'G', 'USD', 0.01, 1, 1, 0, 100, now());
INSERT INTO users (id, email, role) VALUES ('{owner}', 'group-bench@bench.example', 'trader');
INSERT INTO risk_groups (id, name)
SELECT md5('gg' || k)::uuid, 'bench desk ' || k FROM generate_series(0, {groups} - 1) k;
INSERT INTO risk_group_limits (id, group_id, limit_type, value)
SELECT gen_random_uuid(), md5('gg' || k)::uuid, 'max_gross_exposure', 1e15
  FROM generate_series(0, {groups} - 1) k;
INSERT INTO accounts (id, owner_id, name, base_currency, initial_cash, cash, peak_equity, group_id,
                      group_limited)
SELECT md5('ga' || g)::uuid, '{owner}', 'g' || g, 'USD', 1e12, 1e12, 1e12,
       CASE WHEN g < {n} THEN md5('gg' || (g % {groups}))::uuid END, g < {n}
  FROM generate_series(0, 2 * {n} - 1) g;
"""


async def phase(
    pool: asyncpg.Pool, principal: object, accounts: list[uuid.UUID], tasks: int, seconds: float, caches: object
) -> float:
    from app.domain.trading.placement import place_order
    from app.domain.trading.schemas import OrderCreate

    order = OrderCreate(symbol="GP", side="buy", type="market", quantity=Decimal(1))
    stop = time.perf_counter() + seconds
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        account = accounts[i % len(accounts)]
        while time.perf_counter() < stop:
            async with pool.acquire() as conn:
                await place_order(conn, principal, account, order, caches=caches)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return done / (time.perf_counter() - t0)


async def run(
    url: str, n: int, tasks: int, seconds: float, rounds: int, groups: int = 1, resting: int = 0
) -> tuple[list[float], list[float]]:
    from app.domain.identity.schemas import Principal
    from app.domain.trading.kept import PlacementCaches
    from app.lib.db import create_order_pool

    owner = uuid.uuid4()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SETUP.format(owner=owner, n=n, groups=groups))
        # In creation order: task i's account is in group i % groups.
        rows = await conn.fetch("SELECT id, group_id FROM accounts ORDER BY substr(name, 2)::int")
    finally:
        await conn.close()
    grouped = [r["id"] for r in rows if r["group_id"] is not None]
    plain = [r["id"] for r in rows if r["group_id"] is None]
    principal = Principal(
        user_id=owner, role="trader", key_id=uuid.uuid4(), email="group-bench@bench.example"
    )
    pool = await create_order_pool(replace(Settings(), db_order_pool_size=tasks), url)
    caches = PlacementCaches()  # as an app's
    try:
        if resting:
            from app.domain.trading.placement import place_order
            from app.domain.trading.schemas import OrderCreate

            bid = OrderCreate(
                symbol="GP", side="buy", type="limit", quantity=Decimal(1), limit_price=Decimal(1)
            )
            async with pool.acquire() as order_conn:
                for account in grouped + plain:
                    for _ in range(resting):
                        await place_order(order_conn, principal, account, bid, caches=caches)
        await phase(pool, principal, grouped, tasks, 1.0, caches)  # warm-up: connections, prepared statements
        await phase(pool, principal, plain, tasks, 1.0, caches)
        with_limits, without = [], []
        for _ in range(rounds):
            with_limits.append(await phase(pool, principal, grouped, tasks, seconds, caches))
            without.append(await phase(pool, principal, plain, tasks, seconds, caches))
        return with_limits, without
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--groups", type=int, default=1, help="spread the grouped accounts over this many limited groups"
    )
    parser.add_argument(
        "--resting", type=int, default=0, help="resting buy limits per account, far from the market"
    )
    args = parser.parse_args()
    from app.lib.log import configure_logging
    from app.lib.migrate import upgrade

    configure_logging("ERROR")
    db = f"td_meas_groupplace_{uuid.uuid4().hex[:8]}"
    url = _url(db)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        upgrade(url)
        with_limits, without = loop.run_until_complete(
            run(url, args.accounts, args.concurrency, args.seconds, args.rounds, args.groups, args.resting)
        )
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()
    shape = (
        f"{args.concurrency} tasks, {args.accounts} accounts in {args.groups} group(s), "
        f"{args.rounds} x {args.seconds:g} s"
        + (f", {args.resting} resting order(s) each" if args.resting else "")
    )
    print(f"| placement ({shape}) | orders/s per phase | median |")
    print("|---|---|---:|")
    for label, values in (
        ("accounts in a group with a limit", with_limits),
        ("accounts without a group", without),
    ):
        per_phase = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {label} | {per_phase} | {statistics.median(values):,.0f} |")
    ratio = statistics.median(with_limits) / statistics.median(without)
    pairs = statistics.median(w / wo for w, wo in zip(with_limits, without, strict=True))
    print(f"\nRatio with / without group limits: {ratio:.2f}x (median of the rounds' ratios: {pairs:.2f}x)")


if __name__ == "__main__":
    main()
