"""`tradedesk loadtest` against a real server: counts, statuses and the multi-account placement mode."""

from __future__ import annotations

import pytest

from app.tools.loadtest import run_load
from tests.integration.helpers import D, make_account, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_loadtest_counts_and_places_across_accounts(client, cluster, admin_headers, make_user):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    accounts = [await make_account(client, trader["headers"]) for _ in range(3)]
    url = cluster.urls[0]
    health = await run_load(url, scenario="health", concurrency=4, requests=200, warmup=0)
    assert health["requests"] == 200 and health["error_count"] == 0 and health["rps"] > 0
    lat = health["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # Two clients, three accounts: each client keeps to its own account (client i trades account i mod 3),
    # so the third account gets nothing; a shared round robin would have given it a third of the orders.
    report = await run_load(url, scenario="place-order", concurrency=2, requests=30, warmup=0,
                            headers=trader["headers"], account=",".join(accounts), symbol=symbol)
    assert report["requests"] == 30 and report["status_counts"] == {"201": 30}, report
    held = []
    for acct in accounts:
        items = (await client.get(f"/api/v1/accounts/{acct}/positions", headers=trader["headers"])).json()["items"]
        held.append(D(items[0]["quantity"]) if items else D(0))
    assert sum(held) == 30 and held[0] > 0 and held[1] > 0 and held[2] == 0, held
    bad = await run_load(url, scenario="me", concurrency=2, requests=10, warmup=0, headers={"Authorization": "Bearer x"})
    assert bad["status_counts"] == {"401": 10}
