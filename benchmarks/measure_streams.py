"""Streams under load, against a real API process (granian, one worker) on a scratch database.

    python -m benchmarks.measure_streams [--subscribers 100] [--rate 500] [--phase-seconds 6]
                                         [--idle 2000] [--replay 10000] [--layout one-account|desk]

1. Placement with `--subscribers` WebSocket subscribers against none, in alternating phases of one run
   (none, subscribed, none, subscribed): orders per second (closed loop, 8 in flight, capped at `--rate`)
   and the ratio. `--layout one-account` (the default): every subscriber watches the trade_updates of the
   one account that trades, so an event goes to all of them; `--layout desk`: each subscriber watches an
   account of its own and the orders go to those accounts in turn (a bot per account), so an event goes
   to its account's subscriber and the probe. In the "none" phases the orders go to accounts nobody
   watches. During subscribed phases one probe subscriber (in a process of its own: the placing client's
   event loop would add its own backlog) decodes every message and records delivery latency = receive
   time - the event's `at` (taken just before the write commits, same clock); the others only receive.
   The probe watches the trading account (one-account) or `trade_updates`, every account (desk).
2. `--idle` idle connections (subscribed to `accounts`, heartbeat every second): the server process's
   RSS before and after, and heartbeat jitter (|interval - 1 s|) seen on 50 of them.
3. Resume: `--replay` events are written while no one listens, then a client resumes from seq 0 three
   times, one after the other: a WebSocket, a WebSocket with `?batch=true`, SSE with `Last-Event-ID: 0`;
   time from the request to the last replayed message, every message decoded and its seq checked.
4. `--idle-baseline N`: the same idle measurement on benchmarks/peers/bare_ws_app.py under the same
   granian settings: the server's own memory per WebSocket connection.

Subscribers other than the latency probe are raw sockets in a child process that reads and discards
whatever each socket holds every 10 ms, so that neither WebSocket parsing nor a task wake-up per frame
in the load generator takes the cores from the server (or the placing client's event loop). Besides
orders/s, each phase reports the server's CPU per order (user + system of the API process(es), from
/proc) and, from the difference, the server's CPU per message delivered to a subscriber. `--separate`
puts the subscribers on a second API process (orders still go to the first); `--server` /
`--stream-server` choose
`tradedesk serve --server` for the first / the second. `--batch`: the subscribers connect with
`?batch=true` (docs/STREAMING.md), several messages to a frame where they wait together.

`--compare-tree PATH` runs every measurement on two API processes, one of this tree and one of another
checkout (`git archive <commit> | tar -x -C PATH`, served with this environment's Python), both up
for the whole run on one database with separate Redis namespaces, taking turns measurement by
measurement (this, other, other, this, ... for `--rounds` rounds): a before/after in one run.
`--compare-server uvicorn` (or granian) makes the other process one of this tree (or of `--compare-tree`)
under that server.

The load generator shares the machine with the server (2 cores here): its WebSocket receive work
competes with the server for CPU, so the figures are a floor for a server with its own cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import websockets

from app.lib.db import async_url
from benchmarks.conftest import REDIS_URL, _admin, _url, drop_redis_keys


def _rss_kib(pid: int) -> int:
    """RSS of a process and its children (granian runs the app in a child process)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return total


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class BareServer:
    """benchmarks/peers/bare_ws_app.py under granian as `tradedesk serve` runs it (ASGI, 1 worker, uvloop)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        granian = str(Path(sys.executable).with_name("granian"))
        self.proc = subprocess.Popen(
            [
                granian,
                "--interface",
                "asgi",
                "--loop",
                "uvloop",
                "--port",
                str(port),
                "--no-log",
                "benchmarks.peers.bare_ws_app:app",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(4)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=20)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (granian's worker, uvicorn's server)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(
        self,
        db: str,
        run: str,
        offset: int = 0,
        tree: Path | None = None,
        kind: str = "granian",
        shared: bool = False,
    ) -> None:
        self.kind = kind
        self.port = 18_000 + int(run[:4], 16) % 2000 + offset
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = f"td_meas_admin_{run}_0123456789abcdefghij"
        env = dict(os.environ)
        env.update(
            DATABASE_URL=async_url(_url(db)),
            REDIS_URL=REDIS_URL,
            TRADEDESK_QUEUE_NAME=f"tdmeas-{run}",
            # --separate's stream process shares the namespace (its channels carry the first one's
            # messages); --compare-*'s other process must not.
            TRADEDESK_REDIS_PREFIX=f"tdmeas-{run}" + (f"-{offset}" if offset and not shared else ""),
            TRADEDESK_ADMIN_API_KEY=self.admin_key,
            TRADEDESK_WORKERS_IN_PROCESS="false",
            LOG_LEVEL="WARNING",
            TRADEDESK_ACCESS_LOG="false",
            RATE_LIMIT_READ_PER_MINUTE="1000000000",
            RATE_LIMIT_WRITE_PER_MINUTE="1000000000",
            RATE_LIMIT_ORDERS_PER_MINUTE="1000000000",
            RATE_LIMIT_ANONYMOUS_PER_MINUTE="1000000000",
            STREAM_MAX_CONNECTIONS_PER_USER="100000",
            STREAM_HEARTBEAT_SECONDS="1",
            STREAM_BUFFER_MESSAGES="100000",
        )
        if tree is not None:  # its `app` package ahead of this tree's (installed in editable mode)
            env["PYTHONPATH"] = str(tree)
        tradedesk = str(Path(sys.executable).with_name("tradedesk"))
        # The server's warnings (LOG_LEVEL=WARNING) go to a file: a failed subscribe's reason is there.
        self.log_path = Path(tempfile.gettempdir()) / f"tdmeas-{run}-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [tradedesk, "serve", "--port", str(self.port), "--no-access-log"]
                + (["--server", kind] if kind != "granian" else []),
                env=env,
                cwd=tree,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


async def _setup(http: httpx.AsyncClient, admin: dict) -> tuple[str, dict]:
    user = (
        await http.post(
            "/api/v1/users", json={"email": f"s-{uuid.uuid4().hex[:8]}@example.com"}, headers=admin
        )
    ).json()
    trader = {"Authorization": f"Bearer {user['api_key']}"}
    for path, body in (
        (
            "/api/v1/exchanges",
            {"code": "SX", "name": "s", "taker_fee_rate": "0.001", "maker_fee_rate": "0.0005"},
        ),
        (
            "/api/v1/instruments",
            {
                "symbol": "STRM",
                "exchange": "SX",
                "base_asset": "S",
                "quote_asset": "USD",
                "tick_size": "0.01",
                "lot_size": "1",
                "min_quantity": "1",
            },
        ),
        ("/api/v1/instruments/STRM/price", {"price": "100"}),
    ):
        resp = await http.post(path, json=body, headers=admin)
        assert resp.status_code in (200, 201), resp.text
    return user["api_key"], trader


async def _new_account(http: httpx.AsyncClient, trader: dict) -> str:
    resp = await http.post(
        "/api/v1/accounts", json={"name": "s", "initial_cash": "1000000000000"}, headers=trader
    )
    return resp.json()["id"]


ORDER = {
    "symbol": "STRM",
    "side": "buy",
    "type": "limit",
    "quantity": "1",
    "limit_price": "90",
    "time_in_force": "gtc",
}


async def _place_for(
    http: httpx.AsyncClient, trader: dict, account: str | list[str], seconds: float, rate: float
) -> int:
    """Closed loop, 8 in flight, at most `rate` orders/s; returns orders placed. A list of accounts: the
    orders go to them in turn."""
    done = 0
    end = time.perf_counter() + seconds
    interval = 8 / rate
    accounts = [account] if isinstance(account, str) else account

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            started = time.perf_counter()
            target = accounts[done % len(accounts)]
            resp = await http.post(f"/api/v1/accounts/{target}/orders", json=ORDER, headers=trader)
            assert resp.status_code == 201, resp.text
            done += 1
            pause = interval - (time.perf_counter() - started)
            if pause > 0:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(8)))
    return done


async def _subscribe(ws_url: str, key: str, streams: list[str], since: dict | None = None):
    ws = await websockets.connect(
        ws_url, additional_headers={"Authorization": f"Bearer {key}"}, max_queue=None
    )
    body: dict = {"action": "subscribe", "streams": streams}
    if since is not None:
        body["since"] = since
    await ws.send(json.dumps(body))
    while True:  # heartbeats may come first; an error is the answer (a wait for "subscribed" never ends)
        decoded = json.loads(await asyncio.wait_for(ws.recv(), 30))
        for m in decoded if isinstance(decoded, list) else [decoded]:
            if m["type"] == "subscribed":
                return ws
            if m["type"] == "error":
                await ws.close()
                raise RuntimeError(f"subscribe {streams} answered {m}")


def _read_subscribers(
    url: str, key: str, streams: list[list[str]], ready, stop, interval: float, query: str = ""
) -> None:
    """A child process holding a raw WebSocket subscriber per entry of `streams` (the streams it
    subscribes to): every `interval` seconds it reads whatever
    each socket has and discards it (one recv per socket per round, many frames each), so the subscribers
    cost the shared cores next to nothing and nothing of the placing client's event loop. The server's work
    per frame is the same as for a client that reads each frame as it comes."""
    import select
    import socket

    host, port = url.removeprefix("http://").split(":")
    socks = []
    for names in streams:
        payload = json.dumps({"action": "subscribe", "streams": names}).encode()
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            (
                f"GET /api/v1/stream{query} HTTP/1.1\r\nHost: {host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {key}\r\n\r\n"
            ).encode()
        )
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += sock.recv(4096)
        mask = os.urandom(4)
        assert len(payload) < 126
        sock.sendall(
            bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        )
        while b'"subscribed"' not in seen:
            seen = seen[-64:] + sock.recv(1 << 16)
        sock.setblocking(False)
        socks.append(sock)
    ready.set()
    while not stop.is_set():
        time.sleep(interval)
        readable, _, _ = select.select(socks, [], [], 0)
        for sock in readable:
            try:
                sock.recv(1 << 20)
            except BlockingIOError:
                pass
    for sock in socks:
        sock.close()


def _probe(ws_url: str, key: str, streams: list[str], ready, stop, out) -> None:
    """A child process holding the latency probe: a `websockets` client that decodes every message and
    records (receive time, receive time - the event's `at`) for every trade_update, sent back on `out`
    once `stop` is set."""

    async def run() -> list[tuple[float, float]]:
        samples: list[tuple[float, float]] = []
        ws = await _subscribe(ws_url, key, streams)
        ready.set()

        async def receive() -> None:
            async for raw in ws:
                received = time.time()
                decoded = json.loads(raw)
                for msg in decoded if isinstance(decoded, list) else [decoded]:
                    if msg["type"] == "trade_update":
                        samples.append((received, received - datetime.fromisoformat(msg["at"]).timestamp()))

        task = asyncio.create_task(receive())
        await asyncio.to_thread(stop.wait)
        task.cancel()
        await ws.close()
        return samples

    out.send(asyncio.run(run()))


async def placement_and_latency(
    server: Server, key: str, trader: dict, args, streams: Server | None = None
) -> dict:
    """`streams`: a second API process the subscribers connect to (orders still go to `server`)."""
    streams = streams or server
    ws_url = streams.url.replace("http", "ws") + "/api/v1/stream" + ("?batch=true" if args.batch else "")
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=16)
    ) as http:
        desk = args.layout == "desk"
        # one-account: every subscriber watches the account that trades (the probe included). desk: each
        # subscriber watches an account of its own and the orders go to those accounts in turn; the probe
        # watches `trade_updates` (every account of the user, as a desk front-end does).
        watched: str | list[str] = (
            [await _new_account(http, trader) for _ in range(args.subscribers)]
            if desk
            else await _new_account(http, trader)
        )
        await _place_for(http, trader, watched, 2, args.rate)  # warm-up
        probe_streams = ["trade_updates" if desk else f"trade_updates:{watched}"]
        reader_streams = (
            [[f"trade_updates:{a}"] for a in watched]
            if isinstance(watched, list)
            else [[f"trade_updates:{watched}"]] * (args.subscribers - 1)
        )
        ctx = multiprocessing.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        readers = ctx.Process(
            target=_read_subscribers,
            args=(
                streams.url,
                key,
                reader_streams,
                ready,
                stop,
                0.01,
                "?batch=true" if args.batch else "",
            ),
        )
        readers.start()
        await asyncio.to_thread(ready.wait, 120)
        # The probe runs in a process of its own: in the placing client's event loop its receive times
        # would include that loop's backlog of HTTP responses (the load generator's queueing, not the
        # server's delivery).
        probe_ready, probe_stop = ctx.Event(), ctx.Event()
        receiver, sender = ctx.Pipe(duplex=False)
        prober = ctx.Process(
            target=_probe, args=(ws_url, key, probe_streams, probe_ready, probe_stop, sender)
        )
        prober.start()
        await asyncio.to_thread(probe_ready.wait, 60)
        windows: list[tuple[float, float]] = []  # the subscribed phases, wall clock
        rates: dict[str, list[float]] = {"none": [], "subscribed": []}
        cpu: dict[str, list[float]] = {"none": [], "subscribed": []}  # server CPU ms per order
        placing_cpu: dict[str, list[float]] = {"none": [], "subscribed": []}  # the process taking orders
        procs = [server.proc.pid] + ([streams.proc.pid] if streams is not server else [])
        for phase in ("none", "subscribed", "none", "subscribed"):
            # Subscribers stay connected; in the "none" phases the orders go to accounts nobody watches.
            if phase == "subscribed":
                target = watched
            elif desk:
                target = [await _new_account(http, trader) for _ in range(args.subscribers)]
                await _place_for(http, trader, target, 1, args.rate)  # their first orders: fresh reads
            else:
                target = await _new_account(http, trader)
            phase_start = time.time()
            cpu_before = sum(_cpu_seconds(p) for p in procs)
            placing_before = _cpu_seconds(server.proc.pid)
            placed = await _place_for(http, trader, target, args.phase_seconds, args.rate)
            await asyncio.sleep(0.2)  # the last orders' frames leave the server
            cpu[phase].append((sum(_cpu_seconds(p) for p in procs) - cpu_before) * 1000 / max(placed, 1))
            placing_cpu[phase].append(
                (_cpu_seconds(server.proc.pid) - placing_before) * 1000 / max(placed, 1)
            )
            if phase == "subscribed":
                windows.append((phase_start, time.time()))
            rates[phase].append(placed / args.phase_seconds)
            await asyncio.sleep(1)
        probe_stop.set()
        samples: list[tuple[float, float]] = await asyncio.to_thread(receiver.recv)
        await asyncio.to_thread(prober.join, 30)
        stop.set()
        await asyncio.to_thread(readers.join, 30)
        latencies = [lat for at, lat in samples if any(a <= at <= b for a, b in windows)]
    none, subscribed = statistics.mean(rates["none"]), statistics.mean(rates["subscribed"])
    cpu_none, cpu_subscribed = statistics.mean(cpu["none"]), statistics.mean(cpu["subscribed"])
    return {
        "orders_per_s_no_subscribers": round(none, 1),
        "orders_per_s_with_subscribers": round(subscribed, 1),
        "ratio": round(subscribed / none, 3),
        "phases": rates,
        "server_cpu_ms_per_order_no_subscribers": round(cpu_none, 3),
        "server_cpu_ms_per_order_with_subscribers": round(cpu_subscribed, 3),
        "server_cpu_ratio": round(cpu_subscribed / cpu_none, 3),
        # With --separate: the process that takes the orders (it only publishes) on its own.
        "placing_process_cpu_ratio": round(
            statistics.mean(placing_cpu["subscribed"]) / statistics.mean(placing_cpu["none"]), 3
        ),
        # A resting limit order makes two events (new, accepted), each a frame to every subscriber of its
        # account: all of them (one-account), or its own and the probe (desk).
        "server_cpu_us_per_delivered_message": round(
            (cpu_subscribed - cpu_none) * 1000 / (2 * (2 if args.layout == "desk" else args.subscribers)), 2
        ),
        "layout": args.layout,
        "latency_samples": len(latencies),
        "latency_p50_ms": round(_pct(latencies, 0.5) * 1000, 2) if latencies else None,
        "latency_p99_ms": round(_pct(latencies, 0.99) * 1000, 2) if latencies else None,
    }


async def idle_connections(server: Server, key: str, n: int) -> dict:
    ws_url = server.url.replace("http", "ws") + "/api/v1/stream"
    before = _rss_kib(server.proc.pid)
    beats: list[tuple[float, float]] = []  # (server `at`, receive time) on the first 50 connections
    watching = False

    async def watch(ws, sample: bool) -> None:
        async for raw in ws:
            if sample and watching:
                msg = json.loads(raw)
                if msg["type"] == "heartbeat":
                    beats.append((datetime.fromisoformat(msg["at"]).timestamp(), time.time()))

    sockets, tasks = [], []
    for i in range(0, n, 100):
        batch = await asyncio.gather(*(_subscribe(ws_url, key, ["accounts"]) for _ in range(min(100, n - i))))
        for ws in batch:
            tasks.append(asyncio.create_task(watch(ws, len(sockets) < 50)))
            sockets.append(ws)
    await asyncio.sleep(3)
    after = _rss_kib(server.proc.pid)
    watching = True
    await asyncio.sleep(12)
    watching = False
    delays = [received - at for at, received in beats]
    ticks = sorted({at for at, _ in beats})
    interval_error = [abs((b - a) - 1.0) for a, b in zip(ticks, ticks[1:], strict=False)]
    for t in tasks:
        t.cancel()
    for w in sockets:
        await w.close()
    return {
        "connections": n,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "rss_per_connection_kib": round((after - before) / n, 1),
        "heartbeats_seen": len(beats),
        "heartbeat_delivery_p50_ms": round(_pct(delays, 0.5) * 1000, 1) if delays else None,
        "heartbeat_delivery_p99_ms": round(_pct(delays, 0.99) * 1000, 1) if delays else None,
        "heartbeat_interval_error_max_ms": round(max(interval_error) * 1000, 1) if interval_error else None,
    }


async def replay(server: Server, key: str, trader: dict, events: int) -> dict:
    ws_url = server.url.replace("http", "ws") + "/api/v1/stream"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        account = await _new_account(http, trader)
        sem = asyncio.Semaphore(8)

        async def one() -> None:
            async with sem:
                resp = await http.post(f"/api/v1/accounts/{account}/orders", json=ORDER, headers=trader)
                assert resp.status_code == 201

        await asyncio.gather(*(one() for _ in range(events // 2)))  # new + accepted per order
    out: dict = {"events": events}
    for mode in ("websocket", "websocket_batch", "sse"):
        started = time.perf_counter()
        if mode == "sse":
            last = await _replay_sse(server, trader, account, events)
        else:
            last = await _replay_ws(
                ws_url + ("?batch=true" if mode == "websocket_batch" else ""), key, account, events
            )
        elapsed = time.perf_counter() - started
        assert last == events
        out[f"{mode}_seconds"] = round(elapsed, 3)
    return out


async def _replay_ws(url: str, key: str, account: str, events: int) -> int:
    """Resume from seq 0: time from the subscribe to the last replayed message, every message decoded."""
    ws = await websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, max_queue=None, max_size=2**24
    )
    await ws.send(
        json.dumps({"action": "subscribe", "streams": [f"trade_updates:{account}"], "since": {account: 0}})
    )
    last = 0
    while last < events:
        decoded = json.loads(await ws.recv())
        for msg in decoded if isinstance(decoded, list) else [decoded]:
            if msg["type"] == "trade_update":
                assert msg["seq"] == last + 1
                last = msg["seq"]
    await ws.close()
    return last


async def _replay_sse(server: Server, trader: dict, account: str, events: int) -> int:
    """The same over SSE with `Last-Event-ID: 0`."""
    last = 0
    headers = {**trader, "Last-Event-ID": "0"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream("GET", f"/api/v1/accounts/{account}/stream", headers=headers) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    assert msg["seq"] == last + 1
                    last = msg["seq"]
                    if last == events:
                        break
    return last


async def measure(server: Server, key: str, trader: dict, args, second: Server | None) -> dict:
    out: dict = {}
    if args.subscribers:
        out["placement"] = await placement_and_latency(server, key, trader, args, second)
        print(json.dumps(out["placement"]), flush=True)
    if args.replay:
        out["replay"] = await replay(server, key, trader, args.replay)
        print(json.dumps(out["replay"]), flush=True)
    if args.idle:
        out["idle"] = await idle_connections(server, key, args.idle)
        print(json.dumps(out["idle"]), flush=True)
    return out


async def main(args) -> dict:
    run = uuid.uuid4().hex[:8]
    db = f"td_meas_{run}"
    await _admin(f'CREATE DATABASE "{db}"')
    from app.lib.migrate import upgrade

    await asyncio.to_thread(upgrade, _url(db))
    server = Server(db, run, kind=args.server)
    second = (
        Server(db, run, offset=1, kind=args.stream_server or args.server, shared=True)
        if args.separate
        else None
    )
    other = (
        Server(db, run, offset=3, tree=args.compare_tree, kind=args.compare_server or args.server)
        if args.compare_tree or args.compare_server
        else None
    )
    try:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            key, trader = await _setup(http, admin)
        if other is None:
            out = await measure(server, key, trader, args, second)
        else:
            out = {"this": [], "other": []}
            for i in range(args.rounds):
                for name in ("this", "other") if i % 2 == 0 else ("other", "this"):
                    print(f"-- {name}", flush=True)
                    target = server if name == "this" else other
                    out[name].append(await measure(target, key, trader, args, None))
        if args.idle_baseline:
            bare = BareServer(server.port + 2)
            try:
                out["idle_bare_asgi"] = await idle_connections(bare, key, args.idle_baseline)  # type: ignore[arg-type]
            finally:
                bare.stop()
            print(json.dumps(out["idle_bare_asgi"]), flush=True)
        return out
    finally:
        for s in (server, second, other):
            if s is not None:
                s.stop()
        await _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await drop_redis_keys(f"tdmeas-{run}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--phase-seconds", type=float, default=6)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument(
        "--idle-baseline",
        type=int,
        default=0,
        help="also hold this many connections on a bare ASGI WebSocket app (server memory alone)",
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="subscribers on a second API process (the placing process only publishes)",
    )
    parser.add_argument(
        "--server", choices=("granian", "uvicorn"), default="granian", help="`tradedesk serve --server`"
    )
    parser.add_argument(
        "--stream-server",
        choices=("granian", "uvicorn"),
        help="with --separate: the subscribers' process's server (default: --server)",
    )
    parser.add_argument(
        "--batch", action="store_true", help="subscribers connect with ?batch=true (arrays of messages)"
    )
    parser.add_argument(
        "--layout",
        choices=("one-account", "desk"),
        default="one-account",
        help="one-account: every subscriber watches the account that trades; desk: each watches an account"
        " of its own, the orders go to those accounts in turn, the probe watches all of them",
    )
    parser.add_argument("--compare-tree", type=Path, help="another checkout to measure side by side")
    parser.add_argument(
        "--compare-server",
        choices=("granian", "uvicorn"),
        help="measure side by side against a process under this server (this tree, or --compare-tree's)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --compare-tree: turns per tree")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
