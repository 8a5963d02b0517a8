"""Who listens to which account, across every API process: the publisher's reason to skip a message.

A write with no live subscriber anywhere (no process has a client routed to the account, its owner or
"everything") builds and publishes no account-scoped message: the trade_update is in the durable log,
where a subscriber that comes later starts or resumes from its seq, and `accounts` / `risk` messages are
live-only state that the next change supersedes (docs/STREAMING.md, "Limits of the design"). Building
and publishing every event's message for nobody made a market order cost 1.4-1.7x the CPU (the Redis
pipeline, and every API process reading its own echo back; docs/BENCHMARKS.md).

Interest keys are the hub's route keys: "*" (a risk manager or admin: every account), "o<owner hex>" (a
trader's own accounts), "a<account hex>" (one account). Each process counts its local clients per key
(`acquire` / `release` from the hub) and shares the keys it holds:

- Redis hash `<prefix>:stream:interest`, field "<process> <key>" = expiry (unix seconds), refreshed every
  REFRESH seconds by the holder, read whole at start and at every refresh (a process that died without
  saying so stops counting when its fields expire);
- channel `<prefix>:stream:interest`: "+<process> <key>" / "-<process> <key>" as a key is gained or lost,
  so the other processes know within a pub/sub hop. A process starts publishing everything until its
  first read of the hash has succeeded, and again whenever the backend's receive loop fails.

The hand-over. A subscriber's process writes the hash field and PUBLISHes "+" (awaited: Redis has
queued it to every process) before it reads where the client's stream starts. A writer decides after
its event is numbered; if it skipped an event whose commit the subscriber's start read did not see, it
skipped before it had read that "+". So every skip of a trade_update is remembered for SKIP_MEMORY
seconds, and on reading a "+" the process publishes a hint for each remembered account that the key
covers: the header alone (owner, account, last skipped seq), no body. A client that is behind that seq
reads the log from PostgreSQL (hub.Client.catch_up), retrying briefly if the hinted transaction has not
committed yet. Nothing is missed, and the durable log keeps delivery exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

from app.lib.log import get_logger

log = get_logger("app.streams")

REFRESH_SECONDS = 15.0  # how often a process rewrites its hash fields and re-reads everyone's
STALE_SECONDS = 3 * REFRESH_SECONDS + 5  # a field not refreshed for this long belongs to a dead process
SKIP_MEMORY_SECONDS = 30.0  # far longer than any process takes to read a "+" already queued to it
EVERYTHING = "*"


class Interest:
    """One per process that publishes (the API with its hub, a worker without one).

    `redis` None (the embedded single process, memory backend): local clients only, always in sync."""

    def __init__(self, redis: Any, prefix: str, process_id: str) -> None:
        self.redis = redis
        self.process = process_id
        self.key = f"{prefix}:stream:interest"  # the hash and the channel share the name
        self.local: dict[str, int] = {}
        self.remote: dict[str, dict[str, float]] = {}  # key -> process -> expiry
        self.synced = redis is None  # False: publish everything (not known yet, or updates were lost)
        self.skipped: OrderedDict[str, tuple[str, int, float]] = OrderedDict()  # account -> owner, seq, when
        self.listening = False  # subscribed to the channel (else never synced: publish everything)
        self.hint: Any = None  # publish.publish, set by publish.configure (no import cycle)
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------------------ the publisher's side
    def wanted(self, owner_hex: str, account_hex: str) -> bool:
        """Does any process have a client for this account's messages (or may it, as far as we know)?"""
        if not self.synced:
            return True
        for key in (EVERYTHING, "o" + owner_hex, "a" + account_hex):
            if self.local.get(key) or self.remote.get(key):
                return True
        return False

    def anyone(self) -> bool:
        return not self.synced or bool(self.local) or bool(self.remote)

    def note_skipped(self, owner_hex: str, account_hex: str, seq: int) -> None:
        now = time.monotonic()
        skipped = self.skipped
        previous = skipped.pop(account_hex, None)
        if previous is None or previous[1] < seq:
            skipped[account_hex] = (owner_hex, seq, now)
        else:  # a writer that decided earlier but got here later: keep the higher seq, refresh the time
            skipped[account_hex] = (owner_hex, previous[1], now)
        while skipped:
            first = next(iter(skipped.values()))
            if now - first[2] <= SKIP_MEMORY_SECONDS:
                break
            skipped.popitem(last=False)

    def _hints_for(self, key: str) -> None:
        """A process gained `key`: hint every remembered skip it covers (see the module docstring)."""
        if self.hint is None or not self.skipped:
            return
        from app.domain.streams import publish

        for account_hex, (owner_hex, seq, _) in list(self.skipped.items()):
            if key == EVERYTHING or key == "o" + owner_hex or key == "a" + account_hex:
                self.hint(publish.TRADE_UPDATES, f"{owner_hex}{account_hex}{seq:020d}".encode())

    # ------------------------------------------------------------------------------ the subscriber's side
    async def acquire(self, keys: list[str]) -> list[str]:
        """Count local clients for `keys`; announce the ones this process did not hold yet (awaited:
        the caller reads where its client starts only after every process can know), and return them
        (for `hint_skipped`, once the caller routes them)."""
        gained = []
        for key in keys:
            n = self.local.get(key, 0)
            self.local[key] = n + 1
            if n == 0:
                gained.append(key)
        if gained and self.redis is not None:
            expiry = time.time() + STALE_SECONDS
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hset(self.key, mapping={f"{self.process} {k}": expiry for k in gained})
                    for k in gained:
                        pipe.publish(self.key, f"+{self.process} {k}")
                    await pipe.execute()
            except BaseException:  # not announced: the subscription fails as a whole (and is retried)
                for key in keys:
                    self.local[key] -= 1
                    if not self.local[key]:
                        del self.local[key]
                raise
        return gained

    def hint_skipped(self, gained: list[str]) -> None:
        """This process gained `gained`: hint the skips it remembers for them, as it does for another
        process's "+". A writer of this process may have decided to skip (no subscriber yet) before the
        subscription and commit after the subscription read where it starts: that event is in neither the
        start point nor the live stream, and only a hint gets it read from the log (hub.Client retries a
        hinted seq until its commit shows)."""
        for key in gained:
            self._hints_for(key)

    async def release(self, keys: list[str]) -> None:
        lost = []
        for key in keys:
            n = self.local.get(key, 0) - 1
            if n <= 0:
                self.local.pop(key, None)
                if n == 0:
                    lost.append(key)
            else:
                self.local[key] = n
        if lost and self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hdel(self.key, *[f"{self.process} {k}" for k in lost])
                    for k in lost:
                        pipe.publish(self.key, f"-{self.process} {k}")
                    await pipe.execute()
            except Exception as exc:  # the fields expire; until then others publish for nobody
                log.warning("stream_interest_release_failed", error=repr(exc)[:200])

    # ------------------------------------------------------------------------------ keeping in sync
    def on_message(self, data: bytes) -> None:
        """A "+" or "-" from the channel (our own included: ignored)."""
        text = data.decode()
        process, _, key = text[1:].partition(" ")
        if process == self.process or not key:
            return
        if text[0] == "+":
            self.remote.setdefault(key, {})[process] = time.time() + STALE_SECONDS
            self._hints_for(key)
        elif text[0] == "-":
            holders = self.remote.get(key)
            if holders is not None:
                holders.pop(process, None)
                if not holders:
                    del self.remote[key]

    def lost_updates(self) -> None:
        """The backend's receive loop failed: "+"/"-" may have been missed until the next read."""
        if self.redis is not None:
            self.synced = False

    async def sync(self) -> None:
        """Refresh this process's fields and merge everyone's (never dropping what a "+" added since:
        only a "-" or an expiry removes an entry)."""
        if self.redis is None:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            if self.local:
                pipe.hset(self.key, mapping={f"{self.process} {k}": now + STALE_SECONDS for k in self.local})
            pipe.hgetall(self.key)
            fields = (await pipe.execute())[-1]
        dead = []
        for field, raw in fields.items():
            process, _, key = field.decode().partition(" ")
            expiry = float(raw)
            if expiry < now:
                dead.append(field)
            elif process != self.process:
                holders = self.remote.setdefault(key, {})
                holders[process] = max(holders.get(process, 0.0), expiry)
        for key in list(self.remote):
            holders = self.remote[key]
            for process in [p for p, e in holders.items() if e < now]:
                del holders[process]
            if not holders:
                del self.remote[key]
        if dead:
            await self.redis.hdel(self.key, *dead)
        self.synced = self.listening

    async def start(self) -> None:
        if self.redis is None:
            return
        with contextlib.suppress(Exception):
            await self.sync()
        self._task = asyncio.create_task(self._refresh(), name="stream-interest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None and self.local:
            with contextlib.suppress(Exception):  # else the fields expire
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hdel(self.key, *[f"{self.process} {k}" for k in self.local])
                    for k in self.local:
                        pipe.publish(self.key, f"-{self.process} {k}")
                    await pipe.execute()
        self.local.clear()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.sync()
            except Exception as exc:  # Redis away: keep what we know; stale keys only cost extra publishes
                log.warning("stream_interest_sync_failed", error=repr(exc)[:200])
