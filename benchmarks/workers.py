"""Shared set-up of the sweep and walk-forward benchmarks: an instrument with ten years of daily candles,
and SAQ workers running in the benchmark's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.domain.markets.synthetic import candles_to_csv, generate_candles


@contextmanager
def in_process_workers(
    loop: asyncio.AbstractEventLoop, settings: Any, workers: int, concurrency: int
) -> Iterator[None]:
    from app.lib.jobs import make_queue
    from app.lib.state import build_worker
    from app.server.wiring import wire

    wire()

    async def start():
        queue = make_queue(settings)
        await queue.connect()
        started = [build_worker(queue, settings, concurrency=concurrency) for _ in range(workers)]
        for w in started:
            w.SIGNALS = []
        tasks = [asyncio.create_task(w.start()) for w in started]
        return queue, started, tasks

    queue, started, tasks = loop.run_until_complete(start())
    try:
        yield
    finally:

        async def stop():
            for w in started:
                await w.stop()
            for t in tasks:
                t.cancel()
            await queue.disconnect()

        loop.run_until_complete(stop())


def daily_instrument(driver: Any, admin: dict[str, str], exchange: str, symbol: str, seed: int) -> None:
    """An exchange, an instrument on it and 2,520 synthetic daily candles, through the API."""
    status, body = driver.call(
        "POST", "/api/v1/exchanges", json={"code": exchange, "name": exchange}, headers=admin
    )
    assert status == 201, body
    status, body = driver.call(
        "POST",
        "/api/v1/instruments",
        json={
            "symbol": symbol,
            "exchange": exchange,
            "base_asset": symbol[:1],
            "quote_asset": "USD",
            "tick_size": "0.01",
            "lot_size": "1",
            "min_quantity": "1",
        },
        headers=admin,
    )
    assert status == 201, body
    csv = candles_to_csv(generate_candles(bars=2_520, seed=seed, timeframe="1d"))
    status, body = driver.call(
        "POST",
        f"/api/v1/instruments/{symbol}/candles?timeframe=1d",
        content=csv.encode(),
        headers={**admin, "content-type": "text/csv"},
    )
    assert status == 201, body
