from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get

from app.domain.identity.guards import requires_admin
from app.domain.jobs.tasks import ROLLUP_KEY
from app.lib.http import cache_of
from app.lib.kv import RedisKV


class CacheStats(msgspec.Struct):
    hits: int
    misses: int
    errors: int
    hit_ratio: float | None
    keys: int
    memory_bytes: int | None
    last_rollup: dict[str, Any] | None = None


class CacheHealth(msgspec.Struct):
    status: Literal["ok", "down"]
    backend: Literal["redis", "memory"]
    latency_ms: float
    detail: str | None = None


class CacheCleared(msgspec.Struct):
    removed: int


class CacheController(Controller):
    path = "/api/v1/cache"
    tags = ["cache"]

    @get("/stats", summary="Fleet-wide hits, misses, hit ratio; live entries and their memory")
    async def stats(self, request: Request) -> CacheStats:
        cache = cache_of(request)
        stats = await cache.stats()
        raw = await cache.kv.get(ROLLUP_KEY)
        return CacheStats(**stats, last_rollup=msgspec.json.decode(raw) if raw else None)

    @get("/health", summary="Round-trip latency to the cache store (503 when it is down)")
    async def health(self, request: Request) -> Response[CacheHealth]:
        kv = request.app.state.kv
        backend = "redis" if isinstance(kv, RedisKV) else "memory"
        started = time.perf_counter()
        try:
            await kv.ping()
        except Exception as exc:
            elapsed = round((time.perf_counter() - started) * 1000, 3)
            body = CacheHealth(status="down", backend=backend, latency_ms=elapsed, detail=type(exc).__name__)
            return Response(body, status_code=503, headers={"Retry-After": "1"})
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return Response(CacheHealth(status="ok", backend=backend, latency_ms=elapsed))

    @delete(
        "/",
        guards=[requires_admin],
        status_code=200,
        summary="Drop this application's cached entries (admin)",
    )
    async def clear(self, request: Request) -> CacheCleared:
        return CacheCleared(removed=await cache_of(request).clear())
