"""Replay throughput for docs/BENCHMARKS.md, side by side with posting the same prices to the price endpoint.

    python -m benchmarks.measure_replay [--bars 20000] [--book-bars 5000] [--orders 1000] [--http-prices 2000]
                                        [--symbols 4]

On a fresh database (local PostgreSQL/Redis), in one process and one run:

1. no resting orders: a replay (`path: ohlc`, speed max) of `--bars` 1m candles, and the first
   `--http-prices` of the same prices posted one by one to `POST /instruments/{symbol}/price` on a
   twin instrument;
2. `--orders` resting orders spread over the range (limits and stops, both sides, ten accounts): a
   replay of `--book-bars` candles, and the same prices posted one by one on a twin instrument carrying
   the same orders;
3. no resting orders, `--symbols` instruments replayed together (their prices interleave in time
   order), `--bars` candles in all.

The replay runs the job function (feed_jobs.run_feed) in this process, as a worker would, without SAQ's
dequeue; the price posts go through the whole app in-process (ASGI, no socket), which is an upper bound
for a client posting over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from app.domain.markets.feed_paths import bar_path
from app.domain.markets.synthetic import candles_to_csv, generate_candles
from app.lib.settings import Settings
from benchmarks.conftest import REDIS_URL, _admin, _url
from benchmarks.harness import AsgiDriver

START = datetime(2026, 1, 5, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--book-bars", type=int, default=5_000)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--http-prices", type=int, default=2_000)
    parser.add_argument("--symbols", type=int, default=4)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    db = f"td_replay_{run}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        from app.lib.migrate import upgrade
        from app.server.app import create_app

        upgrade(_url(db))
        settings = replace(
            Settings(),
            database_url=_url(db),
            redis_url=REDIS_URL,
            redis_prefix=f"rpl-{run}",
            queue_name=f"rpl-{run}",
            admin_api_key=f"td_rpl_{run}_0123456789abcdefghijklmn",
            access_log=False,
            log_level="WARNING",
            rate_limit_read=10**9,
            rate_limit_write=10**9,
            rate_limit_orders=10**9,
        )
        drv = AsgiDriver(create_app(settings), loop)
        drv.start()
        bench = Bench(drv, loop, {"authorization": f"Bearer {settings.admin_api_key}"})
        print("| book | fed by | prices | bars | seconds | prices/s | bars/s | fills |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for orders, bars in ((0, args.bars), (args.orders, args.book_bars)):
            candles = generate_candles(
                bars=bars,
                seed=7,
                timeframe="1m",
                start=START,
                start_price=Decimal("100"),
                tick_size=Decimal("0.01"),
            )
            replayed, posted = bench.instrument(candles, orders), bench.instrument(candles, orders)
            label = f"{orders:,} resting orders" if orders else "no resting orders"
            bench.replay(label, [replayed], bars)
            bench.post(label, posted, candles, args.http_prices)
        if args.symbols > 1:
            each = args.bars // args.symbols
            symbols = [
                bench.instrument(
                    generate_candles(
                        bars=each, seed=20 + k, timeframe="1m", start=START, start_price=Decimal("100"),
                        tick_size=Decimal("0.01"),
                    ),
                    0,
                )
                for k in range(args.symbols)
            ]
            bench.replay(f"no resting orders, {args.symbols} symbols together", symbols, each * args.symbols)
        drv.stop()
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()


class Bench:
    def __init__(self, drv: AsgiDriver, loop: asyncio.AbstractEventLoop, admin: dict[str, str]) -> None:
        self.drv, self.loop, self.admin = drv, loop, admin
        self.count = 0
        status, _ = drv.call(
            "POST", "/api/v1/exchanges", json={"code": "RX", "name": "replay"}, headers=admin
        )
        assert status == 201
        self.accounts = []
        for i in range(10):
            status, body = drv.call(
                "POST",
                "/api/v1/accounts",
                headers=admin,
                json={"name": f"r{i}", "initial_cash": "1000000000", "allow_short": True},
            )
            assert status == 201, body
            self.accounts.append(msgspec.json.decode(body)["id"])

    def instrument(self, candles: list, orders: int) -> str:
        """A fresh instrument with the candles, its price at the first open, and `orders` resting orders
        spread evenly over the candles' range (the same orders, by a fixed seed, for every twin)."""
        self.count += 1
        symbol = f"R{self.count}"
        status, body = self.drv.call(
            "POST",
            "/api/v1/instruments",
            headers=self.admin,
            json={
                "symbol": symbol,
                "exchange": "RX",
                "base_asset": "R",
                "quote_asset": "USD",
                "tick_size": "0.01",
                "lot_size": "1",
            },
        )
        assert status == 201, body
        status, body = self.drv.call(
            "POST",
            f"/api/v1/instruments/{symbol}/candles?timeframe=1m",
            content=candles_to_csv(candles).encode(),
            headers={**self.admin, "content-type": "text/csv"},
        )
        assert status == 201, body[:300]
        first = candles[0].open
        self._price(symbol, first)
        low, high = min(c.low for c in candles), max(c.high for c in candles)
        rng = random.Random(11)
        for i in range(orders):
            below = (low + (first - low) * Decimal(rng.random())).quantize(Decimal("0.01"))
            above = (first + (high - first) * Decimal(rng.random())).quantize(Decimal("0.01"))
            side, kind, price = [
                ("buy", "limit", below),
                ("sell", "limit", above),
                ("buy", "stop", above),
                ("sell", "stop", below),
            ][i % 4]
            if price == first:
                continue
            order = {
                "symbol": symbol,
                "side": side,
                "type": kind,
                "quantity": "1",
                "time_in_force": "gtc",
                ("limit_price" if kind == "limit" else "stop_price"): str(price),
            }
            status, body = self.drv.call(
                "POST", f"/api/v1/accounts/{self.accounts[i % 10]}/orders", json=order, headers=self.admin
            )
            assert status == 201, body
        return symbol

    def _price(self, symbol: str, price: Decimal, ts: datetime | None = None) -> int:
        body = {"price": str(price)} if ts is None else {"price": str(price), "ts": ts.isoformat()}
        status, out = self.drv.call(
            "POST", f"/api/v1/instruments/{symbol}/price", json=body, headers=self.admin
        )
        assert status == 200, out
        return msgspec.json.decode(out)["fills"]

    def replay(self, label: str, symbols: list[str], bars: int) -> None:
        from app.domain.markets import feeds
        from app.domain.markets.feed_jobs import run_feed
        from app.domain.markets.schemas import ReplayCreate

        engine = self.drv.app.state.engine

        async def go() -> tuple[float, dict]:
            async with engine.connect() as conn:
                feed = await feeds.create_replay(
                    conn, None, None, ReplayCreate(symbols=symbols, timeframe="1m"), run_here=True
                )
            started = time.perf_counter()
            result = await run_feed({"engine": engine}, feed.id)
            return time.perf_counter() - started, result

        seconds, result = self.loop.run_until_complete(go())
        assert result["status"] == "completed" and result["bars_fed"] == bars, result
        prices = result["prices_fed"]
        print(
            f"| {label} | replay job | {prices:,} | {bars:,} | {seconds:.2f} | {prices / seconds:,.0f} | "
            f"{bars / seconds:,.0f} | {result['fills']:,} |"
        )

    def post(self, label: str, symbol: str, candles: list, limit: int) -> None:
        points = [
            p
            for c in candles
            for p in bar_path(c.ts, c.open, c.high, c.low, c.close, 60, "ohlc", Decimal("0.01"))
        ][:limit]
        fills = 0
        started = time.perf_counter()
        for point in points:
            fills += self._price(symbol, point.price, point.ts)
        seconds = time.perf_counter() - started
        bars = sum(p.ends_bar for p in points)
        print(
            f"| {label} | POST .../price, one by one | {len(points):,} | {bars:,} | {seconds:.2f} | "
            f"{len(points) / seconds:,.0f} | {bars / seconds:,.0f} | {fills:,} |"
        )


if __name__ == "__main__":
    main()
