"""Streams end to end: real API processes (granian) sharing the test database and Redis, WebSocket and
SSE clients, orders placed and prices posted through either process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import websockets

from tests.conftest import api_servers
from tests.integration.helpers import make_account, make_market, make_risk_group

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUFFER = 50
MAX_CONNECTIONS = 5


@pytest.fixture(scope="module")
def stream_servers(settings):
    """Two API processes with small stream limits (buffer, connections, heartbeat) to test them."""
    with api_servers(
        settings,
        STREAM_BUFFER_MESSAGES=str(BUFFER),
        STREAM_MAX_CONNECTIONS_PER_USER=str(MAX_CONNECTIONS),
        STREAM_HEARTBEAT_SECONDS="1",
    ) as (urls, _):
        yield urls


@pytest.fixture(scope="module")
def uvicorn_stream_server(settings):
    """One API process under `tradedesk serve --server uvicorn` (the stream-serving option), same settings."""
    with api_servers(
        settings,
        count=1,
        servers=("uvicorn",),
        STREAM_BUFFER_MESSAGES=str(BUFFER),
        STREAM_MAX_CONNECTIONS_PER_USER=str(MAX_CONNECTIONS),
        STREAM_HEARTBEAT_SECONDS="1",
    ) as (urls, _):
        yield urls[0]


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/api/v1/stream"


async def connect(url: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return await websockets.connect(ws_url(url), additional_headers=headers, max_size=2**24)


async def recv(ws, wait: float = 10.0) -> dict:
    """The next message that is not a heartbeat."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), wait))
        if message["type"] != "heartbeat":
            return message


async def subscribe(ws, streams: list[str], since: dict | None = None) -> dict:
    body: dict = {"action": "subscribe", "streams": streams}
    if since is not None:
        body["since"] = since
    await ws.send(json.dumps(body))
    return await recv(ws)


async def trade_updates(ws, count: int, wait: float = 15.0) -> list[dict]:
    out: list[dict] = []
    while len(out) < count:
        message = await recv(ws, wait)
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
    return {
        "symbol": sym,
        "side": "buy",
        "type": "limit",
        "quantity": "1",
        "limit_price": price,
        "time_in_force": "gtc",
    }


async def test_fill_from_a_price_posted_to_another_process_reaches_the_subscriber(
    client, admin_headers, make_user, stream_servers
):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    ws = await connect(a, user["api_key"])
    try:
        ack = await subscribe(ws, [f"trade_updates:{acct}"])
        assert ack == {"type": "subscribed", "streams": [f"trade_updates:{acct}"], "seqs": {acct: 0}}
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            placed = await http_b.post(
                f"/api/v1/accounts/{acct}/orders", json=_resting_buy(sym, "95"), headers=user["headers"]
            )
            assert placed.status_code == 201, placed.text
            new, accepted = await trade_updates(ws, 2)
            priced = await http_b.post(
                f"/api/v1/instruments/{sym}/price", json={"price": "94"}, headers=admin_headers
            )
            assert priced.status_code == 200, priced.text
        (fill,) = await trade_updates(ws, 1)
        order_id = placed.json()["id"]
        assert [m["event"] for m in (new, accepted, fill)] == ["new", "accepted", "fill"]
        assert [m["seq"] for m in (new, accepted, fill)] == [1, 2, 3]
        assert all(m["order"]["id"] == order_id and m["account_id"] == acct for m in (new, accepted, fill))
        assert new["order"]["status"] == "new" and accepted["order"]["status"] == "accepted"
        assert fill["order"]["status"] == "filled" and fill["order"]["filled_quantity"] == "1"
        assert (
            fill["fill"]["price"] == "95" and fill["fill"]["quantity"] == "1" and fill["position_qty"] == "1"
        )
        # The account's new state follows on the `accounts` stream of whoever subscribes to it.
        assert await no_more(ws) == []
    finally:
        await ws.close()


async def _place_resting(http: httpx.AsyncClient, headers: dict, acct: str, sym: str, n: int) -> None:
    for _ in range(n):
        resp = await http.post(f"/api/v1/accounts/{acct}/orders", json=_resting_buy(sym), headers=headers)
        assert resp.status_code == 201, resp.text


async def _last_seq(http: httpx.AsyncClient, headers: dict, acct: str) -> int:
    after, last = 0, 0
    while True:
        page = (
            await http.get(
                f"/api/v1/accounts/{acct}/activities",
                params={"after_seq": after, "limit": 500},
                headers=headers,
            )
        ).json()
        if page["items"]:
            last = page["items"][-1]["seq"]
        if page["next_after_seq"] is None:
            return last
        after = page["next_after_seq"]


