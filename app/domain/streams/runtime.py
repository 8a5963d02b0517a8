"""Per-process stream machinery, opened with the API (hub, connection slots, publisher) or with a
worker process (publisher only)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.desk.sessions import session_alive
from app.domain.identity.services import live_principals
from app.domain.streams import publish
from app.domain.streams.hub import CLOSE_CREDENTIALS, CallbackSubscriber, ResilientChannelsPlugin, StreamHub
from app.domain.streams.interest import Interest
from app.domain.streams.slots import ConnectionSlots
from app.lib.db import driver_connection
from app.lib.log import get_logger
from app.lib.settings import Settings

log = get_logger("app.streams")


@dataclass
class StreamRuntime:
    settings: Settings
    engine: AsyncEngine
    hub: StreamHub
    slots: ConnectionSlots

    async def read(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        return await read_with(self.engine, fn)


async def read_with(engine: AsyncEngine, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run fn(asyncpg connection) on a pooled connection (hand-written SQL, no SQLAlchemy transaction)."""
    async with engine.connect() as conn:
        return await fn(await driver_connection(conn))


REDIS_CONNECTIONS = 64  # the stream client's pool: callers beyond it wait for a connection
REDIS_WAIT_SECONDS = 10.0  # ... for at most this long (then the call fails as if Redis were down)


def _redis(settings: Settings) -> Any:
    """The stream machinery's Redis client (connection slots, subscriber registry, publishing, pub/sub).

    A pool that makes callers wait for a free connection: redis-py's plain pool raises
    MaxConnectionsError once 100 connections are in use, and a burst of stream connections (clients
    reconnecting after a restart, a load test opening hundreds) makes that many slot and registry calls
    at once; the subscriptions past it were answered `unavailable` (and a client that waited for its
    `subscribed` waited forever). Each call takes a Redis round trip, so waiting is short. (kv.py's
    QueuingConnectionPool: only a call that finds the pool exhausted waits; placement publishes here.)"""
    import redis.asyncio as aioredis

    from app.lib.kv import QueuingConnectionPool

    # No socket timeout: the pub/sub connection is idle between messages by design.
    pool = QueuingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        wait=REDIS_WAIT_SECONDS,
        socket_connect_timeout=1.0,
        socket_keepalive=True,
    )
    return aioredis.Redis.from_pool(pool)


@contextlib.asynccontextmanager
async def channels(settings: Settings) -> AsyncIterator[tuple[ResilientChannelsPlugin, Any, Interest]]:
    """The started channels plugin (Redis pub/sub across processes, memory in one process), installed as
    this process's publisher, with the registry of which accounts have subscribers (interest.py)."""
    redis = _redis(settings) if settings.redis_url else None
    backend: ChannelsBackend = (
        RedisChannelsPubSubBackend(redis=redis, key_prefix=f"{settings.redis_prefix}_CHANNELS")
        if redis is not None
        else MemoryChannelsBackend()
    )
    plugin = ResilientChannelsPlugin(backend=backend, arbitrary_channels_allowed=True)
    interest = Interest(redis, settings.redis_prefix, uuid.uuid4().hex[:16])
    plugin.interest = interest
    try:
        async with plugin:
            if redis is not None:
                # Listen for other processes' "+"/"-" before the first read of the registry, so that no
                # change falls between the two. Redis unreachable: publish everything until it is back.
                try:
                    await backend.subscribe([interest.key])
                    plugin._channels.setdefault(interest.key, set()).add(  # noqa: SLF001 (see hub.py)
                        CallbackSubscriber(plugin, interest.on_message)
                    )
                    interest.listening = True
                except Exception as exc:
                    log.warning("stream_interest_subscribe_failed", error=repr(exc)[:200])
            await interest.start()
            publish.configure(plugin, settings.redis_prefix, interest)
            try:
                yield plugin, redis, interest
            finally:
                publish.unconfigure(plugin)
                await interest.stop()
    finally:
        if redis is not None:
            await redis.aclose()


def _credentials_check(hub: StreamHub, engine: AsyncEngine, kv: Any) -> Callable[[], Awaitable[None]]:
    """A heartbeat hook: every open connection's key checked again (one query for all of them), and the
    connections whose key was revoked or expired, or whose user was deactivated or given another role,
    closed with 4401; so are a desk page's once its session has ended (signed out or expired). A
    connection is authorised once, when it connects and for each subscription; this bounds how long a
    revocation, a lost right or an ended session goes on streaming to one heartbeat."""

    async def check() -> None:
        clients = [c for c in hub.clients if c.close_code is None]
        if not clients:
            return
        live = await live_principals(engine, {c.principal.key_id for c in clients})
        for client in clients:
            if live.get(client.principal.key_id) != client.principal or (
                client.desk_session is not None and kv is not None
                and not await session_alive(kv, client.desk_session)
            ):
                client.close(CLOSE_CREDENTIALS, "credentials")

    return check


@contextlib.asynccontextmanager
async def stream_runtime(
    settings: Settings, engine: AsyncEngine, kv: Any = None
) -> AsyncIterator[StreamRuntime]:
    """`kv`: the app's key-value store, where desk sessions live (None: no desk sessions to check)."""
    async with channels(settings) as (plugin, redis, interest):
        hub = StreamHub(plugin, lambda fn: read_with(engine, fn), settings.stream_heartbeat_seconds, interest)
        slots = ConnectionSlots(
            redis,
            settings.redis_prefix,
            settings.stream_max_connections_per_user,
            settings.stream_heartbeat_seconds,
        )
        hub.on_heartbeat.append(slots.refresh)
        hub.on_heartbeat.append(_credentials_check(hub, engine, kv))
        await hub.start()
        publish.deliver_locally(plugin, hub.dispatch)
        try:
            yield StreamRuntime(settings, engine, hub, slots)
        finally:
            publish.deliver_locally(plugin, None)
            await hub.stop()
