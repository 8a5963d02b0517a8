"""Cost of the full pre-trade risk check on the order path, through the real app in-process, as markdown.

    python -m benchmarks.measure_risk [--pairs 1000] [--warmup 60]

Accounts of one trader with identical books (5 positions, 20 resting limit orders): account A has
every one of the 11 limit types enabled account-wide plus 5 symbol-scoped limits on the traded symbol
(values far from any breach), account B has none, account C only max_orders_per_minute (the one limit
that makes the book query count the last minute of orders, so C - B isolates that scan). Market buys
of 1 lot are placed in rounds A/B/C whose order rotates, so machine-load drifts hit all equally; the
same for `orders/validate` (dry run: the same checks, nothing written). Reports p50/p99 of each, the
p50 difference A - B and the median of the per-round differences. Runs on a scratch database
(td_meas_*), dropped at the end.
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
from benchmarks.conftest import REDIS_URL, _admin, _url
from benchmarks.harness import AsgiDriver, calibration

SYMBOLS = ["RK0", "RK1", "RK2", "RK3", "RK4"]
TRADED = "RK0"
ACCOUNT_WIDE = {
    "max_order_notional": "1e12",
    "max_order_quantity": "1e9",
    "max_position_quantity": "1e12",
    "max_position_notional": "1e15",
    "max_gross_exposure": "1e16",
    "max_leverage": "1000",
    "max_concentration_pct": "100",
    "max_open_orders": "1000000",
    "max_orders_per_minute": "1000000000",
    "max_daily_loss": "1e12",
    "max_drawdown_pct": "99",
}
SYMBOL_SCOPED = {
    "max_order_notional": "1e12",
    "max_order_quantity": "1e9",
    "max_position_quantity": "1e12",
    "max_position_notional": "1e15",
    "max_concentration_pct": "100",
}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s))) - 1))]


def ok(status: int, body: bytes, expected: int) -> bytes:
    if status != expected:
        raise RuntimeError(f"expected {expected}, got {status}: {body[:400]!r}")
    return body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000, help="measured A/B/C rounds per endpoint")
    parser.add_argument("--warmup", type=int, default=60, help="unmeasured rounds per endpoint first")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    db = f"td_meas_risk_{run}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    drv: AsgiDriver | None = None
    try:
        from app.lib.migrate import upgrade
        from app.server.app import create_app

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
        drv = AsgiDriver(create_app(settings), loop)
        drv.start()
        admin = {"authorization": f"Bearer {settings.admin_api_key}"}
        body = ok(
            *drv.call("POST", "/api/v1/users", json={"email": f"risk-{run}@example.com"}, headers=admin), 201
        )
        trader = {"authorization": "Bearer " + msgspec.json.decode(body)["api_key"]}
        ok(
            *drv.call(
                "POST",
                "/api/v1/exchanges",
                json={
                    "code": "RX",
                    "name": "risk bench",
                    "taker_fee_rate": "0.001",
                    "maker_fee_rate": "0.0005",
                },
                headers=admin,
            ),
            201,
        )
        for i, sym in enumerate(SYMBOLS):
            ok(
                *drv.call(
                    "POST",
                    "/api/v1/instruments",
                    json={
                        "symbol": sym,
                        "exchange": "RX",
                        "base_asset": sym,
                        "quote_asset": "USD",
                        "tick_size": "0.01",
                        "lot_size": "1",
                        "min_quantity": "1",
                    },
                    headers=admin,
                ),
                201,
            )
            ok(
                *drv.call(
                    "POST",
                    f"/api/v1/instruments/{sym}/price",
                    json={"price": f"{100 + 10 * i}.00"},
                    headers=admin,
                ),
                200,
            )
        accounts = {}
        for name in ("A", "B", "C"):
            body = ok(
                *drv.call(
                    "POST",
                    "/api/v1/accounts",
                    json={"name": f"risk-{name}", "initial_cash": "1000000000000"},
                    headers=trader,
                ),
                201,
            )
            accounts[name] = msgspec.json.decode(body)["id"]
        limits = [(t, v, None) for t, v in ACCOUNT_WIDE.items()] + [
            (t, v, TRADED) for t, v in SYMBOL_SCOPED.items()
        ]
        for t, v, sym in limits:
            payload = {"limit_type": t, "value": v, **({"symbol": sym} if sym else {})}
            ok(
                *drv.call(
                    "POST", f"/api/v1/accounts/{accounts['A']}/risk/limits", json=payload, headers=admin
                ),
                201,
            )
        ok(
            *drv.call(
                "POST",
                f"/api/v1/accounts/{accounts['C']}/risk/limits",
                json={"limit_type": "max_orders_per_minute", "value": ACCOUNT_WIDE["max_orders_per_minute"]},
                headers=admin,
            ),
            201,
        )
        # Identical books: a position in each symbol and 20 resting buy limits far below the market.
        for acct in accounts.values():
            for sym in SYMBOLS:
                ok(
                    *drv.call(
                        "POST",
                        f"/api/v1/accounts/{acct}/orders",
                        json={"symbol": sym, "side": "buy", "type": "market", "quantity": "100"},
                        headers=trader,
                    ),
                    201,
                )
            for k in range(20):
                ok(
                    *drv.call(
                        "POST",
                        f"/api/v1/accounts/{acct}/orders",
                        json={
                            "symbol": SYMBOLS[k % 5],
                            "side": "buy",
                            "type": "limit",
                            "quantity": "1",
                            "limit_price": f"{50 + k}.00",
                        },
                        headers=trader,
                    ),
                    201,
                )

        order = {"symbol": TRADED, "side": "buy", "type": "market", "quantity": "1"}

        def measure(path: str, expected: int, pairs: int) -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"A": [], "B": [], "C": []}
            rounds = (
                ("A", "B", "C"),
                ("B", "C", "A"),
                ("C", "A", "B"),
                ("B", "A", "C"),
                ("A", "C", "B"),
                ("C", "B", "A"),
            )
            for i in range(pairs):
                for name in rounds[i % len(rounds)]:
                    t0 = time.perf_counter()
                    status, body = drv.call(
                        "POST", f"/api/v1/accounts/{accounts[name]}/{path}", json=order, headers=trader
                    )
                    times[name].append((time.perf_counter() - t0) * 1000)
                    ok(status, body, expected)
            return times

        results = {}
        t_start = time.perf_counter()
        for label, path, expected in (
            ("place market order (1 lot)", "orders", 201),
            ("orders/validate (dry run)", "orders/validate", 200),
        ):
            measure(path, expected, args.warmup)
            t0 = time.perf_counter()
            results[label] = (measure(path, expected, args.pairs), time.perf_counter() - t0)
        wall = time.perf_counter() - t_start
        t0 = time.perf_counter()
        for _ in range(20):
            calibration()
        calib_ms = (time.perf_counter() - t0) / 20 * 1000

        print("## Pre-trade risk check cost (in-process app, real PostgreSQL + Redis)\n")
        print(
            f"Account A: all {len(ACCOUNT_WIDE)} limit types account-wide + {len(SYMBOL_SCOPED)} scoped to "
            f"{TRADED} ({len(limits)} enabled limits, none near a breach). Account B: no limits. Account C: "
            "only max_orders_per_minute (isolates the submission-rate window, which the book query counts "
            "only for accounts with that limit). Same owner, same book (5 positions, 20 resting limit "
            "orders). "
            "Requests rotate A/B/C (the order inside each round rotates through all 6 permutations), "
            f"{args.warmup} warm-up rounds then {args.pairs} measured rounds each; one client, no network. "
            f"Calibration loop: {calib_ms:.2f} ms.\n"
        )
        print("| endpoint | account | n | p50 ms | p99 ms | mean ms |")
        print("|---|---|---:|---:|---:|---:|")
        for label, (times, _) in results.items():
            for name, desc in (("A", "16 limits"), ("B", "no limits"), ("C", "max_orders_per_minute only")):
                t = times[name]
                print(
                    f"| {label} | {name} ({desc}) | {len(t)} | {statistics.median(t):.3f} | "
                    f"{pct(t, 0.99):.3f} | {statistics.fmean(t):.3f} |"
                )
        print(
            "\n| endpoint | p50(A) - p50(B) | median of per-pair (A - B) | p99(A) - p99(B) | "
            "goal < 2 ms at p50 | of which rate window: median per-round (C - B) | requests/s (A+B+C) |"
        )
        print("|---|---:|---:|---:|---|---:|---:|")
        for label, (times, secs) in results.items():
            a, b, c = times["A"], times["B"], times["C"]
            d50 = statistics.median(a) - statistics.median(b)
            paired = statistics.median([x - y for x, y in zip(a, b, strict=True)])
            window = statistics.median([x - y for x, y in zip(c, b, strict=True)])
            print(
                f"| {label} | {d50:+.3f} ms | {paired:+.3f} ms | {pct(a, 0.99) - pct(b, 0.99):+.3f} ms | "
                f"{'met' if d50 < 2 else 'MISSED'} | {window:+.3f} ms | "
                f"{(len(a) + len(b) + len(c)) / secs:,.0f} |"
            )
        tenth = max(args.pairs // 10, 1)
        print("\n| endpoint | account | p50 first 10% of rounds | p50 last 10% of rounds |")
        print("|---|---|---:|---:|")
        for label, (times, _) in results.items():
            for name in ("A", "B", "C"):
                t = times[name]
                print(
                    f"| {label} | {name} | {statistics.median(t[:tenth]):.3f} ms | "
                    f"{statistics.median(t[-tenth:]):.3f} ms |"
                )
        secs = results["place market order (1 lot)"][1]
        per_min = 60 * args.pairs / secs
        print(
            f"\nMeasured phases took {wall:.1f} s. During the order run each account placed ~{per_min:,.0f} "
            "orders/minute: that is how many rows the `orders_last_minute` window of A and C covers at the "
            "end "
            "of the run (B skips it: no max_orders_per_minute limit)."
        )
    finally:
        if drv is not None:
            try:
                drv.stop()
            except Exception as exc:  # never let a failed shutdown keep the database
                print(f"(app shutdown failed: {exc!r})")

        async def clean_redis() -> None:
            import redis.asyncio as aioredis

            r = aioredis.from_url(REDIS_URL)
            keys = [k async for k in r.scan_iter(match=f"*tdmeas-{run}*", count=1000)]
            if keys:
                await r.delete(*keys)
            await r.aclose()

        try:
            loop.run_until_complete(clean_redis())
        finally:
            loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            loop.close()


if __name__ == "__main__":
    main()