async def test_resume_after_a_disconnect_replays_exactly_the_missed_events(
    client, admin_headers, make_user, stream_servers
):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
        await _place_resting(http_b, user["headers"], acct, sym, 3)
        ws = await connect(a, user["api_key"])
        await subscribe(ws, [f"trade_updates:{acct}"], since={acct: 0})
        seen = await trade_updates(ws, 6)
        assert [m["seq"] for m in seen] == list(range(1, 7))
        await ws.close()
        # 50 resting orders while disconnected: 100 events (new, accepted).
        await _place_resting(http_b, user["headers"], acct, sym, 50)
        ws = await connect(a, user["api_key"])
        try:
            await subscribe(ws, [f"trade_updates:{acct}"], since={acct: 6})
            missed = await trade_updates(ws, 100)
            assert [m["seq"] for m in missed] == list(range(7, 107))
            assert [m["event"] for m in missed[:2]] == ["new", "accepted"]
            await _place_resting(http_b, user["headers"], acct, sym, 1)  # then live, without a gap
            live = await trade_updates(ws, 2)
            assert [m["seq"] for m in live] == [107, 108]
            assert await no_more(ws) == []
        finally:
            await ws.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_resume_while_events_commit_during_the_hand_over_has_no_gap_and_no_duplicate(
    client, admin_headers, make_user, stream_servers, seed
):
    """Writers on both processes keep committing while the client resumes from a random seq, at a random
    moment: the client must end up with every seq from there on, once, in order."""
    rng = random.Random(seed)
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with (
        httpx.AsyncClient(base_url=a, timeout=10) as http_a,
        httpx.AsyncClient(base_url=b, timeout=10) as http_b,
    ):
        await _place_resting(http_b, user["headers"], acct, sym, rng.randint(20, 60))
        stop = asyncio.Event()

        async def writer(http: httpx.AsyncClient) -> None:
            while not stop.is_set():
                await _place_resting(http, user["headers"], acct, sym, 1)
                await asyncio.sleep(rng.random() * 0.01)

        writers = [asyncio.create_task(writer(http_a)), asyncio.create_task(writer(http_b))]
        await asyncio.sleep(rng.random() * 0.3)
        since = rng.randint(0, await _last_seq(http_a, user["headers"], acct))
        ws = await connect(rng.choice([a, b]), user["api_key"])
        try:
            await subscribe(ws, [f"trade_updates:{acct}"], since={acct: since})
            await asyncio.sleep(0.3 + rng.random() * 0.5)
            stop.set()
            await asyncio.gather(*writers)
            final = await _last_seq(http_a, user["headers"], acct)
            received = await trade_updates(ws, final - since, wait=20)
            assert [m["seq"] for m in received] == list(range(since + 1, final + 1))
            assert await no_more(ws, 0.5) == []
        finally:
            stop.set()
            await ws.close()


async def test_sse_resumes_from_last_event_id(client, admin_headers, make_user, stream_servers):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
        await _place_resting(http_b, user["headers"], acct, sym, 5)  # seq 1..10
        async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
            headers = {**user["headers"], "Last-Event-ID": "4"}
            async with http_a.stream("GET", f"/api/v1/accounts/{acct}/stream", headers=headers) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                got: list[tuple[int, dict]] = []
                event_id = None
                lines = resp.aiter_lines()
                await _place_resting(http_b, user["headers"], acct, sym, 1)  # live: seq 11, 12
                while len(got) < 8:
                    line = await asyncio.wait_for(anext(lines), 10)
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("data:"):
                        got.append((event_id, json.loads(line[5:].strip())))
        assert [i for i, _ in got] == list(range(5, 13))
        assert all(m["seq"] == i and m["type"] == "trade_update" for i, m in got)
        # Unknown and foreign accounts are the same 404; a Last-Event-ID ahead of the log is refused.
        other = await make_user("trader")
        async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
            foreign = await http_a.get(f"/api/v1/accounts/{acct}/stream", headers=other["headers"])
            unknown = await http_a.get(f"/api/v1/accounts/{uuid.uuid4()}/stream", headers=other["headers"])
            assert foreign.status_code == unknown.status_code == 404
            assert foreign.json()["detail"] == unknown.json()["detail"]
            ahead = await http_a.get(
                f"/api/v1/accounts/{acct}/stream", headers={**user["headers"], "Last-Event-ID": "999999"}
            )
            assert ahead.status_code == 409 and ahead.json()["type"].endswith("/invalid-since")
            for loose in ("+5", "5_0", "1.5", "0x10", "-0"):  # digits only, as the seq is written
                bad = await http_a.get(
                    f"/api/v1/accounts/{acct}/stream", headers={**user["headers"], "Last-Event-ID": loose}
                )
                assert bad.status_code == 400 and bad.json()["type"].endswith("/invalid-last-event-id"), loose
                assert [e["field"] for e in bad.json()["errors"]] == ["Last-Event-ID"], loose


