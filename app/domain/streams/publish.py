"""Publishing stream messages after commit: never before, never in the way of the write.

Every writer hands its messages here only once its transaction has committed (placement after its
one-statement write or its COMMIT; SQLAlchemy writers through `defer`, which `app.lib.db.tx` flushes
after COMMIT and drops on rollback). `publish` only appends to the channels plugin's in-process queue: a
background task sends it to the backend (Redis pub/sub across processes, memory in the embedded
default), so a slow or dead Redis never slows or fails an order. A message lost on the way is not lost
for a subscriber of `trade_updates`: the hub notices the gap in `seq` at the next event and reads the
missing events from PostgreSQL (hub.py).

Channel payloads of account-scoped streams start with a fixed header (owner id, account id as 32 hex
digits each, seq as 20 digits) so that a receiving process routes a message without decoding it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

from app.lib.log import get_logger
from app.lib.metrics import STREAM_PUBLISH_FAILURES

log = get_logger("app.streams")

HEADER_BYTES = 84
TRADE_UPDATES, ACCOUNTS, RISK = "trade_updates", "accounts", "risk"
ACCOUNT_KINDS = (TRADE_UPDATES, ACCOUNTS, RISK)
OUTBOX_KEY = "td_stream_outbox"


class _Publisher:
    plugin: Any = None  # a started litestar ChannelsPlugin (or None: publishing is off in this process)
    prefix: str = "td"
    loop: asyncio.AbstractEventLoop | None = None  # the plugin's loop (its queue is not thread-safe)


_PUBLISHER = _Publisher()


def configure(plugin: Any, prefix: str) -> None:
    """Called by the API's lifespan and by a worker process's startup; None turns publishing off."""
    _PUBLISHER.plugin = plugin
    _PUBLISHER.prefix = prefix
    _PUBLISHER.loop = asyncio.get_running_loop() if plugin is not None else None


def unconfigure(plugin: Any) -> None:
    if _PUBLISHER.plugin is plugin:
        configure(None, _PUBLISHER.prefix)


def enabled() -> bool:
    return _PUBLISHER.plugin is not None


def channel(name: str) -> str:
    """The backend channel of a stream kind (`trade_updates`) or name (`prices:DEMO`), namespaced so that
    several deployments (or test runs) can share one Redis."""
    return f"{_PUBLISHER.prefix}:stream:{name}"


def header(owner_id: uuid.UUID, account_id: uuid.UUID, seq: int = 0) -> bytes:
    return f"{owner_id.hex}{account_id.hex}{seq:020d}".encode()


def publish(name: str, payload: bytes) -> None:
    """Queue `payload` for channel `name`. Never raises, never waits."""
    plugin = _PUBLISHER.plugin
    if plugin is None:
        return
    try:
        try:
            same_loop = asyncio.get_running_loop() is _PUBLISHER.loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            plugin.publish(payload, channel(name))
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
