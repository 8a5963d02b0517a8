"""Read-through cache for hot reference reads (instruments, exchanges, candles, strategies, finished
backtest analytics). Never used for balances, orders or positions.

- Values are stored as ready-to-send JSON bytes, so a hit costs one KV round trip and no encoding.
- Invalidation is by generation: each group (e.g. `candles:DEMO`) has a counter that is part of every key;
  a write bumps it, and every older entry becomes unreachable at once (then expires by TTL).
- Stampede protection: concurrent misses for one key in one process share a single load (single-flight);
  across N processes at most N loads run at once.
- Hits/misses/errors are counted in the KV (fleet-wide, atomic INCR) and in Prometheus.
- If the KV is down, reads fall through to the loader (logged and counted), never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from app.lib.decimals import encode_json
from app.lib.kv import KV, MemoryKV, RedisKV
from app.lib.log import ThrottledWarning, get_logger
from app.lib.metrics import CACHE_EVENTS

log = get_logger("app.cache")
_warn_unavailable = ThrottledWarning(log, "cache_unavailable")
_warn_store_failed = ThrottledWarning(log, "cache_store_failed")

STAT_KEYS = ("stats:hits", "stats:misses", "stats:errors")
# Every cached value lives under this prefix (see get_json); clear() and stats() look at nothing else.
ENTRY_PREFIX = "c:"


class Cache:
    def __init__(self, kv: KV, default_ttl: int = 30) -> None:
        self.kv = kv
        self.default_ttl = default_ttl
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    async def _generation(self, group: str) -> int:
        raw = await self.kv.get(f"gen:{group}")
        return int(raw) if raw else 0

    async def _count(self, event: str) -> None:
        CACHE_EVENTS.labels(event=event).inc()
        try:
            await self.kv.incr(f"stats:{event}")
        except Exception:
            pass

    async def get_json(
        self, group: str, key: str, loader: Callable[[], Awaitable[Any]], ttl: int | None = None
    ) -> bytes:
        """JSON bytes for (group, key), loading and encoding with msgspec on a miss."""
        try:
            gen = await self._generation(group)
            full_key = f"{ENTRY_PREFIX}{group}:{gen}:{key}"
            cached = await self.kv.get(full_key)
        except Exception as exc:
            _warn_unavailable(error=repr(exc)[:200])
            CACHE_EVENTS.labels(event="errors").inc()
            return encode_json(await loader())
        if cached is not None:
            await self._count("hits")
            return cached
        await self._count("misses")
        pending = self._inflight.get(full_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[full_key] = future
        try:
            payload = encode_json(await loader())
            try:
                await self.kv.set(full_key, payload, ttl=ttl or self.default_ttl)
            except Exception as exc:
                _warn_store_failed(error=repr(exc)[:200])
            future.set_result(payload)
            return payload
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(full_key, None)

    async def invalidate(self, *groups: str) -> None:
        for group in groups:
            try:
                await self.kv.incr(f"gen:{group}")
            except Exception as exc:  # a stale entry lives at most one TTL
                log.warning("cache_invalidate_failed", group=group, error=repr(exc)[:200])

    async def stats(self) -> dict[str, Any]:
        """Fleet-wide counters plus the number and memory of live cache entries (not of the rate-limit
        windows and idempotency records that share the KV namespace)."""
        hits, misses, errors = await self.kv.get_counters(*STAT_KEYS)
        total = hits + misses
        keys, memory = await self._entries_size()
        return {
            "hits": hits,
            "misses": misses,
            "errors": errors,
            "hit_ratio": (hits / total) if total else None,
            "keys": keys,
            "memory_bytes": memory,
        }

    async def clear(self) -> int:
        """Drop every cached entry of this application and nothing else.

        Only the `c:` entries go: idempotency records and rate-limit windows live in the same KV namespace
        and wiping them would let a retried order through twice. Generation counters stay too, so an
        entry written by a request that raced the clear is still unreachable after the next write.
        """
        if isinstance(self.kv, RedisKV):
            client = self.kv.client
            removed = 0
            batch: list[bytes] = []
            async for key in client.scan_iter(match=self._redis_entry_pattern(), count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    removed += await client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await client.unlink(*batch)
            return removed
        if isinstance(self.kv, MemoryKV):
            keys = self.kv.keys_matching(f"{ENTRY_PREFIX}*")
            await self.kv.delete(*keys)
            return len(keys)
        return await self.kv.clear_namespace()

    def _redis_entry_pattern(self) -> str:
        return f"{_glob_escape(self.kv.namespace)}:{ENTRY_PREFIX}*"

    async def _entries_size(self) -> tuple[int, int | None]:
        if isinstance(self.kv, RedisKV):
            client = self.kv.client
            count = memory = 0
            batch: list[bytes] = []

            async def measure() -> int:
                # One pipelined round trip per batch: MEMORY USAGE per key would be N round trips.
                async with client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.memory_usage(key)
                    return sum(v or 0 for v in await pipe.execute())

            async for key in client.scan_iter(match=self._redis_entry_pattern(), count=1000):
                batch.append(key)
                count += 1
                if len(batch) >= 500:
                    memory += await measure()
                    batch.clear()
            if batch:
                memory += await measure()
            return count, memory
        if isinstance(self.kv, MemoryKV):
            count = memory = 0
            for key in self.kv.keys_matching(f"{ENTRY_PREFIX}*"):
                value = await self.kv.get(key)  # also drops the entry if it has expired
                if value is not None:
                    count += 1
                    memory += len(key) + len(value)
            return count, memory
        return await self.kv.count_keys(), await self.kv.memory_bytes()


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