async def test_a_uvicorn_process_serves_resume_live_sse_heartbeats_and_close_codes(
    client, admin_headers, make_user, stream_servers, uvicorn_stream_server
):
    """`serve --server uvicorn` (docs/STREAMING.md, Deployment): orders go to a granian process, the
    streams come from the uvicorn one, with the same protocol."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    _, b = stream_servers
    u = uvicorn_stream_server
    async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
        await _place_resting(http_b, user["headers"], acct, sym, 3)  # seq 1..6, while nobody listens
        ws = await connect(u, user["api_key"])
        try:
            ack = await subscribe(ws, [f"trade_updates:{acct}"], since={acct: 2})
            assert ack == {"type": "subscribed", "streams": [f"trade_updates:{acct}"], "seqs": {acct: 2}}
            replayed = await trade_updates(ws, 4)
            await _place_resting(http_b, user["headers"], acct, sym, 1)  # live: seq 7, 8
            live = await trade_updates(ws, 2)
            assert [m["seq"] for m in replayed + live] == [3, 4, 5, 6, 7, 8]
            assert [m["event"] for m in live] == ["new", "accepted"]
            beat = json.loads(await asyncio.wait_for(ws.recv(), 5))  # nothing else is due: a heartbeat
            assert beat["type"] == "heartbeat"
            assert await no_more(ws) == []
        finally:
            await ws.close()
        async with httpx.AsyncClient(base_url=u, timeout=10) as http_u:
            headers = {**user["headers"], "Last-Event-ID": "6"}
            async with http_u.stream("GET", f"/api/v1/accounts/{acct}/stream", headers=headers) as resp:
                assert resp.status_code == 200
                lines = resp.aiter_lines()
                ids = []
                while len(ids) < 2:
                    line = await asyncio.wait_for(anext(lines), 10)
                    if line.startswith("id:"):
                        ids.append(int(line[3:].strip()))
                assert ids == [7, 8]
    bad = await connect(u, "td_not_a_key_0123456789")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(bad.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_batching_connection_gets_arrays_of_the_same_messages_in_the_same_order(
    client, admin_headers, make_user, stream_servers
):
    """`?batch=true` (docs/STREAMING.md): every frame is a JSON array of server messages; read one after
    the other they are exactly what a connection without it gets."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
        await _place_resting(http_b, user["headers"], acct, sym, 20)  # seq 1..40
        ws = await websockets.connect(
            ws_url(a) + "?batch=true", additional_headers={"Authorization": f"Bearer {user['api_key']}"}
        )
        try:
            await ws.send(
                json.dumps({"action": "subscribe", "streams": [f"trade_updates:{acct}"], "since": {acct: 0}})
            )
            frames: list[list[dict]] = []
            messages: list[dict] = []
            while len([m for m in messages if m["type"] == "trade_update"]) < 40:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert isinstance(frame, list) and frame
                frames.append(frame)
                messages.extend(frame)
            await _place_resting(http_b, user["headers"], acct, sym, 1)  # live: seq 41, 42
            while len([m for m in messages if m["type"] == "trade_update"]) < 42:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert isinstance(frame, list) and frame
                messages.extend(frame)
        finally:
            await ws.close()
    messages = [m for m in messages if m["type"] != "heartbeat"]
    assert messages[0] == {"type": "subscribed", "streams": [f"trade_updates:{acct}"], "seqs": {acct: 0}}
    assert [m["seq"] for m in messages[1:]] == list(range(1, 43))
    assert len(frames) < 40  # the replay shares frames


async def test_activities_pages_equal_the_stream(client, admin_headers, make_user, stream_servers):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    ws = await connect(a, user["api_key"])
    try:
        await subscribe(ws, ["trade_updates"])
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            await _place_resting(http_b, user["headers"], acct, sym, 4)
            market = {"symbol": sym, "side": "buy", "type": "market", "quantity": "2", "time_in_force": "gtc"}
            assert (
                await http_b.post(f"/api/v1/accounts/{acct}/orders", json=market, headers=user["headers"])
            ).status_code == 201
            listed = (await http_b.get(f"/api/v1/accounts/{acct}/orders", headers=user["headers"])).json()[
                "items"
            ]
            resting = [o for o in listed if o["status"] == "accepted"][0]
            assert (
                await http_b.delete(
                    f"/api/v1/accounts/{acct}/orders/{resting['id']}", headers=user["headers"]
                )
            ).status_code == 200
        streamed = await trade_updates(ws, 4 * 2 + 3 + 1)
        pages, after = [], 0
        while after is not None:
            page = (
                await client.get(
                    f"/api/v1/accounts/{acct}/activities",
                    params={"after_seq": after, "limit": 5},
                    headers=user["headers"],
                )
            ).json()
            pages.extend(page["items"])
            after = page["next_after_seq"]
        assert pages == streamed
        assert [m["event"] for m in streamed[-4:]] == ["new", "accepted", "fill", "canceled"]
        assert streamed[-1]["order"]["status"] == "canceled"
    finally:
        await ws.close()


async def _closed_with(ws, wait: float = 10.0) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), wait)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else -1


async def test_bad_key_and_missing_auth_close_4401_and_first_message_auth_works(
    client, admin_headers, make_user, stream_servers
):
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, _ = stream_servers
    ws = await connect(a, "td_not_a_key")
    assert await _closed_with(ws) == 4401
    ws = await connect(a, None)
    await ws.send(json.dumps({"action": "auth", "key": "td_not_a_key"}))
    assert await _closed_with(ws) == 4401
    ws = await connect(a, None)
    await ws.send(json.dumps({"action": "subscribe", "streams": ["trade_updates"]}))  # not an auth message
    assert await _closed_with(ws) == 4401
    ws = await connect(a, None)
    started = time.monotonic()
    assert await _closed_with(ws, 10) == 4401  # nothing sent: closed after the 5 s auth window
    assert 4.5 < time.monotonic() - started < 8
    ws = await connect(a, None)
    try:
        await ws.send(json.dumps({"action": "auth", "key": user["api_key"]}))
        assert (await subscribe(ws, [f"trade_updates:{acct}"]))["type"] == "subscribed"
    finally:
        await ws.close()


