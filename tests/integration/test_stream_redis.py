"""The stream machinery's Redis client under a burst: every API process's stream runtime shares one client
for the connection slots, the subscriber registry and publishing, and a burst of stream connections (every
client reconnecting after a restart) makes hundreds of calls at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.domain.streams.runtime import channels
from app.domain.streams.slots import ConnectionSlots

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_burst_of_subscriptions_waits_for_a_redis_connection_instead_of_failing(settings):
    """redis-py's plain pool raises MaxConnectionsError past 100 connections in use: the subscriptions
    past it failed (`unavailable`) and the connection slots fell back to counting locally."""
    async with channels(settings) as (_plugin, redis, interest):
        slots = ConnectionSlots(redis, settings.redis_prefix, 1000, 15)
        user = uuid.uuid4()
        keys = [f"a{uuid.uuid4().hex}" for _ in range(300)]
        conns = [uuid.uuid4().hex for _ in keys]
        assert all(await asyncio.gather(*(slots.acquire(user, c) for c in conns)))
        await asyncio.gather(*(interest.acquire([k]) for k in keys))
        assert await redis.zcard(slots._key(user)) == 300  # every slot is in Redis, none only local
        fields = await redis.hgetall(interest.key)
        assert {f"{interest.process} {k}".encode() for k in keys} <= set(fields)
        await asyncio.gather(*(interest.release([k]) for k in keys))
        await asyncio.gather(*(slots.release(user, c) for c in conns))
        assert await redis.zcard(slots._key(user)) == 0
