"""Desk-scale risk on 10,000 accounts x 5 positions, as markdown: the set-based monitoring sweep against the
per-account monitor it replaced (same run, same data), and a 20-scenario stress test.

    python -m benchmarks.measure_desk_risk [--accounts 10000] [--batch-size 500] [--scenarios 20]

The scratch database (td_meas_*) is generated exactly as benchmarks/measure_monitor.py does (50 priced
instruments with 250 daily candles, 5 positions and 3-5 enabled limits per account, 1 account in 20
over a limit, 3 in 20 at 85%). Timed, in this order:

1. `monitor_all` (the set-based sweep), first pass: alerts fire, breached drawdown stops switch accounts
   to reduce_only;
2. `monitor_all`, second pass (steady state: violations again, no alerts);
3. the per-account monitor (`monitor_account` for every account, one transaction each: what
   `monitor_all` did before the sweep), steady state, for the ratio against 2;
4. the event-driven post-trade check (`post_trade.check_holders`, what a committed price update runs) for
   five symbols, each held by about 1,000 accounts;
5. `stress_test` as a risk manager over every account with `--scenarios` scenarios (shock scenarios
   plus one historical window), service call (load + numpy + result objects) and the JSON encoding of
   its response separately.

The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app.lib.db import async_url
from app.lib.settings import Settings
from benchmarks.conftest import _admin, _url
from benchmarks.measure_monitor import counts, generate, ms, run_monitor


async def per_account(engine: Any) -> tuple[dict[str, int], float]:
    from sqlalchemy import select

    from app.domain.risk.models import RiskLimit
    from app.domain.risk.services import monitor_account

    totals = {"accounts": 0, "violations": 0, "alerts": 0}
    async with engine.connect() as conn:
        ids = list(
            (
                await conn.execute(select(RiskLimit.account_id).distinct().order_by(RiskLimit.account_id))
            ).scalars()
        )
        await conn.rollback()
        t0 = time.perf_counter()
        for account_id in ids:
            result = await monitor_account(conn, account_id)
            totals["accounts"] += 1
            totals["violations"] += len(result.violations)
            totals["alerts"] += len(result.alerts)
        return totals, time.perf_counter() - t0


def scenarios(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": f"shock {i}", "shocks": {"*": -0.01 * (i + 1), f"M{i % 50:02d}": 0.02 * (i + 1)}}
        for i in range(n - 1)
    ]
    end = datetime.now(UTC)
    out.append(
        {
            "name": "last 90 days",
            "historical": {"start": (end - timedelta(days=90)).isoformat(), "end": end.isoformat()},
        }
    )
    return out


async def post_trade_latency(engine: Any, symbols: int = 5) -> tuple[list[float], list[int]]:
    """check_holders (the committed-price hook's work) for a few symbols, each held by ~1,000 accounts."""
    from app.domain.risk.post_trade import check_holders

    times, checked = [], []
    async with engine.connect() as conn:
        for k in range(symbols):
            t0 = time.perf_counter()
            counts = await check_holders(conn, f"M{k:02d}")
            times.append((time.perf_counter() - t0) * 1000)
            checked.append(counts["accounts"])
    return times, checked


async def stress(engine: Any, n: int) -> tuple[float, float, int, int, int]:
    from app.domain.identity.schemas import Principal
    from app.domain.risk.schemas import StressRequest
    from app.domain.risk.stress_service import stress_test

    request = msgspec.convert({"scenarios": scenarios(n)}, StressRequest)
    reader = Principal(
        user_id=uuid.uuid4(), role="risk_manager", key_id=uuid.uuid4(), email="rm@bench.example"
    )
    async with engine.connect() as conn:
        t0 = time.perf_counter()
        out = await stress_test(conn, reader, request)
        service_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    body = msgspec.json.encode(out)
    encode_s = time.perf_counter() - t0
    breaches = sum(len(a.breaches) for r in out.results for a in r.accounts)
    return service_s, encode_s, len(out.results[0].accounts), breaches, len(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--scenarios", type=int, default=20)
    parser.add_argument("--skip-per-account", action="store_true", help="do not time the per-account monitor")
    args = parser.parse_args()
    from app.lib.log import configure_logging

    configure_logging("ERROR")
    db = f"td_meas_desk_{uuid.uuid4().hex[:8]}"
    url = _url(db)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        from app.lib.db import create_engine
        from app.lib.migrate import upgrade

        upgrade(url)
        gen_s = loop.run_until_complete(generate(url, args.accounts))
        before = loop.run_until_complete(counts(url))
        engine = create_engine(replace(Settings(), database_url=async_url(url), log_level="ERROR"))
        ctx: dict[str, Any] = {"engine": engine}
        try:
            first, first_s, _ = loop.run_until_complete(run_monitor(ctx, args.batch_size, 3000.0))
            after_first = loop.run_until_complete(counts(url))
            second, second_s, _ = loop.run_until_complete(run_monitor(ctx, args.batch_size, 3000.0))
            after_second = loop.run_until_complete(counts(url))
            old = old_s = None
            if not args.skip_per_account:
                old, old_s = loop.run_until_complete(per_account(engine))
            latency_ms, checked = loop.run_until_complete(post_trade_latency(engine))
            stress_s, encode_s, stressed, breaches, size = loop.run_until_complete(
                stress(engine, args.scenarios)
            )
        finally:
            loop.run_until_complete(engine.dispose())
        data = (
            f"Data: {before['accounts']:,} accounts, {before['positions']:,} positions, "
            f"{before['limits']:,} enabled limits, {before['candles']:,} daily candles "
            f"(generated in {gen_s:.1f} s).\n"
        )
        print(data)
        print("| run | accounts | wall time | accounts/s | violations | alerts | -> reduce_only |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = [
            (f"set-based sweep (batch {args.batch_size}), 1st pass", first, first_s),
            (f"set-based sweep (batch {args.batch_size}), 2nd pass", second, second_s),
        ]
        for label, res, secs in rows:
            print(
                f"| {label} | {res['accounts']:,} | {ms(secs)} | {res['accounts'] / secs:,.0f} | "
                f"{res['violations']:,} | {res['alerts']:,} | {res['reduce_only']:,} |"
            )
        if old is not None and old_s is not None:
            print(
                f"| per-account monitor_account loop, steady state | {old['accounts']:,} | {ms(old_s)} | "
                f"{old['accounts'] / old_s:,.0f} | {old['violations']:,} | {old['alerts']:,} | — |"
            )
            print(f"\nSteady state, same run: the sweep is {old_s / second_s:.1f}x the per-account loop.")
        w1, c1 = after_first["warnings"], after_first["criticals"]
        w2, c2 = after_second["warnings"], after_second["criticals"]
        print(
            f"\nAfter the passes: {w1:,} warning / {c1:,} critical alerts after the 1st, {w2:,} / {c2:,} "
            f"after the 2nd; {after_second['reduce_only']:,} accounts in reduce_only.\n"
        )
        print("| post-trade check after a price update (check_holders) | accounts checked | ms |")
        print("|---|---:|---:|")
        for k, (t, n) in enumerate(zip(latency_ms, checked, strict=True)):
            print(f"| symbol M{k:02d} | {n:,} | {t:,.0f} |")
        print()
        print("| stress test | accounts | scenarios | service call | JSON encode | breaches | response |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(
            f"| stress_test (risk manager, every account) | {stressed:,} | {args.scenarios} | "
            f"{ms(stress_s)} | {ms(encode_s)} | {breaches:,} | {size / 1e6:.1f} MB |"
        )
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()


if __name__ == "__main__":
    main()