async def test_every_stream_name_is_authorised_like_rest(client, admin_headers, make_user, stream_servers):
    owner, sym, acct = await _trader(client, admin_headers, make_user)
    intruder = await make_user("trader")
    risk = await make_user("risk_manager")
    a, b = stream_servers
    ws = await connect(a, intruder["api_key"])
    watcher = await connect(b, risk["api_key"])
    try:
        foreign = await subscribe(ws, [f"trade_updates:{acct}"])
        unknown_id = str(uuid.uuid4())
        unknown = await subscribe(ws, [f"trade_updates:{unknown_id}"])
        assert foreign["type"] == unknown["type"] == "error"
        assert foreign["code"] == unknown["code"] == "unknown-stream"
        assert foreign["message"].replace(acct, "X") == unknown["message"].replace(unknown_id, "X")
        resumed = await subscribe(ws, ["trade_updates"], since={acct: 0})
        resumed_unknown = await subscribe(ws, ["trade_updates"], since={unknown_id: 0})
        assert resumed["code"] == resumed_unknown["code"] == "unknown-stream"
        for bad in ["nope", "prices:NOSUCH", f"bars:{sym}:7m", "trade_updates:", "bars:NOSUCH:1d"]:
            assert (await subscribe(ws, [bad]))["code"] == "unknown-stream", bad
        # A binary frame is answered as such, and the connection stays usable.
        await ws.send(json.dumps({"action": "subscribe", "streams": ["accounts"]}).encode())
        binary = await recv(ws)
        assert binary["type"] == "error" and binary["code"] == "invalid-message"
        assert "binary" in binary["message"]
        # A name given many times is one stream (the limit counts streams, not names).
        repeated = await subscribe(ws, ["accounts"] * 201)
        assert repeated["type"] == "subscribed" and repeated["streams"] == ["accounts"], repeated
        # Everything the intruder may subscribe to carries nothing of the owner's account.
        ok = await subscribe(ws, ["trade_updates", "accounts", "risk"])
        assert ok["type"] == "subscribed" and ok["streams"] == ["accounts", "risk", "trade_updates"]
        assert isinstance(ok["seqs"], dict)  # where each readable account's trade updates stand
        assert (await subscribe(watcher, ["trade_updates", "accounts"]))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            await _place_resting(http_b, owner["headers"], acct, sym, 2)
            act = await http_b.get(f"/api/v1/accounts/{acct}/activities", headers=intruder["headers"])
            assert act.status_code == 404
        # A risk manager reads every account: the four events and the account updates arrive there.
        seen = [await recv(watcher) for _ in range(6)]
        assert sorted(m["type"] for m in seen) == ["account", "account"] + ["trade_update"] * 4
        assert all(m["account_id"] == acct for m in seen)
        assert await no_more(ws) == []
    finally:
        await ws.close()
        await watcher.close()


async def test_sse_clients_that_go_away_give_their_connection_back(
    client, admin_headers, make_user, stream_servers
):
    # Twice the connection limit of SSE streams opened and dropped, some at once, some after their first
    # event: every one gives its slot back, so the user may still connect (before, a dropped SSE response
    # kept its slot, refreshed by every heartbeat, and the user was locked out with 4429 on every process).
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
        await _place_resting(http_a, user["headers"], acct, sym, 1)
        for i in range(2 * MAX_CONNECTIONS):
            headers = {**user["headers"], "Last-Event-ID": "0"} if i % 2 else user["headers"]
            async with httpx.AsyncClient(base_url=b if i % 2 else a, timeout=10) as http:
                async with http.stream("GET", f"/api/v1/accounts/{acct}/stream", headers=headers) as resp:
                    assert resp.status_code == 200, i
                    if i % 2:
                        await asyncio.wait_for(anext(resp.aiter_lines()), 10)
    sockets = []
    try:
        for i in range(MAX_CONNECTIONS):
            for _ in range(30):  # the servers notice the disconnects within moments
                ws = await connect(a if i % 2 else b, user["api_key"])
                try:
                    if (await subscribe(ws, ["accounts"])).get("type") == "subscribed":
                        break
                except websockets.ConnectionClosed:
                    pass  # 4429: a slot not given back (yet)
                await ws.close()
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"connection {i + 1} of {MAX_CONNECTIONS} refused: slots not given back")
            sockets.append(ws)
    finally:
        for ws in sockets:
            await ws.close()


async def test_connection_limit_per_user_spans_processes(client, make_user, stream_servers):
    user = await make_user("trader")
    a, b = stream_servers
    sockets = []
    try:
        for i in range(MAX_CONNECTIONS):
            ws = await connect(a if i % 2 else b, user["api_key"])
            assert (await subscribe(ws, ["trade_updates"]))["type"] == "subscribed"
            sockets.append(ws)
        extra = await connect(a, user["api_key"])
        assert await _closed_with(extra) == 4429
        await sockets.pop().close()
        await asyncio.sleep(0.3)
        again = await connect(b, user["api_key"])
        sockets.append(again)
        assert (await subscribe(again, ["accounts"]))["type"] == "subscribed"
    finally:
        for ws in sockets:
            await ws.close()


