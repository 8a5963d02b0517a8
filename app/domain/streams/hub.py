"""Fan-out inside one API process: the channels plugin's backend in, each client's bounded buffer out.

Litestar's ChannelsPlugin carries messages between processes (Redis pub/sub when REDIS_URL is set, memory
in the embedded default). Each process subscribes once per channel, and only while a local client wants
it: the three account-scoped kinds while any connection of the process holds an account-scoped stream,
`prices:*` / `bars:*` while one holds that stream. A process that serves no stream (one that only takes
orders, a worker) therefore receives nothing of what the writers publish. Every message is routed to the
process's clients here, synchronously and without decoding it (publish.py puts the routing in a fixed
header): O(clients that want it) per message, however many clients are connected.

`trade_update` delivery is exact per account (`_Cursor`): a client receives seq n+1 only after n. A
message ahead of the next expected seq (two writers on one account publish in the order their commits
happened to finish; a publish was lost) is held, and if the gap has not closed within GAP_GRACE_SECONDS
the missing events are read from PostgreSQL. Resume (`since`) is the same catch-up from a given seq, with
live messages held meanwhile and the ones already replayed dropped: nothing missed, nothing twice.

A client's buffer is bounded (STREAM_BUFFER_MESSAGES); a client that falls that far behind is closed
(4008) and resumes. Publishers never wait on any of this: they only append to the plugin's queue.

One module past 500 lines: the subscription bookkeeping, the routing and the per-account cursors share
one lock-free invariant (a message is routed synchronously, in the order the plugin delivers it), which
is easier to keep when it is all in view.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from litestar.channels import ChannelsPlugin, Subscriber
from litestar.channels.backends.redis import RedisChannelsPubSubBackend

from app.domain.identity.schemas import Principal
from app.domain.streams import log as stream_log
from app.domain.streams import messages, publish
from app.domain.streams.interest import Interest
from app.lib.log import get_logger
from app.lib.metrics import HEARTBEAT_LAG, STREAM_CLOSED, STREAM_GAP_FILLS, STREAM_MESSAGES

log = get_logger("app.streams")

GAP_GRACE_SECONDS = 0.05  # how long an out-of-order message waits for the ones before it to arrive live
REPLAY_PAGE = 1000
HINT_RETRIES = 5  # a hinted seq not in the log yet: read again after 0.1, 0.2, 0.4, 0.8, 1.6 s
CLOSE_OVERFLOW = 4008
CLOSE_CREDENTIALS = 4401  # a bad key at connection, or one revoked (or its user changed) since

Reader = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]  # runs fn(asyncpg connection)


PUBLISH_BATCH = 512  # messages per Redis round trip at most

_TRADE_UPDATES_SENT = STREAM_MESSAGES.labels(type="trade_update")
_delivered = 0  # trade_updates queued to clients and not yet added to _TRADE_UPDATES_SENT


def _count_delivered() -> None:
    global _delivered
    if _delivered:
        _TRADE_UPDATES_SENT.inc(_delivered)
        _delivered = 0


class ResilientChannelsPlugin(ChannelsPlugin):
    """The stock plugin ends its publish task on the first backend error (a Redis restart) and then
    queues every later message forever; its receive task likewise. These loops log, count and go on."""

    async def _pub_worker(self) -> None:
        """Everything queued by the time the worker runs goes out in one Redis round trip (a write queues
        its trade updates and account message together): the stock worker's one EVALSHA round trip per
        message cost an order placement about as much CPU as the rest of its write. PUBLISH per channel
        is exactly what the backend's script does."""
        from app.lib.metrics import STREAM_PUBLISH_FAILURES

        while self._pub_queue:
            batch = [await self._pub_queue.get()]
            while len(batch) < PUBLISH_BATCH:
                try:
                    batch.append(self._pub_queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                if isinstance(self._backend, RedisChannelsPubSubBackend):
                    pipe = self._backend._redis.pipeline(transaction=False)  # noqa: SLF001
                    for data, channels in batch:
                        for name in set(channels):
                            pipe.publish(name, data)
                    await pipe.execute()
                else:
                    for data, channels in batch:
                        await self._backend.publish(data, channels)
            except Exception as exc:
                STREAM_PUBLISH_FAILURES.inc(len(batch))
                log.warning("stream_backend_publish_failed", error=repr(exc)[:200], messages=len(batch))
            finally:
                for _ in batch:
                    self._pub_queue.task_done()

    async def _sub_worker(self) -> None:
        while True:
            try:
                await super()._sub_worker()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream_backend_receive_failed", error=repr(exc)[:200])
                if self.interest is not None:  # interest messages may have been missed meanwhile
                    self.interest.lost_updates()
            await asyncio.sleep(0.5)

    interest: Interest | None = None


class _ChannelSubscriber(Subscriber):
    """The plugin's subscriber for one channel, handing each payload straight to the hub (no queue)."""

    def __init__(self, plugin: ChannelsPlugin, hub: StreamHub, name: str) -> None:
        super().__init__(plugin)
        self._hub = hub
        self._name = name

    def put_nowait(self, item: bytes | None) -> bool:
        if item is not None:
            self._hub.dispatch(self._name, item)
        return True

    async def put(self, item: bytes | None) -> None:
        self.put_nowait(item)


class CallbackSubscriber(Subscriber):
    """The plugin's subscriber for one channel, handing each payload to `callback` (no queue)."""

    def __init__(self, plugin: ChannelsPlugin, callback: Callable[[bytes], None]) -> None:
        super().__init__(plugin)
        self._callback = callback

    def put_nowait(self, item: bytes | None) -> bool:
        if item is not None:
            self._callback(item)
        return True

    async def put(self, item: bytes | None) -> None:
        self.put_nowait(item)


class _Cursor:
    __slots__ = ("last", "held", "busy", "gap_timer", "hint", "recheck")

    def __init__(self, last: int) -> None:
        self.last = last
        self.held: dict[int, str] = {}
        self.busy = False  # a catch-up from PostgreSQL is running: live messages are held
        self.gap_timer: asyncio.TimerHandle | None = None
        self.hint = 0  # the highest seq a hint said the log has reached
        self.recheck = False  # a hint came during a catch-up: read once more before stopping


class Client:
    """One connected consumer (a WebSocket or an SSE response): its subscriptions, its per-account
    cursors and its bounded send buffer. Items are (seq, JSON text); seq is 0 except for trade_updates.
    The text is decoded once per message in the hub and shared by every client that gets it."""

    def __init__(self, hub: StreamHub, principal: Principal, limit: int) -> None:
        self.hub = hub
        self.principal = principal
        self.limit = limit
        self.streams: set[str] = set()
        self.cursors: dict[str, _Cursor] = {}
        self.known_accounts: set[str] | None = None  # visible accounts when trade_updates was subscribed
        self.close_code: int | None = None
        self._items: deque[tuple[int, str]] = deque()
        # The sender waits on a bare future rather than an asyncio.Event: one fewer waiter list and
        # method layer per message, on the path every delivered message takes (measure_stream_fanout).
        self._waiter: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._pending: list[tuple[str, int, str]] | None = None  # live trade_updates while subscribing
        self.desk_session: str | None = None  # a desk page's session id (its stream ends with the session)
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------------------- the buffer
    def offer(self, body: str, seq: int = 0) -> None:
        """Queue a live message; a full buffer closes the client (4008). Never waits."""
        if self.close_code is not None:
            return
        if len(self._items) >= self.limit:
            self.close(CLOSE_OVERFLOW, "overflow")
            return
        self._items.append((seq, body))
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def put_replayed(self, body: str, seq: int, current: Callable[[], bool] = lambda: True) -> bool:
        """Queue a replayed message, waiting while the buffer is half full: a replay of any length never
        overflows it, and live messages keep the other half. Not queued (False) once the client is closed
        or `current()` turns false while it waited (the replay's cursor was dropped or replaced)."""
        while len(self._items) >= self.limit // 2 and self.close_code is None:
            self._room.clear()
            await self._room.wait()
        if self.close_code is not None or not current():
            return False
        self._items.append((seq, body))
        self._wake()
        return True

    async def take(self) -> tuple[int, str] | None:
        """The next item to send, or None once the client is closed."""
        while not self._items:
            if self.close_code is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.close_code is not None:
            return None
        item = self._items.popleft()
        if len(self._items) < self.limit // 2:
            self._room.set()
        return item

    async def take_all(self, most: int = 0) -> list[tuple[int, str]] | None:
        """Everything queued (at least one item; at most `most` if given), or None once the client is
        closed: a sender that puts several messages in one write (SSE, a batching WebSocket) takes them at
        once."""
        while not self._items:
            if self.close_code is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.close_code is not None:
            return None
        queued = self._items
        if most and len(queued) > most:
            items = [queued.popleft() for _ in range(most)]
        else:
            items = list(queued)
            queued.clear()
        if len(queued) < self.limit // 2:
            self._room.set()
        return items

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            STREAM_CLOSED.labels(reason=reason).inc()
        self._wake()
        self._room.set()

    # ------------------------------------------------------------------------------- trade updates
    def on_trade_update(self, account: str, seq: int, body: str) -> None:
        """A live trade_update, or (empty `body`) a hint that the account's log has reached `seq`."""
        if self._pending is not None:
            self._pending.append((account, seq, body))
            return
        if not body:
            self._on_hint(account, seq)
            return
        cur = self.cursors.get(account)
        if cur is None:
            if self.known_accounts is None or account in self.known_accounts:
                return  # an account whose cursor was dropped (unsubscribed) or not yet set: not wanted
            # An account created after the subscription: its log starts at 1.
            cur = self.cursors[account] = _Cursor(0)
        if cur.busy:
            self._hold(cur, seq, body)
            return
        if seq <= cur.last:
            return  # already delivered (replayed)
        if seq == cur.last + 1:
            self._deliver(cur, seq, body)
            self._drain(account, cur)
            return
        self._hold(cur, seq, body)
        if cur.gap_timer is None:
            cur.gap_timer = asyncio.get_running_loop().call_later(
                GAP_GRACE_SECONDS, self._gap_expired, account
            )

    def _on_hint(self, account: str, seq: int) -> None:
        cur = self.cursors.get(account)
        if cur is None:
            if self.known_accounts is None or account in self.known_accounts:
                return
            cur = self.cursors[account] = _Cursor(0)
        if seq <= cur.last or self.close_code is not None:
            return
        cur.hint = max(cur.hint, seq)
        if cur.busy:
            cur.recheck = True
        else:
            self.spawn(self.catch_up(account))

    def _hold(self, cur: _Cursor, seq: int, body: str) -> None:
        cur.held[seq] = body
        if len(cur.held) > self.limit:
            self.close(CLOSE_OVERFLOW, "overflow")

    def _deliver(self, cur: _Cursor, seq: int, body: str) -> None:
        # Counted in a plain int and added to the metric once per dispatch: a labelled Prometheus inc per
        # delivered message was a quarter of the fan-out's CPU.
        global _delivered
        cur.last = seq
        _delivered += 1
        self.offer(body, seq)

    def _drain(self, account: str, cur: _Cursor) -> None:
        """Deliver held messages that are next in line; drop the ones already delivered."""
        while cur.held:
            nxt = cur.held.pop(cur.last + 1, None)
            if nxt is not None:
                self._deliver(cur, cur.last + 1, nxt)
                continue
            for seq in [s for s in cur.held if s <= cur.last]:
                del cur.held[seq]
            break
        if cur.held and cur.gap_timer is None and not cur.busy:
            cur.gap_timer = asyncio.get_running_loop().call_later(
                GAP_GRACE_SECONDS, self._gap_expired, account
            )
        elif not cur.held and cur.gap_timer is not None:
            cur.gap_timer.cancel()
            cur.gap_timer = None

    def _gap_expired(self, account: str) -> None:
        cur = self.cursors.get(account)
        if cur is None:
            return
        cur.gap_timer = None
        if cur.held and not cur.busy and self.close_code is None:
            STREAM_GAP_FILLS.inc()
            self.spawn(self.catch_up(account))

    async def catch_up(self, account: str) -> None:
        """Send this account's events after the cursor from PostgreSQL, then what was held live. It follows
        the cursor it started with: once that is no longer the account's (an unsubscribe dropped it, a new
        `since` replaced it: set_streams), it stops without queueing another message."""
        cur = self.cursors[account]
        if cur.busy:
            return
        cur.busy = True
        account_id = uuid.UUID(account)
        retries = 0

        def current() -> bool:
            return self.cursors.get(account) is cur

        try:
            while self.close_code is None:
                updates = await self.hub.read(
                    lambda apg, after=cur.last: stream_log.read_log(apg, account_id, after, REPLAY_PAGE)
                )
                for update in updates:
                    if not await self.put_replayed(messages.encode(update).decode(), update.seq, current):
                        return
                    cur.last = update.seq
                if not current():
                    return
                if len(updates) == REPLAY_PAGE:
                    continue
                if cur.recheck:  # a hint arrived while this read was under way
                    cur.recheck = False
                    continue
                if cur.last >= cur.hint or retries >= HINT_RETRIES:
                    break
                # A hint names a seq the log does not show yet: the writer decided to skip its publish
                # just before COMMIT (placement's locked path) and the hint overtook the commit.
                retries += 1
                await asyncio.sleep(GAP_GRACE_SECONDS * 2**retries)
        finally:
            cur.busy = False
        if current():
            self._drain(account, cur)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("stream_catch_up_failed", error=repr(task.exception())[:200])
            self.close(1011, "error")

    # ---------------------------------------------------------------------------- subscriptions
    async def set_streams(
        self, wanted: set[str], since: dict[str, int], ack: Any = None
    ) -> None:
        """Switch to `wanted` (already authorised), queue `ack`, and resume the accounts in `since` from
        their seq. Live messages are routed to this client before the start points are read, so nothing
        committed after a start point can be missed; those that arrive meanwhile wait until `ack` is out."""
        added, removed = wanted - self.streams, self.streams - wanted
        self._pending = []
        try:
            await self.hub.route(self, added, removed)
            self.streams = set(wanted)
            start: dict[str, int] = {}
            if "trade_updates" not in wanted:
                self.known_accounts = None
            elif "trade_updates" in added:
                seqs = await self.hub.read(
                    lambda apg: stream_log.visible_seqs(
                        apg, self.principal.user_id, self.principal.can_read_all_accounts
                    )
                )
                self.known_accounts = {a.hex for a in seqs}
                start = {a.hex: s for a, s in seqs.items()}
            for s in added:
                if s.startswith("trade_updates:"):
                    account = uuid.UUID(s.split(":", 1)[1]).hex
                    if account not in start and account not in self.cursors:
                        state = await self.hub.read(
                            lambda apg, a=account: stream_log.log_state(
                                apg,
                                uuid.UUID(a),
                                self.principal.user_id,
                                self.principal.can_read_all_accounts,
                            )
                        )
                        start[account] = state.last_seq if state is not None else 0
            for account, seq in start.items():
                if account not in self.cursors:
                    self.cursors[account] = _Cursor(seq)
            for account in [a for a in self.cursors if not self._covers(a)]:
                del self.cursors[account]
            for account, seq in since.items():
                cur = self.cursors.get(account)
                if cur is None or cur.busy:
                    # (a catch-up under way follows the cursor it started with: a new one stops it, and the
                    # catch-up spawned below starts from this `since`)
                    if cur is not None and cur.gap_timer is not None:
                        cur.gap_timer.cancel()
                    cur = self.cursors[account] = _Cursor(seq)
                cur.last = seq  # the catch-up below sends everything after it; later live ones are held
                cur.held = {s: b for s, b in cur.held.items() if s > seq}
        finally:
            pending, self._pending = self._pending, None
        if callable(ack):  # the acknowledgement names where each covered account's stream stands
            ack = ack({str(uuid.UUID(a)): cur.last for a, cur in self.cursors.items()})
        if ack is not None:
            self.offer(ack)
        for account, seq, body in pending:
            self.on_trade_update(account, seq, body)
        for account in since:
            self.spawn(self.catch_up(account))

    def _covers(self, account: str) -> bool:
        return "trade_updates" in self.streams or f"trade_updates:{uuid.UUID(account)}" in self.streams

    async def aclose(self) -> None:
        self.hub.forget(self)
        try:
            await self.hub.route(self, set(), self.streams)
        except Exception as exc:  # the backend's unsubscribe (Redis down): nothing to undo locally
            log.warning("stream_unsubscribe_failed", error=repr(exc)[:200])
        self.streams = set()
        for cur in self.cursors.values():
            if cur.gap_timer is not None:
                cur.gap_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.close(1000, "client_gone")


class StreamHub:
    """One per API process (app.state.streams.hub)."""

    def __init__(
        self,
        plugin: ChannelsPlugin,
        reader: Reader,
        heartbeat_seconds: float,
        interest: Interest | None = None,
    ) -> None:
        self.plugin = plugin
        # Which route keys this process has clients for, shared with every publisher (interest.py).
        self.interest = interest if interest is not None else Interest(None, "", "local")
        self.read = reader
        self.heartbeat_seconds = heartbeat_seconds
        self.clients: set[Client] = set()
        # account kinds: route key ("*", "o<owner hex>", "a<account hex>") -> clients
        self.routes: dict[str, dict[str, set[Client]]] = {kind: {} for kind in publish.ACCOUNT_KINDS}
        self.channels: dict[str, set[Client]] = {}  # prices:<symbol>, bars:<symbol>:<tf> -> clients
        self._subscribers: dict[str, _ChannelSubscriber] = {}
        # Clients holding an account-scoped stream (or about to): the account channels are subscribed while
        # there is one. Changed synchronously by `route`, then `_sync_account_channels` brings the backend
        # in line under the lock, so a subscription and a last unsubscription racing end in the right state.
        self._account_clients: set[Client] = set()
        self._lock = asyncio.Lock()
        self._heartbeat_task: asyncio.Task | None = None
        self.on_heartbeat: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        """Start the heartbeats. No channel is subscribed here: `route` subscribes what the process's
        clients hold, when they hold it."""
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="stream-heartbeats")

    async def _sync_account_channels(self) -> None:
        """Subscribe the account-scoped channels while some client holds an account-scoped stream, and
        unsubscribe them once none does. With the backend unreachable (Redis down) the stream still
        works without live messages (heartbeats, replays, the durable log): the next `route` tries again."""
        async with self._lock:
            wanted = bool(self._account_clients)
            try:
                for kind in publish.ACCOUNT_KINDS:
                    if wanted and kind not in self._subscribers:
                        await self._subscribe_channel(kind)
                    elif not wanted and kind in self._subscribers:
                        await self._unsubscribe_channel(kind)
            except Exception as exc:
                log.warning("stream_backend_subscribe_failed", error=repr(exc)[:200], subscribe=wanted)

    async def stop(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        for client in list(self.clients):
            client.close(1001, "shutdown")

    async def _subscribe_channel(self, name: str) -> None:
        # The plugin's channel registry and backend directly (litestar is pinned <3): `plugin.subscribe`
        # would hand each message to a queue that a task per channel then drains, one more hop per message.
        await self.plugin._backend.subscribe([publish.channel(name)])
        sub = _ChannelSubscriber(self.plugin, self, name)
        self._subscribers[name] = sub
        self.plugin._channels.setdefault(publish.channel(name), set()).add(sub)

    async def _unsubscribe_channel(self, name: str) -> None:
        sub = self._subscribers.pop(name, None)
        if sub is not None:
            self.plugin._channels.get(publish.channel(name), set()).discard(sub)
            await self.plugin._backend.unsubscribe([publish.channel(name)])

    def _route_keys(self, client: Client, stream: str) -> list[tuple[str, str]]:
        """(kind, route key) pairs of an account-scoped stream name for this client."""
        kind, _, account = stream.partition(":")
        if account:
            return [(kind, "a" + uuid.UUID(account).hex)]
        p = client.principal
        return [(kind, "*" if p.can_read_all_accounts else "o" + p.user_id.hex)]

    def _interest_keys(self, client: Client, streams: set[str]) -> list[str]:
        return [
            key
            for stream in streams
            if stream.partition(":")[0] in publish.ACCOUNT_KINDS
            for _, key in self._route_keys(client, stream)
        ]

    def attach(self, client: Client) -> None:
        self.clients.add(client)

    async def route(self, client: Client, added: set[str], removed: set[str]) -> None:
        """Route `added` streams to the client (announcing new interest to every publisher first) and
        stop routing `removed` ones."""
        await self.start()
        holds = (client.streams - removed) | added
        account_streams = [s for s in holds if s.partition(":")[0] in publish.ACCOUNT_KINDS]
        if account_streams:
            self._account_clients.add(client)
            await self._sync_account_channels()
        try:
            gained = await self.interest.acquire(self._interest_keys(client, added))
            released = self._interest_keys(client, removed)
            for stream in removed:
                if stream.partition(":")[0] in publish.ACCOUNT_KINDS:
                    for kind, key in self._route_keys(client, stream):
                        group = self.routes[kind].get(key)
                        if group is not None:
                            group.discard(client)
                            if not group:
                                del self.routes[kind][key]
                else:
                    group = self.channels.get(stream)
                    if group is not None:
                        group.discard(client)
                        if not group:
                            del self.channels[stream]
                            await self._unsubscribe_channel(stream)
            for stream in added:
                if stream.partition(":")[0] in publish.ACCOUNT_KINDS:
                    for kind, key in self._route_keys(client, stream):
                        self.routes[kind].setdefault(key, set()).add(client)
                else:
                    if stream not in self.channels:
                        self.channels[stream] = set()
                        await self._subscribe_channel(stream)
                    self.channels[stream].add(client)
            self.interest.hint_skipped(gained)  # (now that the client is routed)
            await self.interest.release(released)
        finally:
            # Also when something above failed: a client that holds no account stream must not keep the
            # channels subscribed.
            if not account_streams and client in self._account_clients:
                self._account_clients.discard(client)
                await self._sync_account_channels()

    def forget(self, client: Client) -> None:
        self.clients.discard(client)

    def dispatch(self, name: str, payload: bytes) -> None:
        routes = self.routes.get(name)
        if routes is None:  # prices / bars: no header
            text = payload.decode()
            for client in tuple(self.channels.get(name, ())):
                client.offer(text)
            if name in self.channels:
                STREAM_MESSAGES.labels(type=name.partition(":")[0]).inc()
            return
        if not routes:
            return
        head = payload[: publish.HEADER_BYTES].decode()
        owner, account, seq = head[:32], head[32:64], int(head[64:84])
        body = payload[publish.HEADER_BYTES :].decode()
        targets: set[Client] = set()
        for key in ("*", "o" + owner, "a" + account):
            group = routes.get(key)
            if group:
                targets |= group
        if name == publish.TRADE_UPDATES:
            for client in targets:
                client.on_trade_update(account, seq, body)
            _count_delivered()
        else:
            for client in targets:
                client.offer(body)
            if targets:
                STREAM_MESSAGES.labels(type=name).inc(len(targets))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            _count_delivered()  # including those of catch-ups since the last message
            beat = messages.heartbeat(datetime.now(UTC)).decode()
            started = time.perf_counter()
            for client in tuple(self.clients):
                client.offer(beat)
            HEARTBEAT_LAG.observe(time.perf_counter() - started)
            for hook in self.on_heartbeat:
                try:
                    await hook()
                except Exception as exc:
                    log.warning("stream_heartbeat_hook_failed", error=repr(exc)[:200])
