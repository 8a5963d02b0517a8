"""The Python client's overhead on order placement, against raw httpx, side by side on one live server.

Each side places market orders over one keep-alive connection pool, `--concurrency` orders in flight
(one account each), in alternating rounds of `--orders` orders, so a noisy neighbour slows all alike. The
client does what a bot gets from it (an Idempotency-Key per order, the retry wrapper, decoding into typed
models with Decimals); raw httpx posts JSON and parses it with `response.json()`, once with an
Idempotency-Key header (the same server work: the library's own cost) and once without (what the server
spends on keeping idempotency keys comes on top).

    python -m benchmarks.measure_client [--orders 400] [--rounds 6] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
from tradedesk_client import AsyncClient

from benchmarks.live_server import live_server


async def _rounds(url: str, key: str, orders: int, rounds: int, concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    raw = httpx.AsyncClient(base_url=url + "/api/v1", headers=headers, timeout=30)
    code, symbol = f"CX{uuid.uuid4().hex[:6].upper()}", f"C{uuid.uuid4().hex[:6].upper()}"
    (await raw.post("/exchanges", json={"code": code, "name": "Client bench"})).raise_for_status()
    (
        await raw.post(
            "/instruments",
            json={
                "symbol": symbol,
                "exchange": code,
                "base_asset": symbol,
                "quote_asset": "USD",
                "tick_size": "0.01",
                "lot_size": "1",
            },
        )
    ).raise_for_status()
    (await raw.post(f"/instruments/{symbol}/price", json={"price": "10"})).raise_for_status()
    accounts = [
        (await raw.post("/accounts", json={"name": f"b{i}", "initial_cash": "1000000000"})).json()["id"]
        for i in range(concurrency)
    ]
    client = AsyncClient(url, api_key=key)
    body = {"symbol": symbol, "side": "buy", "type": "market", "quantity": "1"}

    async def with_client(account: str) -> None:
        order = await client.orders.place(account, symbol, "buy", "market", quantity=1)
        assert order.status == "filled"

    async def with_raw(account: str) -> None:
        resp = await raw.post(f"/accounts/{account}/orders", json=body)
        assert resp.status_code == 201 and resp.json()["status"] == "filled"

    async def with_raw_keyed(account: str) -> None:
        resp = await raw.post(
            f"/accounts/{account}/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert resp.status_code == 201 and resp.json()["status"] == "filled"

    async def timed(place) -> float:
        queue = iter(range(orders))

        async def worker(account: str) -> None:
            for _ in queue:
                await place(account)

        start = time.perf_counter()
        await asyncio.gather(*(worker(a) for a in accounts))
        return orders / (time.perf_counter() - start)

    await timed(with_client)  # warm-up: connections, caches, the account's next-order path
    await timed(with_raw_keyed)
    await timed(with_raw)
    runs = []
    for _ in range(rounds):
        runs.append((await timed(with_client), await timed(with_raw_keyed), await timed(with_raw)))
    await client.aclose()
    await raw.aclose()
    library = [c / k for c, k, _ in runs]  # the same server work (both send an Idempotency-Key)
    overall = [c / r for c, _, r in runs]  # plus what the server spends keeping idempotency keys
    return {
        "client_orders_per_s": statistics.median(c for c, _, _ in runs),
        "raw_keyed_orders_per_s": statistics.median(k for _, k, _ in runs),
        "raw_orders_per_s": statistics.median(r for _, _, r in runs),
        "client_over_raw_keyed_median": statistics.median(library),
        "client_over_raw_keyed_min": min(library),
        "client_over_raw_median": statistics.median(overall),
        "client_over_raw_min": min(overall),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with live_server(
        "client",
        RATE_LIMIT_ORDERS_PER_MINUTE="100000000",
        RATE_LIMIT_WRITE_PER_MINUTE="100000000",
        RATE_LIMIT_READ_PER_MINUTE="100000000",
    ) as (url, key):
        result = asyncio.run(_rounds(url, key, args.orders, args.rounds, args.concurrency))
    for name, value in result.items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