def _raw_websocket(url: str, key: str, first_message: bytes) -> socket.socket:
    """A WebSocket client that never reads (tiny receive buffer): the slowest possible consumer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0], response
    mask = os.urandom(4)
    frame = (
        bytes([0x81, 0x80 | len(first_message)])
        + mask
        + bytes(c ^ mask[i % 4] for i, c in enumerate(first_message))
    )
    sock.sendall(frame)
    return sock


def _overflow_closes(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('tradedesk_stream_closed_total{reason="overflow"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_consumer_that_never_reads_is_closed_4008_and_orders_keep_their_pace(
    client, admin_headers, make_user, stream_servers
):
    """The client stops reading; once what the kernel buffers and its STREAM_BUFFER_MESSAGES are full,
    the server closes it with 4008. Placement meanwhile keeps its pace: publishing never waits on it."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, _ = stream_servers
    async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:

        async def cycle(n: int) -> float:
            """n resting buys, then a price that fills them all: 3n trade_updates and n+1 account updates.
            Returns the mean placement time."""
            started = time.perf_counter()
            await _place_resting(http_a, user["headers"], acct, sym, n)
            elapsed = (time.perf_counter() - started) / n
            resp = await http_a.post(
                f"/api/v1/instruments/{sym}/price", json={"price": "89"}, headers=admin_headers
            )
            assert resp.json()["fills"] == n
            await http_a.post(
                f"/api/v1/instruments/{sym}/price", json={"price": "100"}, headers=admin_headers
            )
            return elapsed

        subscribe_frame = json.dumps(
            {"action": "subscribe", "streams": ["trade_updates", "accounts"]}
        ).encode()
        # During the baseline a consumer that keeps up (reading raw bytes), so that the baseline publishes
        # what the later phases publish: with nobody subscribed nothing would be built or sent.
        healthy = _raw_websocket(a, user["api_key"], subscribe_frame)
        healthy.settimeout(10)
        acked = b""
        while b'"subscribed"' not in acked:
            acked += healthy.recv(1 << 16)
        healthy.setblocking(False)

        async def keep_reading() -> None:
            loop = asyncio.get_running_loop()
            while await loop.sock_recv(healthy, 1 << 16):
                pass

        reading = asyncio.create_task(keep_reading())
        try:
            baseline = await cycle(100)
        finally:
            reading.cancel()
            healthy.close()
        closes_before = _overflow_closes((await http_a.get("/metrics")).text)
        sock = _raw_websocket(a, user["api_key"], subscribe_frame)
        try:
            paces = []
            for _ in range(12):  # at most ~14,000 messages (~9 MB)
                paces.append(await cycle(300))
                if _overflow_closes((await http_a.get("/metrics")).text) > closes_before:
                    break
            else:
                pytest.fail("the stuck consumer was never closed")
            assert max(paces) < baseline * 1.5 + 0.002, (baseline, paces)
            # What reached the socket ends with a close frame carrying 4008.
            sock.setblocking(False)
            data = b""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(1 << 16)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                if not chunk:
                    break
                data += chunk
            close_at = data.rfind(b"\x88")
            assert close_at >= 0, data[-200:]
            assert int.from_bytes(data[close_at + 2 : close_at + 4], "big") == 4008, data[
                close_at : close_at + 40
            ]
        finally:
            sock.close()


async def test_prices_bars_accounts_and_risk_streams(client, admin_headers, make_user, stream_servers):
    user, sym, acct = await _trader(client, admin_headers, make_user, cash="100000")
    a, b = stream_servers
    ws = await connect(a, user["api_key"])
    try:
        ack = await subscribe(ws, [f"prices:{sym}", f"bars:{sym}:1d", "accounts", "risk"])
        assert ack["streams"] == sorted(["accounts", f"bars:{sym}:1d", f"prices:{sym}", "risk"])
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            assert (
                await http_b.post(
                    f"/api/v1/instruments/{sym}/price", json={"price": "101"}, headers=admin_headers
                )
            ).status_code == 200
            price = await recv(ws)
            assert price["type"] == "price" and price["symbol"] == sym and price["price"] == "101"
            candle = {
                "ts": "2030-01-02T00:00:00Z",
                "open": "100",
                "high": "103",
                "low": "99",
                "close": "102",
                "volume": "1000",
            }
            resp = await http_b.post(
                f"/api/v1/instruments/{sym}/candles",
                json={"timeframe": "1d", "candles": [candle]},
                headers=admin_headers,
            )
            assert resp.status_code in (200, 201), resp.text
            got = {m["type"]: m for m in [await recv(ws), await recv(ws)]}  # the bar and its close as a price
            assert got["bar"] == {
                "type": "bar",
                "symbol": sym,
                "timeframe": "1d",
                "ts": "2030-01-02T00:00:00Z",
                "open": "100",
                "high": "103",
                "low": "99",
                "close": "102",
                "volume": "1000",
            }
            assert got["price"]["price"] == "102"
            # A buy: the account's new cash and buying power on `accounts`.
            market = {
                "symbol": sym,
                "side": "buy",
                "type": "market",
                "quantity": "10",
                "time_in_force": "gtc",
            }
            assert (
                await http_b.post(f"/api/v1/accounts/{acct}/orders", json=market, headers=user["headers"])
            ).status_code == 201
            account = await recv(ws)
            rest = (await http_b.get(f"/api/v1/accounts/{acct}", headers=user["headers"])).json()
            assert account["type"] == "account" and account["account_id"] == acct
            for field in ("cash", "equity", "buying_power", "reserved_cash", "realized_pnl", "trading_state"):
                assert account[field] == rest[field], field
            # A pre-trade breach: the recorded violation on `risk`.
            limit = await http_b.post(
                f"/api/v1/accounts/{acct}/risk/limits",
                json={"limit_type": "max_order_quantity", "value": "5"},
                headers=admin_headers,
            )
            assert limit.status_code == 201, limit.text
            denied = await http_b.post(
                f"/api/v1/accounts/{acct}/orders", json=market, headers=user["headers"]
            )
            assert denied.status_code == 422
            violation = await recv(ws)
            assert violation["type"] == "violation" and violation["account_id"] == acct
            assert (
                violation["data"]["limit_type"] == "max_order_quantity"
                and violation["data"]["phase"] == "pre_trade"
            )
            listed = (
                await http_b.get(f"/api/v1/accounts/{acct}/risk/violations", headers=user["headers"])
            ).json()
            assert listed["items"][0]["id"] == violation["data"]["id"]
            # A halt: the account's trading state on `accounts`.
            halted = await http_b.put(
                f"/api/v1/accounts/{acct}/trading-state",
                json={"state": "halted", "reason": "test"},
                headers=admin_headers,
            )
            assert halted.status_code == 200, halted.text
            state = await recv(ws)
            assert state["type"] == "account" and state["trading_state"] == "halted"
        assert await no_more(ws) == []
    finally:
        await ws.close()


