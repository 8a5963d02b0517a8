"""Which channels a process's hub subscribes: the account-scoped ones only while one of its connections
holds an account-scoped stream, so a process that serves no stream receives none of what every writer
publishes. Real hub and channels plugin on the memory backend, no network."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar.channels.backends.memory import MemoryChannelsBackend

from app.domain.identity.schemas import Principal
from app.domain.streams import publish
from app.domain.streams.hub import Client, ResilientChannelsPlugin, StreamHub

pytestmark = pytest.mark.asyncio

OWNER, ACCOUNT = uuid.uuid4(), uuid.uuid4()


def _account_channels() -> set[str]:
    # Named at the time of use: the prefix is the running app's (another test may have started one).
    return {publish.channel(kind) for kind in publish.ACCOUNT_KINDS}


class SlowBackend(MemoryChannelsBackend):
    """Subscribing and unsubscribing take a moment, as a Redis round trip does."""

    async def subscribe(self, channels):
        await asyncio.sleep(0.01)
        await super().subscribe(channels)

    async def unsubscribe(self, channels):
        await asyncio.sleep(0.01)
        await super().unsubscribe(channels)


async def _hub():
    backend = SlowBackend()
    plugin = ResilientChannelsPlugin(backend=backend, arbitrary_channels_allowed=True)
    hub = StreamHub(plugin, None, 3600)  # type: ignore[arg-type]
    return plugin, backend, hub


def _client(hub: StreamHub) -> Client:
    principal = Principal(user_id=OWNER, role="trader", key_id=uuid.uuid4(), email="t@example.com")
    client = Client(hub, principal, 100)
    hub.attach(client)
    return client


async def _switch(hub: StreamHub, client: Client, wanted: set[str]) -> None:
    """What Client.set_streams does with the hub (without reading start points from PostgreSQL)."""
    await hub.route(client, wanted - client.streams, client.streams - wanted)
    client.streams = set(wanted)


async def test_account_channels_are_subscribed_only_while_a_connection_holds_an_account_stream():
    plugin, backend, hub = await _hub()
    async with plugin:
        await hub.start()
        assert backend._channels == set()  # started, serving nobody: subscribed to nothing

        a, b = _client(hub), _client(hub)
        await _switch(hub, a, {"prices:DEMO"})
        assert backend._channels == {publish.channel("prices:DEMO")}

        await _switch(hub, a, {"prices:DEMO", "trade_updates"})
        assert backend._channels == _account_channels() | {publish.channel("prices:DEMO")}
        await _switch(hub, b, {"accounts"})
        await _switch(hub, a, {"prices:DEMO"})  # b still holds one
        assert _account_channels() <= backend._channels

        plugin.publish(publish.header(OWNER, ACCOUNT) + b'{"type":"account"}', publish.channel("accounts"))
        assert await asyncio.wait_for(b.take(), 1) == (0, '{"type":"account"}')

        await _switch(hub, b, set())
        assert backend._channels == {publish.channel("prices:DEMO")}
        await a.aclose()
        assert backend._channels == set()
        await hub.stop()


@pytest.mark.parametrize("first", ["leave", "join"])
async def test_a_connection_leaving_while_another_joins_leaves_the_channels_subscribed(first):
    """The last account-stream connection's unsubscription and a new one's subscription overlap (each
    waits on the backend): whichever starts first, the joining connection ends up receiving."""
    plugin, backend, hub = await _hub()
    async with plugin:
        await hub.start()
        leaving, joining = _client(hub), _client(hub)
        await _switch(hub, leaving, {"trade_updates"})
        leave = _switch(hub, leaving, set())
        join = _switch(hub, joining, {"accounts"})
        await asyncio.gather(*((leave, join) if first == "leave" else (join, leave)))
        assert _account_channels() <= backend._channels
        plugin.publish(publish.header(OWNER, ACCOUNT) + b'{"type":"account"}', publish.channel("accounts"))
        assert await asyncio.wait_for(joining.take(), 1) == (0, '{"type":"account"}')
        await joining.aclose()
        assert not _account_channels() & backend._channels
        await hub.stop()


class SilentBackend(MemoryChannelsBackend):
    """A backend that takes every publish and delivers none (Redis slow or down)."""

    async def publish(self, data, channels):
        return None


async def test_a_trade_update_reaches_the_publishing_processs_own_subscribers_at_once_and_its_echo_is_dropped():
    """A process's own trade updates go to its clients when they are published, not after a round trip
    through the backend (publish.deliver_locally); the backend's copy, arriving later, is not delivered
    a second time, and other kinds keep the backend's way."""
    plugin = ResilientChannelsPlugin(backend=SilentBackend(), arbitrary_channels_allowed=True)
    hub = StreamHub(plugin, None, 3600)  # type: ignore[arg-type]
    async with plugin:
        await hub.start()
        publish.configure(plugin, "local-test")
        publish.deliver_locally(plugin, hub.dispatch)
        try:
            client = _client(hub)
            await _switch(hub, client, {"trade_updates", "accounts"})
            client.known_accounts = set()  # the account is newer than the subscription: its log starts at 1
            first = publish.header(OWNER, ACCOUNT, 1) + b'{"seq":1}'
            publish.publish(publish.TRADE_UPDATES, first)
            assert list(client._items) == [(1, '{"seq":1}')]  # before any await: no hop in between
            hub.dispatch(publish.TRADE_UPDATES, first)  # the backend's copy
            assert list(client._items) == [(1, '{"seq":1}')]
            publish.publish(publish.ACCOUNTS, publish.header(OWNER, ACCOUNT) + b'{"type":"account"}')
            publish.publish(publish.TRADE_UPDATES, publish.header(OWNER, ACCOUNT, 2))  # a hint: no body
            assert list(client._items) == [(1, '{"seq":1}')]

            publish.deliver_locally(plugin, None)
            publish.publish(publish.TRADE_UPDATES, publish.header(OWNER, ACCOUNT, 2) + b'{"seq":2}')
            assert list(client._items) == [(1, '{"seq":1}')]
            await client.aclose()
        finally:
            publish.deliver_locally(plugin, None)
            publish.unconfigure(plugin)
            await hub.stop()


async def test_a_subscription_hints_the_skips_its_own_process_remembers_once_it_is_routed():
    """A writer of this process decided to skip an event (nobody subscribed yet) and commits after the
    subscription read where it starts: the event is in neither, so the subscription hints the process's
    remembered skips for what it gained, after its client is routed (the hint reads the log)."""
    plugin = ResilientChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    hub = StreamHub(plugin, None, 3600)  # type: ignore[arg-type]
    hints: list[tuple[str, bytes, bool]] = []
    async with plugin:
        await hub.start()
        first = _client(hub)
        hub.interest.hint = lambda name, payload: hints.append(
            (name, payload, first in hub.routes[publish.TRADE_UPDATES].get("o" + OWNER.hex, ()))
        )
        hub.interest.note_skipped(OWNER.hex, ACCOUNT.hex, 41)
        await _switch(hub, first, {"trade_updates"})
        assert hints == [(publish.TRADE_UPDATES, publish.header(OWNER, ACCOUNT, 41), True)]  # routed first
        await _switch(hub, _client(hub), {"trade_updates"})  # the process already held the key: no hint
        await _switch(hub, first, {"accounts"})  # (another key, no skip of it)
        assert len(hints) == 1
        await hub.stop()
