"""Publishing stream messages after commit: never before, never in the way of the write.

Every writer hands its messages here only once its transaction has committed (placement after its
one-statement write or its COMMIT; SQLAlchemy writers through `defer`, which `app.lib.db.tx` flushes
after COMMIT and drops on rollback). `publish` only appends to the channels plugin's in-process queue: a
background task sends it to the backend (Redis pub/sub across processes, memory in the embedded
default), so a slow or dead Redis never slows or fails an order. A message lost on the way is not lost
for a subscriber of `trade_updates`: the hub notices the gap in `seq` at the next event and reads the
missing events from PostgreSQL (hub.py).

Channel payloads of account-scoped streams start with a fixed header (owner id, account id as 32 hex
digits each, seq as 20 digits) so that a receiving process routes a message without decoding it. A
header with no body is a hint (interest.py): "this account's log has reached seq n".

Account-scoped messages that no process has a subscriber for are not published at all (`wanted`,
interest.py); writers may ask `wanted` first to skip building them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from app.lib.log import get_logger
from app.lib.metrics import STREAM_PUBLISH_FAILURES, STREAM_PUBLISH_SKIPPED

if TYPE_CHECKING:
    from app.domain.streams.interest import Interest

log = get_logger("app.streams")

HEADER_BYTES = 84
TRADE_UPDATES, ACCOUNTS, RISK = "trade_updates", "accounts", "risk"
ACCOUNT_KINDS = (TRADE_UPDATES, ACCOUNTS, RISK)
OUTBOX_KEY = "td_stream_outbox"
_SKIPPED = {
    TRADE_UPDATES: STREAM_PUBLISH_SKIPPED.labels(type="trade_update"),
    ACCOUNTS: STREAM_PUBLISH_SKIPPED.labels(type="account"),
    RISK: STREAM_PUBLISH_SKIPPED.labels(type="risk"),
}


class _Publisher:
    plugin: Any = None  # a started litestar ChannelsPlugin (or None: publishing is off in this process)
    prefix: str = "td"
    loop: asyncio.AbstractEventLoop | None = None  # the plugin's loop (its queue is not thread-safe)
    interest: Interest | None = None  # None: publish every message (nobody counts subscribers)


_PUBLISHER = _Publisher()

# The hub of each plugin's process (StreamHub.dispatch by the plugin's id), which a published trade
# update reaches at once (`publish`).
_LOCAL: dict[int, Callable[[str, bytes], None]] = {}


# Every started publisher of this process, newest last. One process normally has one (the API's, or a
# worker's); an embedded run or a test process can start a worker's next to the API's, and when one stops
# the newest remaining one publishes again instead of none.
_INSTALLED: list[tuple[Any, str, asyncio.AbstractEventLoop | None, Interest | None]] = []


def configure(plugin: Any, prefix: str, interest: Interest | None = None) -> None:
    """Called by the API's lifespan and by a worker process's startup; None turns publishing off."""
    loop = asyncio.get_running_loop() if plugin is not None else None
    if plugin is not None:
        _INSTALLED.append((plugin, prefix, loop, interest))
    _install(plugin, prefix, loop, interest)


def _install(plugin: Any, prefix: str, loop: asyncio.AbstractEventLoop | None, interest: Interest | None) -> None:
    _PUBLISHER.plugin = plugin
    _PUBLISHER.prefix = prefix
    _PUBLISHER.loop = loop
    _PUBLISHER.interest = interest if plugin is not None else None
    if interest is not None:
        interest.hint = publish


def deliver_locally(plugin: Any, dispatch: Callable[[str, bytes], None] | None) -> None:
    """Hand this process's trade updates published through `plugin` to its hub (`dispatch`) as well as
    to the backend; None stops it. Called by the stream runtime, which owns both."""
    if dispatch is None:
        _LOCAL.pop(id(plugin), None)
    else:
        _LOCAL[id(plugin)] = dispatch


def unconfigure(plugin: Any) -> None:
    _INSTALLED[:] = [entry for entry in _INSTALLED if entry[0] is not plugin]
    if _PUBLISHER.plugin is plugin:
        if _INSTALLED:
            _install(*_INSTALLED[-1])
        else:
            _install(None, _PUBLISHER.prefix, None, None)


def enabled() -> bool:
    return _PUBLISHER.plugin is not None


def channel(name: str) -> str:
    """The backend channel of a stream kind (`trade_updates`) or name (`prices:DEMO`), namespaced so that
    several deployments (or test runs) can share one Redis."""
    return f"{_PUBLISHER.prefix}:stream:{name}"


def wanted(owner_id: uuid.UUID, account_id: uuid.UUID) -> bool:
    """Would an account-scoped message of this account reach anyone? False also when publishing is off."""
    if _PUBLISHER.plugin is None:
        return False
    interest = _PUBLISHER.interest
    return interest is None or interest.wanted(owner_id.hex, account_id.hex)


def anyone() -> bool:
    """Is any account-scoped stream subscribed anywhere (or may it be)? False when publishing is off."""
    if _PUBLISHER.plugin is None:
        return False
    interest = _PUBLISHER.interest
    return interest is None or interest.anyone()


def skipped(
    owner_id: uuid.UUID, account_id: uuid.UUID, last_seq: int, trade_updates: int, accounts: int
) -> None:
    """A writer that asked `wanted` and got False: its `trade_updates` (numbered up to `last_seq`) and
    `accounts` messages are not built."""
    interest = _PUBLISHER.interest
    if interest is not None:
        if trade_updates:
            interest.note_skipped(owner_id.hex, account_id.hex, last_seq)
            _SKIPPED[TRADE_UPDATES].inc(trade_updates)
        if accounts:
            _SKIPPED[ACCOUNTS].inc(accounts)


def header(owner_id: uuid.UUID, account_id: uuid.UUID, seq: int = 0) -> bytes:
    return f"{owner_id.hex}{account_id.hex}{seq:020d}".encode()


def publish(name: str, payload: bytes) -> None:
    """Queue `payload` for channel `name`. Never raises, never waits."""
    plugin = _PUBLISHER.plugin
    if plugin is None:
        return
    interest = _PUBLISHER.interest
    if interest is not None and name in ACCOUNT_KINDS:
        owner_hex, account_hex = payload[:32].decode(), payload[32:64].decode()
        if not interest.wanted(owner_hex, account_hex):
            if name == TRADE_UPDATES:
                interest.note_skipped(owner_hex, account_hex, int(payload[64:HEADER_BYTES]))
            _SKIPPED[name].inc()
            return
    try:
        try:
            same_loop = asyncio.get_running_loop() is _PUBLISHER.loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            plugin.publish(payload, channel(name))
            # A trade update also goes straight to this process's own subscribers, without the three
            # event-loop hops and the Redis round trip in between (the publish task, the backend, the
            # receive task), which under a saturated loop were most of its delivery latency. The copy
            # that comes back from the backend is then one the client's cursor has delivered (seq), and
            # is dropped; other processes' subscribers get it from the backend as before. Hints (no body)
            # take the backend's way only.
            local = _LOCAL.get(id(plugin))
            if local is not None and name == TRADE_UPDATES and len(payload) > HEADER_BYTES:
                local(name, payload)
        else:  # a write made on another thread's loop (a test, a tool sharing the process)
            _PUBLISHER.loop.call_soon_threadsafe(plugin.publish, payload, channel(name))  # type: ignore[union-attr]
    except Exception as exc:  # a full stop of publishing must still not fail the write that caused it
        STREAM_PUBLISH_FAILURES.inc()
        log.warning("stream_publish_failed", channel=name, error=repr(exc)[:200])


def publish_all(messages: Iterable[tuple[str, bytes]]) -> None:
    for name, payload in messages:
        publish(name, payload)


def defer(conn: Any, name: str, payload: bytes) -> None:
    """Publish when the SQLAlchemy transaction `conn` is in commits (see app.lib.db.tx)."""
    if _PUBLISHER.plugin is None:
        return
    conn.info.setdefault(OUTBOX_KEY, []).append((name, payload))


def discard_deferred(conn: Any) -> None:
    conn.info.pop(OUTBOX_KEY, None)


def flush_deferred(conn: Any) -> None:
    pending = conn.info.pop(OUTBOX_KEY, None)
    if pending:
        publish_all(pending)