async def test_trade_updates_covers_accounts_created_later_and_unsubscribe_stops_it(
    client, admin_headers, make_user, stream_servers
):
    user, sym, first = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    ws = await connect(a, user["api_key"])
    try:
        assert (await subscribe(ws, ["trade_updates", f"prices:{sym}"]))["type"] == "subscribed"
        later = await make_account(client, user["headers"], cash="100000")  # created after the subscribe
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            await _place_resting(http_b, user["headers"], later, sym, 1)
            got = await trade_updates(ws, 2)
            assert [(m["account_id"], m["seq"]) for m in got] == [(later, 1), (later, 2)]
            await ws.send(json.dumps({"action": "unsubscribe", "streams": ["trade_updates"]}))
            assert await recv(ws) == {"type": "subscribed", "streams": [f"prices:{sym}"], "seqs": {}}
            await _place_resting(http_b, user["headers"], first, sym, 1)
            assert await no_more(ws) == []
            await ws.send(json.dumps({"action": "dance"}))
            assert (await recv(ws))["code"] == "invalid-message"
            await ws.send("not json")
            assert (await recv(ws))["code"] == "invalid-message"
    finally:
        await ws.close()


async def test_post_trade_alerts_and_violations_reach_the_risk_stream_of_owner_and_risk_manager(
    client, admin_headers, make_user, stream_servers
):
    user, sym, acct = await _trader(client, admin_headers, make_user, cash="100000")
    risk = await make_user("risk_manager")
    a, b = stream_servers
    mine, watcher = await connect(a, user["api_key"]), await connect(b, risk["api_key"])
    try:
        for ws in (mine, watcher):
            assert (await subscribe(ws, ["risk"]))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
            limit = await http_b.post(
                f"/api/v1/accounts/{acct}/risk/limits",
                json={"limit_type": "max_gross_exposure", "value": "1000"},
                headers=admin_headers,
            )
            assert limit.status_code == 201, limit.text
            market = {"symbol": sym, "side": "buy", "type": "market", "quantity": "9", "time_in_force": "gtc"}
            assert (
                await http_b.post(f"/api/v1/accounts/{acct}/orders", json=market, headers=user["headers"])
            ).status_code == 201  # 900 of 1000: 90%
            checked = await http_b.post(f"/api/v1/accounts/{acct}/risk/monitor", headers=user["headers"])
            assert checked.status_code == 200, checked.text
            (alert,) = checked.json()["alerts"]
        for ws in (mine, watcher):
            message = await recv(ws)
            assert message["type"] == "risk_alert" and message["account_id"] == acct
            assert message["data"]["id"] == alert["id"] and message["data"]["severity"] == "warning"
    finally:
        await mine.close()
        await watcher.close()


async def test_a_group_alert_reaches_the_risk_stream_of_risk_managers_only(
    client, admin_headers, make_user, stream_servers
):
    """A price posted through one process takes a group past its warning line; the risk manager
    subscribed to `risk` on the other process gets the `group_risk_alert`, the trader who owns the
    group's accounts does not (a group has no owner)."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    risk = await make_user("risk_manager")
    await make_risk_group(
        client, risk["headers"], [acct], [{"limit_type": "max_gross_exposure", "value": "1000"}], name="Streamed"
    )
    a, b = stream_servers
    mine, watcher = await connect(a, user["api_key"]), await connect(b, risk["api_key"])
    try:
        for ws in (mine, watcher):
            assert (await subscribe(ws, ["risk"]))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
            market = {"symbol": sym, "side": "buy", "type": "market", "quantity": "7", "time_in_force": "gtc"}
            placed = await http_a.post(f"/api/v1/accounts/{acct}/orders", json=market, headers=user["headers"])
            assert placed.status_code == 201, placed.text  # 700 of 1000
            moved = await http_a.post(f"/api/v1/instruments/{sym}/price", json={"price": "120"}, headers=admin_headers)
            assert moved.status_code == 200, moved.text  # 840: 84 %
        message = await recv(watcher)
        assert message["type"] == "group_risk_alert", message
        assert message["data"]["severity"] == "warning" and message["data"]["group_id"] == message["group_id"]
        assert await no_more(mine) == []
    finally:
        await mine.close()
        await watcher.close()


def _skipped_trade_updates(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('tradedesk_stream_publish_skipped_total{type="trade_update"}'):
            return float(line.split()[-1])
    return 0.0


async def _until_skipped(http: httpx.AsyncClient, headers: dict, acct: str, sym: str) -> float:
    """Place orders until the process skips their publication (a connection of an earlier test may still
    be closing elsewhere); the skip count then."""
    deadline = time.monotonic() + 10
    while True:
        before = _skipped_trade_updates((await http.get("/metrics")).text)
        await _place_resting(http, headers, acct, sym, 1)
        after = _skipped_trade_updates((await http.get("/metrics")).text)
        if after == before + 2:
            return after
        assert time.monotonic() < deadline, "orders of an account nobody subscribes to were still published"


async def test_with_no_subscriber_nothing_is_published_and_a_later_subscriber_misses_nothing(
    client, admin_headers, make_user, stream_servers
):
    """A write that no process has a subscriber for builds and publishes no message; the events are in
    the durable log, so a subscriber that comes later resumes from it, and gets the next ones live."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
        skipped = await _until_skipped(http_a, user["headers"], acct, sym)
        await _place_resting(http_a, user["headers"], acct, sym, 4)
        assert _skipped_trade_updates((await http_a.get("/metrics")).text) == skipped + 8
        last = await _last_seq(http_a, user["headers"], acct)
        for stream in ("trade_updates", f"trade_updates:{acct}"):
            ws = await connect(b, user["api_key"])
            try:
                await subscribe(ws, [stream], since={acct: 0})
                assert [m["seq"] for m in await trade_updates(ws, last)] == list(range(1, last + 1))
                await _place_resting(http_a, user["headers"], acct, sym, 1)
                assert [m["seq"] for m in await trade_updates(ws, 2)] == [last + 1, last + 2]
                assert await no_more(ws) == []
                last += 2
            finally:
                await ws.close()
        # Published while someone listened, skipped again once nobody does.
        await _until_skipped(http_a, user["headers"], acct, sym)


