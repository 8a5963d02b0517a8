"""The compose deployment's front (deploy/nginx.conf), run for real: Debian's nginx with that file, its
upstreams pointed at two live API processes as compose runs them (`api` under granian, `streams` under
`serve --server uvicorn`). A WebSocket must upgrade through it and an SSE stream must arrive unbuffered,
or the desk and every bot behind this front would fall back to polling."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import _free_port, api_servers
from tests.integration.helpers import make_account, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def render(conf: str, api: str, streams: str, port: int) -> str:
    """deploy/nginx.conf with compose's service names replaced by the test's processes."""
    out = conf.replace("server api:8000", f"server {api}").replace("server streams:8000", f"server {streams}")
    out = re.sub(r"listen 80;", f"listen 127.0.0.1:{port};", out)
    assert f"server {api}" in out and f"server {streams}" in out and f"listen 127.0.0.1:{port};" in out
    return out


@pytest.fixture(scope="module")
def front(settings):
    """nginx on a free port with deploy/nginx.conf in front of a granian `api` and a uvicorn `streams`."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx-light)")
    with api_servers(settings, count=2, servers=("granian", "uvicorn"), STREAM_HEARTBEAT_SECONDS="1") as (urls, _):
        api, streams = (u.removeprefix("http://") for u in urls)
        port = _free_port()
        root = Path(tempfile.mkdtemp(prefix="td-nginx-"))
        (root / "site.conf").write_text(render(NGINX_CONF.read_text(), api, streams, port))
        (root / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n"
            f"  fastcgi_temp_path {root}/fcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n"
            f"  include {root}/site.conf;\n}}\n"
        )
        proc = subprocess.Popen([NGINX, "-p", str(root), "-c", str(root / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"nginx exited: {proc.stderr.read().decode()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("nginx did not listen in 15 s")
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(root, ignore_errors=True)


async def _message(ws, kind: str, wait: float = 10.0) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), wait))
        if message["type"] == kind:
            return message


async def test_a_websocket_upgrades_through_the_front_and_hears_an_order_placed_through_it(
    client, admin_headers, make_user, front
):
    user = await make_user("trader")
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, user["headers"], cash="100000")
    ws_url = front.replace("http://", "ws://") + "/api/v1/stream"
    async with websockets.connect(ws_url, additional_headers=user["headers"]) as ws:
        await ws.send(json.dumps({"action": "subscribe", "streams": [f"trade_updates:{acct}"]}))
        assert (await _message(ws, "subscribed"))["streams"] == [f"trade_updates:{acct}"]
        async with httpx.AsyncClient(base_url=front, timeout=10) as http:
            resp = await http.post(f"/api/v1/accounts/{acct}/orders", headers=user["headers"], json={
                "symbol": sym, "side": "buy", "type": "market", "quantity": "1", "time_in_force": "gtc"})
            assert resp.status_code == 201, resp.text
        update = await _message(ws, "trade_update")
        assert update["order"]["id"] == resp.json()["id"] and update["seq"] == 1
        assert (await _message(ws, "heartbeat", wait=5))["type"] == "heartbeat"  # held open


async def test_sse_events_pass_the_front_as_they_happen(client, admin_headers, make_user, front):
    user = await make_user("trader")
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, user["headers"], cash="100000")
    async with httpx.AsyncClient(base_url=front, timeout=10) as http:
        async with http.stream("GET", f"/api/v1/accounts/{acct}/stream", headers=user["headers"]) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            placed = await http.post(f"/api/v1/accounts/{acct}/orders", headers=user["headers"], json={
                "symbol": sym, "side": "buy", "type": "limit", "limit_price": "90", "quantity": "1",
                "time_in_force": "gtc"})
            assert placed.status_code == 201, placed.text
            # Two small events: a buffering proxy would hold them until its buffer filled or the stream
            # ended, and this wait would time out (the stream location turns buffering off, and the SSE
            # response says `X-Accel-Buffering: no` for any nginx in front).
            seen: list[dict] = []
            while len(seen) < 2:
                line = await asyncio.wait_for(anext(lines), 5)
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:].strip()))
            assert [m["seq"] for m in seen] == [1, 2] and seen[0]["order"]["id"] == placed.json()["id"]
