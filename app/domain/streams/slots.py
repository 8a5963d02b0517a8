"""The per-user stream connection limit (STREAM_MAX_CONNECTIONS_PER_USER), across every API process.

With Redis: one sorted set per user of connection ids scored by their last heartbeat; a connection
counts while it refreshes its entry (every heartbeat), so the slots of a process that died without
closing its connections free themselves after STALE_HEARTBEATS heartbeats. Without Redis (embedded, one
process) a set in memory.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from app.lib.log import get_logger

log = get_logger("app.streams")

STALE_HEARTBEATS = 3

_ACQUIRE = """
local now = tonumber(ARGV[1])
local stale = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.floor(stale * 1000))
return 1
"""


class ConnectionSlots:
    def __init__(self, redis: Any, prefix: str, limit: int, heartbeat_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.limit = limit
        self.stale = STALE_HEARTBEATS * heartbeat_seconds + 5
        self._local: dict[uuid.UUID, set[str]] = {}
        self._acquire = redis.register_script(_ACQUIRE) if redis is not None else None

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self.prefix}:stream:conns:{user_id.hex}"

    async def acquire(self, user_id: uuid.UUID, conn_id: str) -> bool:
        if self._acquire is None:
            held = self._local.setdefault(user_id, set())
            if len(held) >= self.limit:
                return False
            held.add(conn_id)
            return True
        try:
            ok = await self._acquire(
                keys=[self._key(user_id)], args=[time.time(), self.stale, self.limit, conn_id]
            )
        except Exception as exc:  # Redis unavailable: count this process's connections only, never refuse all
            log.warning("stream_slots_unavailable", error=repr(exc)[:200])
            ok = len(self._local.get(user_id, ())) < self.limit
        if ok:
            self._local.setdefault(user_id, set()).add(conn_id)
        return bool(ok)

    async def release(self, user_id: uuid.UUID, conn_id: str) -> None:
        held = self._local.get(user_id)
        if held is not None:
            held.discard(conn_id)
            if not held:
                del self._local[user_id]
        if self.redis is not None:
            try:
                await self.redis.zrem(self._key(user_id), conn_id)
            except Exception as exc:  # the entry expires with its key
                log.warning("stream_slots_unavailable", error=repr(exc)[:200])

    async def refresh(self) -> None:
        """Mark every connection of this process alive (called on each heartbeat)."""
        if self.redis is None or not self._local:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, held in self._local.items():
                pipe.zadd(self._key(user_id), dict.fromkeys(held, now), xx=True)
                pipe.pexpire(self._key(user_id), int(self.stale * 1000))
            await pipe.execute()
