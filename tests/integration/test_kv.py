"""The Redis facade's pipelined window counter (every rate-limited request goes through it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.lib.kv import RedisKV, make_redis
from tests.conftest import REDIS_URL, RUN_ID

pytestmark = pytest.mark.asyncio(loop_scope="session")


def fresh_kv(url: str = REDIS_URL) -> RedisKV:
    return RedisKV(make_redis(url), f"tdtest-{RUN_ID}-kv{uuid.uuid4().hex[:6]}")


async def test_concurrent_counts_are_exact_and_share_round_trips(monkeypatch):
    kv = fresh_kv()
    batches: list[int] = []
    send = kv._send_window_counts

    async def counting_send(batch):
        batches.append(len(batch))
        await send(batch)

    monkeypatch.setattr(kv, "_send_window_counts", counting_send)
    # Two processes' worth of counters on one key: every count is handed out exactly once.
    other = fresh_kv()
    other.namespace = kv.namespace
    results = await asyncio.gather(*(k.incr_window("rl:k", 60) for _ in range(150) for k in (kv, other)))
    assert sorted(count for count, _ in results) == list(range(1, 301))
    assert all(0 < ttl <= 60 for _, ttl in results)
    # Calls made in one event-loop turn went out together, not one round trip each.
    assert sum(batches) == 150 and len(batches) < 10, batches
    # Separate windows stay separate, and a new key starts at 1 with the full window.
    assert await kv.incr_window("rl:other", 5) == (1, pytest.approx(5, abs=0.1))
    await kv.close()
    await other.close()


async def test_a_failed_round_trip_fails_every_caller_of_the_batch():
    kv = fresh_kv("redis://127.0.0.1:1/0")  # nothing listens there
    results = await asyncio.gather(*(kv.incr_window("rl:k", 60) for _ in range(5)), return_exceptions=True)
    assert len(results) == 5 and all(isinstance(r, Exception) for r in results), results
    assert not kv._pending
    await kv.close()


async def test_a_malformed_reply_fails_the_callers_instead_of_leaving_them_waiting(monkeypatch):
    kv = fresh_kv()

    class OneReplyShort:
        def __init__(self, real):
            self.real = real

        def eval(self, *args):
            self.real.eval(*args)

        async def execute(self, raise_on_error: bool = True):
            return (await self.real.execute(raise_on_error=raise_on_error))[1:]

    real_pipeline = kv.client.pipeline
    monkeypatch.setattr(kv.client, "pipeline", lambda **kw: OneReplyShort(real_pipeline(**kw)))
    results = await asyncio.wait_for(
        asyncio.gather(*(kv.incr_window("rl:k", 60) for _ in range(3)), return_exceptions=True), timeout=5
    )
    assert all(isinstance(r, Exception) for r in results), results
    await kv.close()


async def test_a_burst_past_the_pool_size_waits_for_a_connection_instead_of_failing():
    """More concurrent calls in one process than the pool has connections (a burst of requests, each
    taking a rate-limit or cache call) queue for a free connection: redis-py's plain pool raised
    MaxConnectionsError for every call past the 200th."""
    from app.lib.kv import REDIS_POOL_CONNECTIONS

    kv = fresh_kv()
    burst = REDIS_POOL_CONNECTIONS * 2
    try:
        await asyncio.gather(*(kv.set(f"burst:{i}", b"%d" % i, ttl=60) for i in range(burst)))
        values = await asyncio.gather(*(kv.get(f"burst:{i}") for i in range(burst)))
        assert values == [b"%d" % i for i in range(burst)]
    finally:
        await kv.close()


async def test_an_exhausted_pool_queues_callers_and_gives_up_after_its_wait():
    """QueuingConnectionPool: with every connection in use a call waits for a release (and gets that
    connection); one that waits longer than `wait` fails like an unreachable Redis."""
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from app.lib.kv import QueuingConnectionPool

    pool = QueuingConnectionPool.from_url(REDIS_URL, max_connections=2, wait=0.3)
    client = aioredis.Redis.from_pool(pool)
    try:
        assert await asyncio.gather(*(client.echo(str(i)) for i in range(50))) == [str(i).encode() for i in range(50)]
        assert len(pool._in_use_connections) == 0 and len(pool._available_connections) <= 2
        held = [await pool.get_connection(), await pool.get_connection()]
        waiting = asyncio.create_task(client.echo("late"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await pool.release(held.pop())
        assert await waiting == b"late"
        held.append(await pool.get_connection())
        with pytest.raises(RedisConnectionError):
            await client.echo("never")
        for connection in held:
            await pool.release(connection)
    finally:
        await client.aclose()
