"""Shared helpers for API-level tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

from tests.integration.test_markets import make_market  # noqa: F401  (re-exported)


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def find_or_install_chromium() -> str | None:
    """Debian's Chromium for the browser tests, installed with apt-get when missing and this is root (a
    fresh machine running `make test`); None when it is neither here nor installable."""
    path = find_chromium()
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600)
        path = find_chromium()
    return path


async def make_daily_market(client, admin_headers, bars: int, seed: int) -> str:
    """A new instrument with `bars` synthetic daily candles, loaded through the CSV upload."""
    from app.domain.markets.synthetic import candles_to_csv, generate_candles

    symbol = await make_market(client, admin_headers)
    rows = generate_candles(bars=bars, seed=seed, timeframe="1d")
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles?timeframe=1d",
        content=candles_to_csv(rows).encode(),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    return symbol


async def make_account(client, headers, cash: str = "100000", allow_short: bool = False) -> str:
    resp = await client.post(
        "/api/v1/accounts", json={"name": f"acct-{uuid.uuid4().hex[:6]}", "initial_cash": cash, "allow_short": allow_short},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


async def make_risk_group(client, rh, accounts: list[str], limits: list[dict], name: str = "Desk") -> dict:
    """A risk group (a unique name starting with `name`) holding `accounts`, with `limits` created after
    them; the group as created, with its limits as created under "limits"."""
    resp = await client.post(
        "/api/v1/risk/groups", json={"name": f"{name} {uuid.uuid4().hex[:8]}"}, headers=rh
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()
    for acct in accounts:
        resp = await client.put(f"/api/v1/accounts/{acct}/risk/group", json={"group_id": group["id"]}, headers=rh)
        assert resp.status_code == 200, resp.text
    group["limits"] = []
    for limit in limits:
        resp = await client.post(f"/api/v1/risk/groups/{group['id']}/limits", json=limit, headers=rh)
        assert resp.status_code == 201, resp.text
        group["limits"].append(resp.json())
    return group


async def place(client, headers, account: str, expect: int | None = 201, **order) -> dict:
    order.setdefault("time_in_force", "gtc")
    for key in ("quantity", "limit_price", "stop_price"):
        if key in order and order[key] is not None:
            order[key] = str(order[key])
    resp = await client.post(f"/api/v1/accounts/{account}/orders", json=order, headers=headers)
    if expect is not None:
        assert resp.status_code == expect, resp.text
    return resp.json()


async def set_price(client, admin_headers, symbol: str, price: str, volume: str | None = None) -> dict:
    body = {"price": price}
    if volume is not None:
        body["volume"] = volume
    resp = await client.post(f"/api/v1/instruments/{symbol}/price", json=body, headers=admin_headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def account(client, headers, account_id: str) -> dict:
    resp = await client.get(f"/api/v1/accounts/{account_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def order(client, headers, account_id: str, order_id: str) -> dict:
    resp = await client.get(f"/api/v1/accounts/{account_id}/orders/{order_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def events(client, headers, account_id: str, order_id: str) -> list[tuple[str, str | None, str]]:
    resp = await client.get(f"/api/v1/accounts/{account_id}/orders/{order_id}/events", headers=headers)
    assert resp.status_code == 200, resp.text
    return [(e["type"], e["status_from"], e["status_to"]) for e in resp.json()["items"]]


async def positions(client, headers, account_id: str) -> dict[str, dict]:
    resp = await client.get(f"/api/v1/accounts/{account_id}/positions", headers=headers)
    assert resp.status_code == 200, resp.text
    return {p["symbol"]: p for p in resp.json()["items"]}


def D(x) -> Decimal:  # noqa: N802
    return Decimal(str(x))


async def discard_pending_jobs(queue) -> None:
    """Drop every job waiting in a SAQ queue (queued, scheduled, incomplete) with its stored data.

    The test session's queue is shared by all modules. Jobs a module queues with no worker running would
    otherwise become the first work of the next module's worker: a 1,000-run sweep left by the backtest
    tests kept test_jobs' echo job queued past its 15 s on a 2 GHz machine.
    """
    incomplete = queue.namespace("incomplete")
    job_ids = await queue.redis.zrange(incomplete, 0, -1)
    job_ids += await queue.redis.lrange(queue.namespace("queued"), 0, -1)
    names = [queue.namespace(k) for k in ("queued", "incomplete", "schedule", "active")]
    await queue.redis.delete(*names, *set(job_ids))


@asynccontextmanager
async def client_with_worker(settings, name: str, concurrency: int, *, own_loop: bool = False) -> AsyncIterator:
    """An app and a real SAQ worker of its own on a queue nobody else uses (the session `client` has none).

    The worker runs on the test's event loop, or with `own_loop` on a loop in a thread of its own: a request
    through the test client blocks the test's loop until it is answered, so a request that waits for a
    row the worker holds in an open transaction (a DELETE of a running replay) would wait for the statement
    timeout if the worker shared that loop."""
    import threading

    from litestar.testing import AsyncTestClient

    from app.lib.jobs import make_queue
    from app.lib.state import build_worker
    from app.server.app import create_app
    from tests.conftest import make_settings

    s = make_settings(queue_name=f"{settings.queue_name}-{name}-{uuid.uuid4().hex[:6]}")
    loop = asyncio.new_event_loop() if own_loop else asyncio.get_running_loop()
    queue = make_queue(s)
    worker = build_worker(queue, s, concurrency=concurrency)
    worker.SIGNALS = []

    async def run() -> None:
        await queue.connect()
        try:
            await worker.start()  # until its event is set; then it stops itself
        finally:
            await queue.disconnect()

    if own_loop:
        thread = threading.Thread(target=loop.run_until_complete, args=(run(),), name=f"worker-{name}", daemon=True)
        thread.start()
    else:
        task = asyncio.create_task(run())
    try:
        async with AsyncTestClient(app=create_app(s), timeout=60) as c:
            yield c
    finally:
        if own_loop:
            loop.call_soon_threadsafe(worker.event.set)
            await asyncio.to_thread(thread.join, 60)
            if not thread.is_alive():
                loop.close()
        else:
            await worker.stop()
            await asyncio.wait_for(task, 30)  # start() returns once stopped; run() then disconnects
