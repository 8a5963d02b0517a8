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
    """A fixed CPU-bound workload: the yardstick that makes figures comparable across machines."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1_000_003
    return total


def interleaved_ratio(target: Callable[[], Any], reference: Callable[[], Any], pairs: int) -> dict[str, float]:
    """Median of per-pair ratios target/reference, measured back to back.

    Interleaving cancels slow drifts in machine load (the neighbour's build, CPU frequency), which a
    ratio of two separately measured medians would not.
    """
    ratios: list[float] = []
    target_times: list[float] = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        reference()
        t1 = time.perf_counter()
        target()
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / max(t1 - t0, 1e-9))
        target_times.append(t2 - t1)
    return {
        "ratio": statistics.median(ratios),
        "target_median_ms": statistics.median(target_times) * 1000,
        "pairs": pairs,
    }
