"""Drive the real ASGI app in-process, on one long-lived event loop, against real PostgreSQL and Redis.

pytest-benchmark has no async support; every measured call is `loop.run_until_complete(...)` on the
same loop that ran the app's lifespan, so pools and caches stay warm exactly as in a server process.
Requests skip the network on purpose: the gate is about the app's own latency, and loopback sockets on
a shared 2-core machine would add noise larger than the regressions we want to catch.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks import baton


class AsgiDriver:
    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self._lifespan: asyncio.Task | None = None
        self._to_app: asyncio.Queue | None = None
        self._from_app: asyncio.Queue | None = None

    def start(self) -> None:
        async def boot() -> None:
            self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
            await self._to_app.put({"type": "lifespan.startup"})
            self._lifespan = asyncio.create_task(
                self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, self._to_app.get, self._from_app.put)
            )
            message = await self._from_app.get()
            if message["type"] != "lifespan.startup.complete":
                raise RuntimeError(f"app failed to start: {message}")

        self.loop.run_until_complete(boot())

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._to_app is not None and self._from_app is not None
            await self._to_app.put({"type": "lifespan.shutdown"})
            await self._from_app.get()

        self.loop.run_until_complete(shutdown())

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, json: Any = None,
        content: bytes | None = None,
    ) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        body = msgspec.json.encode(json) if json is not None else (content or b"")
        raw_headers = [(b"host", b"bench"), (b"content-length", str(len(body)).encode())]
        if json is not None:
            raw_headers.append((b"content-type", b"application/json"))
        for k, v in (headers or {}).items():
            raw_headers.append((k.lower().encode(), v.encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": raw_headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self.request(method, path, **kwargs))


def calibration(n: int = 20_000) -> int:
    """A fixed CPU-bound workload of interpreted bytecode: a yardstick for machine speed (measure_risk)."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1_000_003
    return total


def turn_times(target: Callable[[], Any], calls: int) -> dict[str, Any]:
    """Times of `calls` calls of `target`, one call per turn: under the latency gate the other tree's
    process makes its call of the same benchmark in between (benchmarks/baton.py), so call i here and
    call i there ran a millisecond apart under the same load. The gate compares them pair by pair."""
    times: list[float] = []
    for _ in range(calls):
        baton.pass_turn()
        start = time.perf_counter()
        target()
        times.append(time.perf_counter() - start)
    return {"times_us": [round(t * 1e6, 2) for t in times], "median_ms": statistics.median(times) * 1000}
