"""The client's stream against a live server: every trade update exactly once, in order, across a
connection cut mid-flow (the WebSocket goes through a proxy that drops it; orders keep coming)."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from tradedesk_client import AsyncClient, TradeUpdate

from tests.client.proxy import FaultProxy
from tests.client.test_client_live import make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_stream_resumes_after_the_connection_is_cut(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=5)
        trader = await admin.users.create(f"stream-{uuid.uuid4().hex[:8]}@example.com", "trader")
    port = int(re.search(r":(\d+)$", server.url).group(1))
    async with AsyncClient(server.url, api_key=trader.api_key) as direct:
        account = await direct.accounts.create("stream bot", "1000000")
        with FaultProxy("127.0.0.1", port) as proxy:
            async with AsyncClient(f"http://127.0.0.1:{proxy.port}", api_key=trader.api_key) as via_proxy:
                stream = via_proxy.stream([f"trade_updates:{account.id}"], yield_control=True)
                seen: list[int] = []
                subscribed = asyncio.Event()

                async def consume() -> None:
                    async for message in stream:
                        if isinstance(message, TradeUpdate):
                            seen.append(message.seq)
                        elif message.get("type") == "subscribed":
                            subscribed.set()

                consumer = asyncio.create_task(consume())
                await asyncio.wait_for(subscribed.wait(), 15)
                for batch in range(3):
                    for _ in range(15):
                        await direct.orders.place(account.id, symbol, "buy", "market", quantity=1)
                    if batch == 0:
                        proxy.set_down(True)  # the stream is cut; orders keep filling meanwhile
                    elif batch == 1:
                        await asyncio.sleep(0.3)
                        proxy.set_down(False)
                activities = [a async for a in direct.activities.iter(account.id)]
                total = activities[-1].seq
                deadline = asyncio.get_running_loop().time() + 30
                while len(seen) < total and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                stream.close()
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
    assert seen == list(range(1, total + 1)), (len(seen), total)
    assert stream.reconnects >= 1
