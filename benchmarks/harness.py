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
    """A fixed CPU-bound workload of interpreted bytecode: a yardstick for machine speed (measure_risk)."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1_000_003
    return total


# Workload-matched references for the pure cores. A bytecode loop is a poor yardstick for code that
# spends its time in libmpdec or in numpy: machines differ in how fast each kind of work runs (seen:
# the pre-trade check 50% dearer and the engine 20% cheaper against `calibration` on a second machine),
# and a neighbour thrashing the shared cache slows a 100k-bar numpy pass but not a loop that lives in
# L1 (seen: the engine +31% against `calibration`, twice in a row, on a CI run of an unchanged engine).
# Each reference below does the same kind of work as its target, so both move together.

_DEC = None


def decimal_reference(n: int = 400) -> Any:
    """Decimal multiply/add/compare and dict look-ups, like a pre-trade check over a 50-position book."""
    global _DEC
    if _DEC is None:
        from decimal import Decimal

        _DEC = {f"S{i}": (Decimal(10 + i), Decimal("100.5") + i) for i in range(50)}
    book = _DEC
    total = exposure = None
    for i in range(n):
        qty, price = book[f"S{i % 50}"]
        notional = qty * price
        total = notional if total is None else total + notional
        exposure = abs(notional) if exposure is None or abs(notional) > exposure else exposure
    return total, exposure


_SMALL = None


def small_array_reference(n: int = 5000, repeats: int = 2) -> float:
    """numpy reductions, cumulative ops and a sort over a few thousand values: per-call overhead plus
    short vector loops, like the performance metrics over 5,000 returns."""
    import numpy as np

    global _SMALL
    if _SMALL is None or len(_SMALL) != n:
        _SMALL = np.random.default_rng(5).normal(0.0004, 0.01, n)
    r = _SMALL
    acc = 0.0
    for _ in range(repeats):
        equity = np.cumprod(1.0 + r)
        drawdown = equity / np.maximum.accumulate(equity) - 1.0
        acc += float(r.mean() / r.std(ddof=1)) + float(drawdown.min()) + float(np.percentile(r, 5))
        acc += float(np.sort(r)[n // 2]) + float(np.sum(r[r < 0] ** 2))
    return acc


_BIG = None


def array_pipeline_reference(n: int = 100_000, segments: int = 16_000) -> int:
    """The backtest engine's mix over n bars: whole-array numpy passes (rolling means via cumsum,
    comparisons, diffs), a sha256 over the inputs, and an interpreted loop that builds a small object
    per segment."""
    import hashlib

    import numpy as np

    global _BIG
    if _BIG is None or len(_BIG) != n:
        _BIG = 100 * np.exp(np.cumsum(np.random.default_rng(9).normal(0, 0.01, n)))
    close = _BIG
    c = np.cumsum(close)
    fast = (c[30:] - c[:-30]) / 30
    slow = (c[60:] - c[:-60]) / 60
    signal = (fast[30:] > slow).astype(np.int8)
    starts = (np.flatnonzero(np.diff(signal)) + 1).tolist()
    returns = np.diff(close) / close[:-1]
    equity = np.cumprod(1.0 + returns)
    drawdown = equity / np.maximum.accumulate(equity) - 1.0
    digest = hashlib.sha256(close.tobytes() + equity.tobytes() + drawdown.tobytes()).hexdigest()
    rows = []
    price = float(close[0])
    for i in range(segments):
        bar = starts[i % len(starts)] if starts else i
        price = price * 1.0001 + bar * 1e-9
        rows.append({"bar": bar, "price": price, "pnl": price - 100.0, "side": "long" if i & 1 else "short"})
    return len(rows) + len(digest) + int(np.partition(returns, n // 2)[n // 2] > 0)


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
