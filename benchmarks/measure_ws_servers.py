"""The ASGI servers' own cost per WebSocket, without our code: benchmarks/peers/bare_ws_app.py under
granian (as `tradedesk serve` runs it, and with the runtime options that might matter) and under uvicorn
(as `tradedesk serve --server uvicorn` runs it), taking turns in one run.

    python -m benchmarks.measure_ws_servers [--connections 100] [--frames 2000] [--idle 1000] [--rounds 2]
                                            [--deflate] [--only NAME ...]

Per server: CPU (user + system of the server's process tree, from /proc) per ~700-byte frame sent while
`--connections` clients each receive `--frames` frames, split by thread name (granian's Python thread and
its tokio runtime threads); then the RSS per connection of `--idle` idle connections. `--deflate`: the
clients offer permessage-deflate (browsers and the `websockets` client do by default); uvicorn accepts it
unless `--ws-per-message-deflate false`, and then compresses every frame for every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "benchmarks.peers.bare_ws_app:app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def servers(port: int) -> dict[str, list[str]]:
    granian = [str(BIN / "granian"), "--interface", "asgi", "--loop", "uvloop", "--port", str(port), "--no-log"]
    uvicorn = [
        sys.executable, "-m", "uvicorn", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--ws", "websockets-sansio", "--ws-ping-interval", "0", "--no-access-log", "--log-level", "warning",
    ]
    return {
        "granian": [*granian, APP],
        "granian --runtime-mode st": [*granian, "--runtime-mode", "st", APP],
        "granian --task-impl rust": [*granian, "--task-impl", "rust", APP],
        "granian --runtime-threads 2": [*granian, "--runtime-threads", "2", APP],
        "uvicorn": [*uvicorn, "--ws-per-message-deflate", "false", APP],
        "uvicorn, permessage-deflate on (its default)": [*uvicorn, APP],
    }


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds by thread name over a process and its children."""
    out: dict[str, float] = {}
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/stat") as f:
                    raw = f.read()
                name = raw[raw.index("(") + 1 : raw.rindex(")")]
                fields = raw.rsplit(")", 1)[1].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return out


def _rss_kib(pid: int) -> int:
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
    return total


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


async def measure(cmd: list[str], port: int, args: argparse.Namespace) -> dict:
    proc = _start(cmd)
    try:
        url = f"ws://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = await websockets.connect(url)
                await probe.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        # --deflate: the clients offer permessage-deflate, as browsers and the `websockets` client do by default.
        compression = "deflate" if args.deflate else None
        conns = [
            await websockets.connect(url, max_size=None, compression=compression) for _ in range(args.connections)
        ]

        async def drain(ws) -> None:
            await ws.send(str(args.frames))
            while await ws.recv() != "done":
                pass

        before = _threads(proc.pid)
        await asyncio.gather(*(drain(ws) for ws in conns))
        after = _threads(proc.pid)
        frames = args.connections * args.frames
        split = {k: (v - before.get(k, 0.0)) * 1e6 / frames for k, v in after.items()}
        out = {
            "cpu_us_per_frame": round(sum(split.values()), 2),
            "deflate_negotiated": conns[0].response.headers.get("Sec-WebSocket-Extensions") is not None,
            "by_thread_us": {k: round(v, 2) for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v > 0},
        }
        for ws in conns:
            await ws.close()
        if args.idle:
            rss_before = _rss_kib(proc.pid)
            idle = []
            for _ in range(args.idle):
                ws = await websockets.connect(url, max_size=None, compression=compression, ping_interval=None)
                await ws.send("{}")
                await ws.recv()
                idle.append(ws)
            await asyncio.sleep(2)
            out["idle_kib_per_connection"] = round((_rss_kib(proc.pid) - rss_before) / args.idle, 1)
            for ws in idle:
                await ws.close()
        return out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def main(args: argparse.Namespace) -> None:
    for round_no in range(args.rounds):
        names = list(servers(0))
        for name in names if round_no % 2 == 0 else reversed(names):
            if args.only and name not in args.only:
                continue
            port = _free_port()
            print(f"{name}: {await measure(servers(port)[name], port, args)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory figure (0: none)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", action="append", help="a server of the list (repeatable)")
    parser.add_argument("--deflate", action="store_true", help="clients offer permessage-deflate")
    asyncio.run(main(parser.parse_args()))