async def test_an_event_skipped_before_its_process_heard_of_a_new_subscriber_still_reaches_it(
    client, admin_headers, make_user, stream_servers
):
    """The hand-over race, made certain: the in-process app (a third API process of this run) is kept from
    reading the other processes' subscriptions, so it skips an order's events although the subscriber on
    `b` has already been told where its stream starts. No later event follows. When the app reads the
    subscription it hints what it skipped, and the subscriber reads the events from the log."""
    from app.domain.streams import publish

    user, sym, acct = await _trader(client, admin_headers, make_user)
    _, b = stream_servers
    interest = publish._PUBLISHER.interest
    assert interest is not None and interest.redis is not None
    (listener,) = publish._PUBLISHER.plugin._channels[interest.key]
    held: list[bytes] = []
    listener._callback = held.append
    try:
        skipped = await _until_skipped(client, user["headers"], acct, sym)
        ws = await connect(b, user["api_key"])
        try:
            ack = await subscribe(ws, [f"trade_updates:{acct}"])
            start = ack["seqs"][acct]
            await _place_resting(client, user["headers"], acct, sym, 1)
            assert _skipped_trade_updates((await client.get("/metrics")).text) == skipped + 2
            assert await no_more(ws) == []  # skipped: nothing on the wire
            assert any(m.startswith(b"+") for m in held)
            listener._callback = interest.on_message
            for message in held:
                interest.on_message(message)
            hinted = await asyncio.wait_for(trade_updates(ws, 2), 10)  # heartbeats flow meanwhile
            assert [m["seq"] for m in hinted] == [start + 1, start + 2]
            assert await no_more(ws) == []
        finally:
            await ws.close()
    finally:
        listener._callback = interest.on_message


async def _account_channel_subscribers(settings) -> list[int]:
    """Redis's count of subscribers (one per process) of each account-scoped channel of this run."""
    import redis.asyncio as aioredis

    redis = aioredis.from_url(settings.redis_url)
    try:
        names = [f"{settings.redis_prefix}:stream:{kind}" for kind in ("trade_updates", "accounts", "risk")]
        return [count for _, count in await redis.pubsub_numsub(*names)]
    finally:
        await redis.aclose()


async def _subscribers_become(settings, expected: list[int]) -> list[int]:
    deadline = time.monotonic() + 10
    # Polling Redis's count: no event to wait on.
    while (counts := await _account_channel_subscribers(settings)) != expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return counts


