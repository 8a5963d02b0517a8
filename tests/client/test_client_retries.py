"""The client's retries against a live server: a rate limit hit on purpose, an answer lost after the server
committed, and the database going away. In each case every logical order is placed exactly once."""

from __future__ import annotations

import asyncio
import re
import uuid
from decimal import Decimal

import httpx
import pytest
from tradedesk_client import AsyncClient, RetryPolicy, ServiceUnavailable

from tests.client.proxy import FaultProxy
from tests.client.test_client_live import make_market
from tests.live_server import start_server, stop_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


class RecordingTransport(httpx.AsyncHTTPTransport):
    """Counts what the server answered on each attempt (the client's own view stays the final answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []
        self.idempotency_keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.idempotency_keys.append(request.headers.get("idempotency-key"))
        response = await super().handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


async def _trader_account(url: str, admin_key: str, symbol: str | None = None) -> tuple[str, str, str]:
    async with AsyncClient(url, api_key=admin_key) as admin:
        symbol = symbol or await make_market(admin, bars=5)
        user = await admin.users.create(f"retry-{uuid.uuid4().hex[:8]}@example.com", "trader")
    async with AsyncClient(url, api_key=user.api_key) as td:
        account = await td.accounts.create("retry bot", "1000000")
    return user.api_key, str(account.id), symbol


async def test_rate_limited_orders_are_retried_after_retry_after(settings, tmp_path):
    live = start_server(
        settings,
        tmp_path / "server.log",
        RATE_LIMIT_ORDERS_PER_MINUTE="3",
        RATE_LIMIT_WINDOW_SECONDS="2",
        TRADEDESK_REDIS_PREFIX=f"rl-{uuid.uuid4().hex[:8]}",
    )
    try:
        key, account_id, symbol = await _trader_account(live.url, live.admin_key)
        transport = RecordingTransport()
        async with AsyncClient(
            live.url, api_key=key, transport=transport, retry=RetryPolicy(attempts=10, max_retry_after=3)
        ) as td:
            placed = [
                await td.orders.place(account_id, symbol, "buy", "market", quantity=1) for _ in range(8)
            ]
            assert 429 in transport.statuses, transport.statuses
            stored = [o async for o in td.orders.iter(account_id)]
        assert sorted(o.id for o in stored) == sorted(o.id for o in placed)
        assert all(o.status == "filled" for o in placed)
    finally:
        stop_server(live.proc)


async def test_a_lost_answer_is_retried_without_a_second_order(server):
    key, account_id, symbol = await _trader_account(server.url, server.admin_key)
    port = int(re.search(r":(\d+)$", server.url).group(1))
    with FaultProxy("127.0.0.1", port) as proxy:
        transport = RecordingTransport()
        async with AsyncClient(
            f"http://127.0.0.1:{proxy.port}",
            api_key=key,
            transport=transport,
            retry=RetryPolicy(attempts=6, backoff=0.05),
        ) as td:
            proxy.drop_responses = 2  # the first two answers die on the way back; the orders were placed
            order = await td.orders.place(account_id, symbol, "buy", "market", quantity=7)
            assert proxy.dropped == 2
            orders = [o async for o in td.orders.iter(account_id)]
    assert [o.id for o in orders] == [order.id] and order.filled_quantity == Decimal("7")
    writes = [k for k in transport.idempotency_keys if k]
    assert len(writes) == 3 and len(set(writes)) == 1  # three attempts, one logical submit


async def test_database_outage_answers_503_and_the_retry_places_once(settings, tmp_path):
    url = settings.database_url
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()
    with FaultProxy(host, int(port)) as db_proxy:
        proxied = url.replace(f"@{host}:{port}/", f"@127.0.0.1:{db_proxy.port}/")
        live = start_server(settings, tmp_path / "server.log", DATABASE_URL=proxied, DB_POOL_TIMEOUT="1")
        try:
            key, account_id, symbol = await _trader_account(live.url, live.admin_key)
            transport = RecordingTransport()
            async with AsyncClient(
                live.url,
                api_key=key,
                transport=transport,
                retry=RetryPolicy(attempts=12, backoff=0.2, max_backoff=1.0),
            ) as td:
                db_proxy.set_down(True)
                with pytest.raises(ServiceUnavailable):  # a client told not to retry sees the 503 itself
                    async with AsyncClient(live.url, api_key=key, retry=RetryPolicy(attempts=1)) as once:
                        await once.orders.place(account_id, symbol, "buy", "market", quantity=2)

                async def recover() -> None:
                    await asyncio.sleep(1.5)
                    db_proxy.set_down(False)

                recovery = asyncio.create_task(recover())
                order = await td.orders.place(account_id, symbol, "buy", "market", quantity=3)
                await recovery
                assert 503 in transport.statuses, transport.statuses
                orders = [o async for o in td.orders.iter(account_id)]
            assert [o.id for o in orders] == [order.id] and order.status == "filled"
        finally:
            stop_server(live.proc)
