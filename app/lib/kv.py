"""A small key-value facade over Redis (production) or process memory (embedded mode).

Litestar's `Store` (RedisStore/MemoryStore) has get/set/delete/expiry but no atomic "set if absent" and no
atomic "increment with expiry", which rate limiting, idempotency locks and fleet-wide cache counters need.
This facade adds exactly those, with the same semantics on both backends, and namespaces every key so
that flushing the app's keys never touches anybody else's.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError


class KV(Protocol):
    namespace: str

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...
    async def set_nx(self, key: str, value: bytes, ttl: float) -> bool: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr_window(self, key: str, window: int) -> tuple[int, float]: ...
    async def incr(self, key: str, amount: int = 1) -> int: ...
    async def get_counters(self, *keys: str) -> list[int]: ...
    async def ping(self) -> None: ...
    async def clear_namespace(self) -> int: ...
    async def count_keys(self) -> int: ...
    async def memory_bytes(self) -> int | None: ...
    async def close(self) -> None: ...


# INCR then set the expiry only when the key is new: one atomic round trip per request, so concurrent
# requests can never both see "49" and both pass a limit of 50.
_INCR_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


_BACKGROUND: set[asyncio.Task[None]] = set()  # strong references to in-flight flushes


class RedisKV:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._pending: list[tuple[str, int, asyncio.Future[tuple[int, float]]]] = []

    def _k(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(self._k(key))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.client.set(self._k(key), value, px=int(ttl * 1000) if ttl else None)

    async def set_nx(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self.client.set(self._k(key), value, px=int(ttl * 1000), nx=True))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.client.delete(*(self._k(k) for k in keys))

    async def incr_window(self, key: str, window: int) -> tuple[int, float]:
        """Count one request in a fixed window. Every request of every route calls this (rate limits), so
        calls made in the same event-loop turn share one pipelined round trip. redis-py has no automatic
        pipelining; a round trip through its client cost ~0.15 ms of CPU per request under load, the
        largest single item of an order placement (docs/BENCHMARKS.md). Each count is still its own
        atomic script call, so the limits stay exact."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, float]] = loop.create_future()
        self._pending.append((self._k(key), window * 1000, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_window_counts)
        return await future

    def _flush_window_counts(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send_window_counts(batch))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _send_window_counts(self, batch: list[tuple[str, int, asyncio.Future[tuple[int, float]]]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, window_ms, _ in batch:
                pipe.eval(_INCR_WINDOW, 1, key, window_ms)  # EVAL: the server caches the compiled script
            results = await pipe.execute(raise_on_error=False)
            if len(results) != len(batch):  # never hand a count to the wrong request
                raise ConnectionError(f"{len(results)} replies to {len(batch)} pipelined counts")
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():  # the request went away meanwhile
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    count, pttl = result
                    future.set_result((int(count), max(int(pttl), 0) / 1000.0))
        except BaseException as exc:
            # Whatever failed, no caller may be left waiting: each gets the error (and takes the limiter's
            # documented safe path).
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise

    async def incr(self, key: str, amount: int = 1) -> int:
        return int(await self.client.incrby(self._k(key), amount))

    async def get_counters(self, *keys: str) -> list[int]:
        values = await self.client.mget([self._k(k) for k in keys])
        return [int(v) if v is not None else 0 for v in values]

    async def ping(self) -> None:
        await self.client.ping()

    async def _scan(self):
        async for key in self.client.scan_iter(match=f"{self.namespace}:*", count=1000):
            yield key

    async def clear_namespace(self) -> int:
        removed = 0
        batch: list[bytes] = []
        async for key in self._scan():
            batch.append(key)
            if len(batch) >= 500:
                removed += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            removed += await self.client.unlink(*batch)
        return removed

    async def count_keys(self) -> int:
        return sum([1 async for _ in self._scan()])

    async def memory_bytes(self) -> int | None:
        total = 0
        async for key in self._scan():
            total += await self.client.memory_usage(key) or 0
        return total

    async def close(self) -> None:
        await self.client.aclose()


class MemoryKV:
    """Single-process stand-in (embedded mode). asyncio is single-threaded, so each method is atomic."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._lock = asyncio.Lock()

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._data[key] = (value, time.monotonic() + ttl if ttl else None)

    async def set_nx(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._data[key] = (value, time.monotonic() + ttl)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr_window(self, key: str, window: int) -> tuple[int, float]:
        now = time.monotonic()
        current = self._live(key)
        if current is None:
            self._data[key] = (b"1", now + window)
            return 1, float(window)
        _, expires = self._data[key]
        count = int(current) + 1
        self._data[key] = (str(count).encode(), expires)
        return count, max((expires or now) - now, 0.0)

    async def incr(self, key: str, amount: int = 1) -> int:
        current = int(self._live(key) or 0) + amount
        _, expires = self._data.get(key, (b"", None))
        self._data[key] = (str(current).encode(), expires)
        return current

    async def get_counters(self, *keys: str) -> list[int]:
        return [int(self._live(k) or 0) for k in keys]

    async def ping(self) -> None:
        return None

    async def clear_namespace(self) -> int:
        n = len(self._data)
        self._data.clear()
        return n

    async def count_keys(self) -> int:
        return sum(1 for k in list(self._data) if self._live(k) is not None)

    async def memory_bytes(self) -> int | None:
        return sum(len(k) + len(v) for k, (v, _) in self._data.items())

    async def close(self) -> None:
        return None

    def keys_matching(self, pattern: str) -> list[str]:
        return [k for k in self._data if fnmatch.fnmatch(k, pattern)]


REDIS_HEALTH_CHECK_SECONDS = 30
REDIS_POOL_CONNECTIONS = 200
REDIS_POOL_WAIT_SECONDS = 2.0


class QueuingConnectionPool(aioredis.ConnectionPool):
    """redis-py's plain pool, except that a caller finding every one of `max_connections` in use waits
    (up to `wait` seconds) for one to be released instead of failing with MaxConnectionsError.

    redis-py has this as BlockingConnectionPool, which takes a Condition and starts a timeout on every
    call: 7-20 us more CPU per command than the plain pool (measured side by side on 20,000 GETs), on the
    rate limit, the cache and publishing of every request. Here the plain pool's path is unchanged and
    only a call that found the pool exhausted waits: every release wakes the waiters, which try again."""

    def __init__(self, *, wait: float = REDIS_POOL_WAIT_SECONDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait = wait
        self._freed: asyncio.Event | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except MaxConnectionsError:
            pass
        deadline = asyncio.get_running_loop().time() + self.wait
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise RedisConnectionError("No Redis connection became free in time")
            if self._freed is None:
                self._freed = asyncio.Event()
            try:
                await asyncio.wait_for(self._freed.wait(), remaining)
            except TimeoutError:
                pass
            try:
                return await super().get_connection(*args, **kwargs)
            except MaxConnectionsError:
                continue

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()


def make_redis(url: str) -> aioredis.Redis:
    """The one Redis client configuration (KV, cache, rate limits, idempotency and the SAQ queue).

    Short timeouts: when Redis is down, callers fall back (cache) or fail fast (rate limits) instead of
    holding a request for the default (no) timeout.

    Retry: a client made by `from_url` retries nothing (its connections get `Retry(NoBackoff(), 0)`), so
    after a Redis restart every pooled connection fails its next command with "Connection closed by
    server": a worker's first job failed that way (tests/integration/test_worker_faults.py). One
    immediate retry on a connection error reconnects and repeats the command once; a timeout is not
    retried (it has already waited `socket_timeout`), and during an outage the retry costs only one more
    refused connect. `health_check_interval`: a connection idle for longer is PINGed before use.

    Pool: a burst of concurrent calls in one process past REDIS_POOL_CONNECTIONS (every request takes a
    rate-limit call) queues for a free connection (QueuingConnectionPool); the plain pool failed every
    call past the 200th (tests/integration/test_kv.py).
    """
    pool = QueuingConnectionPool.from_url(
        url,
        max_connections=REDIS_POOL_CONNECTIONS,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        health_check_interval=REDIS_HEALTH_CHECK_SECONDS,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis.from_pool(pool)
