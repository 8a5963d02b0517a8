"""Streams end to end: real API processes (granian) sharing the test database and Redis, WebSocket and
SSE clients, orders placed and prices posted through either process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import _free_port, server_env
from tests.integration.helpers import make_account, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUFFER = 50
MAX_CONNECTIONS = 5


@pytest.fixture(scope="module")
def stream_servers(settings):
    """Two API processes with small stream limits (buffer, connections, heartbeat) to test them."""
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    ports = [_free_port(), _free_port()]
    env = server_env(
        settings, STREAM_BUFFER_MESSAGES=str(BUFFER), STREAM_MAX_CONNECTIONS_PER_USER=str(MAX_CONNECTIONS),
        STREAM_HEARTBEAT_SECONDS="1",
    )
    procs = [
        subprocess.Popen([tradedesk, "serve", "--port", str(p), "--no-access-log"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        for p in ports
    ]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"API process exited: {proc.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("API process did not start in 60 s")
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/api/v1/stream"


async def connect(url: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return await websockets.connect(ws_url(url), additional_headers=headers, max_size=2**24)


async def recv(ws, timeout: float = 10.0) -> dict:
    """The next message that is not a heartbeat."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message["type"] != "heartbeat":
            return message


async def subscribe(ws, streams: list[str], since: dict | None = None) -> dict:
    body: dict = {"action": "subscribe", "streams": streams}
    if since is not None:
        body["since"] = since
    await ws.send(json.dumps(body))
    return await recv(ws)


async def trade_updates(ws, count: int, timeout: float = 15.0) -> list[dict]:
    out: list[dict] = []
    while len(out) < count:
        message = await recv(ws, timeout)
        if message["type"] == "trade_update":
            out.append(message)
    return out


async def no_more(ws, seconds: float = 0.7) -> list[dict]:
    """Messages (other than heartbeats) that arrive within `seconds`: expected to be none."""
    extra = []
    try:
        while True:
            extra.append(await recv(ws, seconds))
    except TimeoutError:
        return extra


async def _trader(client, admin_headers, make_user, cash: str = "10000000"):
    user = await make_user("trader")
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, user["headers"], cash=cash)
    return user, sym, acct


def _resting_buy(sym: str, price: str = "90") -> dict:
    return {"symbol": sym, "side": "buy", "type": "limit", "quantity": "1", "limit_price": price,
            "time_in_force": "gtc"}


async def test_fill_from_a_price_posted_to_another_process_reaches_the_subscriber(
    client, admin_headers, make_user, stream_servers
):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    ws = await connect(a, user["api_key"])
    try:
        ack = await subscribe(ws, [f"trade_updates:{acct}"])
        assert ack == {"type": "subscribed", "streams": [f"trade_updates:{acct}"]}
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            placed = await http_b.post(f"/api/v1/accounts/{acct}/orders", json=_resting_buy(sym, "95"),
                                       headers=user["headers"])
            assert placed.status_code == 201, placed.text
            new, accepted = await trade_updates(ws, 2)
            priced = await http_b.post(f"/api/v1/instruments/{sym}/price", json={"price": "94"}, headers=admin_headers)
            assert priced.status_code == 200, priced.text
        (fill,) = await trade_updates(ws, 1)
        order_id = placed.json()["id"]
        assert [m["event"] for m in (new, accepted, fill)] == ["new", "accepted", "fill"]
        assert [m["seq"] for m in (new, accepted, fill)] == [1, 2, 3]
        assert all(m["order"]["id"] == order_id and m["account_id"] == acct for m in (new, accepted, fill))
        assert new["order"]["status"] == "new" and accepted["order"]["status"] == "accepted"
        assert fill["order"]["status"] == "filled" and fill["order"]["filled_quantity"] == "1"
        assert fill["fill"]["price"] == "95" and fill["fill"]["quantity"] == "1" and fill["position_qty"] == "1"
        # The account's new state follows on the `accounts` stream of whoever subscribes to it.
        assert await no_more(ws) == []
    finally:
        await ws.close()