async def test_only_a_process_serving_an_account_stream_subscribes_to_the_account_channels(
    client, admin_headers, make_user, stream_servers, settings
):
    """A process receives the account-scoped channels only while one of its connections holds such a
    stream (one subscription however many do): a process that only takes orders hears nothing back."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    # Neither process of this module holds a stream now; the in-process app of the run may.
    base = await _account_channel_subscribers(settings)
    await asyncio.sleep(0.5)
    assert await _account_channel_subscribers(settings) == base
    first = await connect(b, user["api_key"])
    try:
        await subscribe(first, [f"prices:{sym}"])  # not account-scoped
        assert await _account_channel_subscribers(settings) == base
        await subscribe(first, [f"trade_updates:{acct}"])
        assert await _account_channel_subscribers(settings) == [n + 1 for n in base]
        second = await connect(b, user["api_key"])
        try:
            await subscribe(second, ["accounts"])
            assert await _account_channel_subscribers(settings) == [n + 1 for n in base]
            async with httpx.AsyncClient(base_url=a, timeout=10) as http_a:
                placed = await http_a.post(
                    f"/api/v1/accounts/{acct}/orders", json=_resting_buy(sym), headers=user["headers"]
                )
                assert placed.status_code == 201, placed.text
            assert [m["event"] for m in await trade_updates(first, 2)] == ["new", "accepted"]
        finally:
            await second.close()
    finally:
        await first.close()
    assert await _subscribers_become(settings, base) == base


async def test_stream_connections_are_not_compressed_whatever_the_client_offers(
    client, admin_headers, make_user, stream_servers, uvicorn_stream_server
):
    """permessage-deflate, which browsers and the `websockets` client offer, is declined by both servers:
    compressing is per connection, so every frame of a fan-out would be deflated once per subscriber."""
    user = await make_user("trader")
    for url in (stream_servers[0], uvicorn_stream_server):
        ws = await websockets.connect(
            ws_url(url), additional_headers={"Authorization": f"Bearer {user['api_key']}"}, compression="deflate"
        )
        try:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, url
            assert (await subscribe(ws, ["accounts"]))["type"] == "subscribed"
        finally:
            await ws.close()


async def test_a_uvicorn_process_logs_its_own_messages_at_log_level(settings, make_user):
    """At LOG_LEVEL=WARNING (the test servers' setting) uvicorn writes nothing for a WebSocket that opens
    and closes; at its own default (info) it wrote three lines per connection."""
    user = await make_user("trader")
    with api_servers(settings, count=1, servers=("uvicorn",)) as (urls, procs):
        ws = await connect(urls[0], user["api_key"])
        assert (await subscribe(ws, ["accounts"]))["type"] == "subscribed"
        await ws.close()
        await asyncio.sleep(0.5)
        os.set_blocking(procs[0].stderr.fileno(), False)
        written = procs[0].stderr.read() or b""
    assert b"connection open" not in written and b"[accepted]" not in written, written[-500:]


async def test_a_revoked_key_or_a_lost_right_closes_open_streams_4401(
    client, admin_headers, make_user, stream_servers
):
    """A connection is authorised when it connects; a revocation, or a role lowered, applies to it too:
    checked again at every heartbeat (1 s here) and before every subscription."""
    user, sym, acct = await _trader(client, admin_headers, make_user)
    a, b = stream_servers
    made = await client.post("/api/v1/auth/keys", json={"name": "bot"}, headers=user["headers"])
    assert made.status_code == 201, made.text
    bot = made.json()
    ws = await connect(a, bot["api_key"])
    await ws.send(json.dumps({"action": "subscribe", "streams": ["trade_updates"]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
    async with httpx.AsyncClient(base_url=b, timeout=10) as http_b:
        sse = http_b.stream(
            "GET", f"/api/v1/accounts/{acct}/stream", headers={"Authorization": f"Bearer {bot['api_key']}"}
        )
        async with sse as resp:
            assert resp.status_code == 200
            revoked = await client.delete(f"/api/v1/auth/keys/{bot['id']}", headers=user["headers"])
            assert revoked.status_code == 204
            assert await _closed_with(ws, 5) == 4401
            lines = resp.aiter_lines()
            deadline = time.monotonic() + 5
            with contextlib.suppress(StopAsyncIteration):  # the SSE response ends (heartbeats until then)
                while time.monotonic() < deadline:
                    await asyncio.wait_for(anext(lines), 5)
            assert time.monotonic() < deadline, "the SSE stream of a revoked key went on"
    # A risk manager made a trader: the next subscription to another user's account is refused at once.
    rm = await make_user("risk_manager")
    ws = await connect(a, rm["api_key"])
    await ws.send(json.dumps({"action": "subscribe", "streams": ["accounts"]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
    lowered = await client.patch(f"/api/v1/users/{rm['id']}", json={"role": "trader"}, headers=admin_headers)
    assert lowered.status_code == 200, lowered.text
    stolen = {"action": "subscribe", "streams": [f"trade_updates:{acct}"], "since": {acct: 0}}
    await ws.send(json.dumps(stolen))
    got = []
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert not [m for m in got if m["type"] in ("subscribed", "trade_update")], got
    assert ws.close_code == 4401


async def test_failed_stream_keys_are_counted_and_audited_like_http_ones(
    client, admin_headers, stream_servers
):
    """A wrong key on the upgrade or in the auth message goes through the brute-force accounting of HTTP
    (docs/SECURITY.md): each is an `auth.failed` event with the key's public prefix."""
    a, _ = stream_servers
    since = datetime.now(UTC).isoformat()
    prefix = f"td_w{uuid.uuid4().hex[:6]}"
    for i in range(3):
        if i % 2:
            ws = await connect(a, None)
            await ws.send(json.dumps({"action": "auth", "key": f"{prefix}-guess-{i}"}))
        else:
            ws = await connect(a, f"{prefix}-guess-{i}")
        assert await _closed_with(ws) == 4401
    events: list[dict] = []
    for _ in range(50):
        query = {"type": "auth.failed", "since": since, "limit": 200}
        resp = await client.get("/api/v1/audit", params=query, headers=admin_headers)
        events = [e for e in resp.json()["items"] if (e["details"] or {}).get("key_prefix") == prefix]
        if len(events) == 3:
            break
        await asyncio.sleep(0.1)
    assert len(events) == 3, events


async def test_a_desk_page_stream_ends_with_its_session(make_user, stream_servers):
    """The desk's stream is authenticated by its session cookie; signing out (or the session expiring)
    closes it with 4401 at the next heartbeat, as a revoked key does."""
    user = await make_user("trader")
    a, _ = stream_servers
    async with httpx.AsyncClient(base_url=a, timeout=10) as page:
        signed_in = await page.post("/api/v1/desk/session", json={"api_key": user["api_key"]})
        assert signed_in.status_code == 201, signed_in.text
        cookie = f"td_desk={page.cookies.get('td_desk')}"
        host = a.removeprefix("http://")
        headers = {"Cookie": cookie, "Origin": f"http://{host}"}
        ws = await websockets.connect(ws_url(a), additional_headers=headers)
        await ws.send(json.dumps({"action": "subscribe", "streams": ["trade_updates"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
        csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
        out = await page.delete("/api/v1/desk/session", headers=csrf)
        assert out.status_code == 204
        assert await _closed_with(ws, 5) == 4401
