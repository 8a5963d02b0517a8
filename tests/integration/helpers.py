"""Shared helpers for API-level tests."""

from __future__ import annotations

import uuid
from decimal import Decimal

from tests.integration.test_markets import make_market  # noqa: F401  (re-exported)


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
