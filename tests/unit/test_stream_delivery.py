"""Per-account delivery rules of a stream client (hub.Client), without a network or a database: the
durable log is a list, the hub a stub. Live messages may arrive late, twice or out of order; the client
must deliver each seq once, in order, filling gaps from the log."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from app.domain.identity.schemas import Principal
from app.domain.streams import hub as hub_module
from app.domain.streams.hub import Client
from app.domain.streams.messages import encode, trade_update
from app.domain.trading.schemas import OrderOut

ACCOUNT = uuid.uuid4()
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _update(seq: int):
    order = OrderOut(
        uuid.uuid4(),
        None,
        ACCOUNT,
        "DEMO",
        "buy",
        "limit",
        Decimal(1),
        Decimal(0),
        None,
        Decimal(90),
        None,
        "gtc",
        "accepted",
        None,
        Decimal(0),
        NOW,
        NOW,
    )
    return trade_update(ACCOUNT, seq, "accepted", NOW, order, None, None, None)


class FakeHub:
    def __init__(self, log: list) -> None:
        self.log = log
        self.reads = 0

    async def read(self, fn):
        self.reads += 1
        return await fn(self)

    async def fetch_log(self, after: int, limit: int):
        await asyncio.sleep(0)
        return [u for u in self.log if u.seq > after][:limit]

    async def route(self, client, added, removed):
        return None

    def forget(self, client):
        return None


@pytest.fixture(autouse=True)
def _log_reader(monkeypatch):
    async def read_log(apg, account_id, after, limit, upto=None):
        return await apg.fetch_log(after, limit)

    async def log_state(apg, account_id, user_id, read_all):
        return None

    monkeypatch.setattr(hub_module.stream_log, "read_log", read_log)
    monkeypatch.setattr(hub_module.stream_log, "log_state", log_state)
    monkeypatch.setattr(hub_module, "GAP_GRACE_SECONDS", 0.01)


def _client(log: list, limit: int = 10_000) -> tuple[Client, FakeHub]:
    hub = FakeHub(log)
    principal = Principal(user_id=uuid.uuid4(), role="trader", key_id=uuid.uuid4(), email="t@example.com")
    client = Client(hub, principal, limit)  # type: ignore[arg-type]
    return client, hub


async def _drain(client: Client) -> list[int]:
    seqs = []
    while True:
        try:
            item = await asyncio.wait_for(client.take(), 0.2)
        except TimeoutError:
            return seqs
        if item is None:
            return seqs
        if item[0]:
            assert msgspec.json.decode(item[1])["seq"] == item[0]  # the message itself, never a hint
            seqs.append(item[0])


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(20))
async def test_shuffled_duplicated_and_dropped_live_messages_are_delivered_once_in_order(seed):
    rng = random.Random(seed)
    log = [_update(s) for s in range(1, 201)]
    client, _ = _client(log)
    start = rng.randint(0, 50)
    await client.set_streams({f"trade_updates:{ACCOUNT}"}, {ACCOUNT.hex: start}, None)
    live = [u for u in log if rng.random() > 0.1]  # some publishes are lost
    live += rng.sample(live, 20)  # some arrive twice
    rng.shuffle(live)
    for u in live:
        client.on_trade_update(ACCOUNT.hex, u.seq, encode(u).decode())
        if rng.random() < 0.05:
            await asyncio.sleep(0.02)  # let a catch-up run in between
    await asyncio.sleep(0.05)
    assert await _drain(client) == list(range(start + 1, 201))


@pytest.mark.asyncio
async def test_a_gap_waits_briefly_for_the_late_message_before_reading_the_log():
    log = [_update(s) for s in range(1, 4)]
    client, hub = _client(log)
    await client.set_streams({f"trade_updates:{ACCOUNT}"}, {ACCOUNT.hex: 0}, None)
    assert await _drain(client) == [1, 2, 3]
    log.extend(_update(s) for s in (4, 5))
    reads = hub.reads
    client.on_trade_update(ACCOUNT.hex, 5, encode(log[4]).decode())  # 4 is late
    client.on_trade_update(ACCOUNT.hex, 4, encode(log[3]).decode())
    assert await _drain(client) == [4, 5]
    assert hub.reads == reads  # arrived in time: no read
    log.extend(_update(s) for s in (6, 7))
    client.on_trade_update(ACCOUNT.hex, 7, encode(log[6]).decode())  # 6 never arrives live
    assert await _drain(client) == [6, 7]
    assert hub.reads == reads + 1


@pytest.mark.asyncio
async def test_a_full_buffer_closes_the_client_with_4008_and_a_replay_never_overflows_it():
    log = [_update(s) for s in range(1, 1001)]
    client, _ = _client(log, limit=20)
    await client.set_streams({f"trade_updates:{ACCOUNT}"}, {ACCOUNT.hex: 0}, None)
    got = []
    for _ in range(1000):
        item = await asyncio.wait_for(client.take(), 1)
        got.append(item[0])
    assert got == list(range(1, 1001)) and client.close_code is None
    for _ in range(21):
        client.offer("{}")
    assert client.close_code == 4008
    assert await client.take() is None


@pytest.mark.asyncio
async def test_an_unsubscribe_stops_a_replay_under_way_and_a_new_subscription_starts_clean():
    # A replay waiting for buffer room when the client unsubscribes queues nothing more after the
    # acknowledgement; subscribing again (no `since`) starts at the live seq: no replayed event after it,
    # none twice. (Before, the replay ran on to the end of the log, interleaved with the new live ones.)
    log = [_update(s) for s in range(1, 301)]
    client, _ = _client(log, limit=20)
    stream = f"trade_updates:{ACCOUNT}"
    await client.set_streams({stream}, {ACCOUNT.hex: 0}, None)
    await asyncio.sleep(0.05)  # the replay fills half the buffer and waits for room
    first = [(await client.take())[0] for _ in range(3)]
    await client.set_streams(set(), {}, "ack: none")
    queued = await _drain_all(client)
    assert first == [1, 2, 3] and "ack: none" in [body for _, body in queued]
    after_ack = queued[[body for _, body in queued].index("ack: none") + 1:]
    assert after_ack == [], after_ack  # nothing of the dropped stream after its acknowledgement
    before = [seq for seq, _ in queued if seq]
    assert before == list(range(4, 4 + len(before))) and len(before) < 297
    # Subscribe again, live from 300: the new events arrive once, in order, and nothing old follows.
    await client.set_streams({stream}, {}, None)
    client.cursors[ACCOUNT.hex].last = 300
    log.extend(_update(s) for s in (301, 302))
    for u in log[-2:]:
        client.on_trade_update(ACCOUNT.hex, u.seq, encode(u).decode())
    await asyncio.sleep(0.05)
    assert await _drain(client) == [301, 302]


@pytest.mark.asyncio
async def test_a_second_since_while_a_replay_runs_restarts_it_from_the_new_point():
    log = [_update(s) for s in range(1, 301)]
    client, _ = _client(log, limit=20)
    stream = f"trade_updates:{ACCOUNT}"
    await client.set_streams({stream}, {ACCOUNT.hex: 0}, None)
    await asyncio.sleep(0.05)
    assert [(await client.take())[0] for _ in range(2)] == [1, 2]
    await client.set_streams({stream}, {ACCOUNT.hex: 250}, "ack")
    got = await _drain_all(client)
    after = [seq for seq, body in got[[b for _, b in got].index("ack") + 1:] if seq]
    assert after == list(range(251, 301)), after


async def _drain_all(client: Client) -> list[tuple[int, str]]:
    out = []
    while True:
        try:
            item = await asyncio.wait_for(client.take(), 0.2)
        except TimeoutError:
            return out
        if item is None:
            return out
        out.append(item)


def test_resume_points_outside_the_retained_log_are_refused():
    from app.domain.streams.log import LogState

    state = LogState(owner_id=uuid.uuid4(), last_seq=120, first_seq=51)  # events 1..50 no longer kept
    assert state.resume_error(50) is None and state.resume_error(120) is None
    assert state.resume_error(49)[0] == "resume-too-old"
    assert state.resume_error(121)[0] == "invalid-since" and state.resume_error(-1)[0] == "invalid-since"
    assert LogState(owner_id=uuid.uuid4(), last_seq=0, first_seq=None).resume_error(0) is None


@pytest.mark.asyncio
async def test_a_hint_reads_the_log_up_to_its_seq():
    """A hint (a header without a body: a publisher skipped these events for want of subscribers)
    makes the client read what it has not delivered from the log, without waiting for a next event."""
    log = [_update(s) for s in range(1, 4)]
    client, hub = _client(log)
    await client.set_streams({f"trade_updates:{ACCOUNT}"}, {ACCOUNT.hex: 0}, None)
    assert await _drain(client) == [1, 2, 3]
    log.extend(_update(s) for s in (4, 5))
    reads = hub.reads
    client.on_trade_update(ACCOUNT.hex, 2, "")  # already delivered: nothing to do
    assert hub.reads == reads
    client.on_trade_update(ACCOUNT.hex, 5, "")
    assert await _drain(client) == [4, 5]
    client.on_trade_update(ACCOUNT.hex, 6, "")
    log.append(_update(6))  # the hinted transaction commits after its hint arrived
    assert await _drain(client) == [6]


def test_interest_counts_local_subscribers_and_hints_what_it_skipped_when_another_process_subscribes():
    from app.domain.streams import interest as interest_module
    from app.domain.streams.interest import Interest

    owner, account, other = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    interest = Interest(None, "td", "p1")
    hints: list[tuple[str, bytes]] = []
    interest.hint = lambda name, payload: hints.append((name, payload))
    assert not interest.wanted(owner, account) and not interest.anyone()

    asyncio.run(interest.acquire(["a" + account]))
    assert interest.wanted(owner, account) and not interest.wanted(owner, other)
    asyncio.run(interest.release(["a" + account]))
    assert not interest.wanted(owner, account)

    interest.note_skipped(owner, account, 7)
    interest.note_skipped(owner, account, 5)  # a writer that decided earlier: the higher seq is kept
    interest.note_skipped(uuid.uuid4().hex, other, 3)
    interest.on_message(f"+p1 o{owner}".encode())  # our own announcement: ignored
    assert hints == [] and not interest.wanted(owner, account)
    interest.on_message(f"+p2 o{owner}".encode())
    assert interest.wanted(owner, account)
    assert hints == [("trade_updates", f"{owner}{account}{7:020d}".encode())]
    interest.on_message(f"-p2 o{owner}".encode())
    assert not interest.wanted(owner, account)

    hints.clear()
    interest.on_message(b"+p3 *")
    assert interest.wanted(owner, other) and len(hints) == 2

    # Skips are remembered for SKIP_MEMORY_SECONDS, then forgotten.
    interest.skipped.clear()
    interest.note_skipped(owner, account, 9)
    long_ago = interest.skipped[account][2] - interest_module.SKIP_MEMORY_SECONDS - 1
    interest.skipped[account] = (owner, 9, long_ago)
    interest.note_skipped(owner, other, 1)
    assert list(interest.skipped) == [other]


def test_an_interest_not_yet_read_from_redis_publishes_everything():
    from app.domain.streams.interest import Interest

    interest = Interest(object(), "td", "p1")  # a Redis that has not been read yet
    assert interest.wanted(uuid.uuid4().hex, uuid.uuid4().hex)


async def test_a_stopped_publisher_hands_publishing_back_to_the_one_still_running():
    """An in-process worker's channels start next to the API's (embedded runs, test processes): when the
    worker's stop, the API's publish again instead of nobody's."""
    from app.domain.streams import publish

    api, worker = object(), object()
    before = (publish._PUBLISHER.plugin, publish._PUBLISHER.prefix, publish._PUBLISHER.interest)
    try:
        publish.configure(api, "api")
        publish.configure(worker, "worker")
        assert publish._PUBLISHER.plugin is worker
        publish.unconfigure(worker)
        assert (publish._PUBLISHER.plugin, publish._PUBLISHER.prefix) == (api, "api")
        publish.unconfigure(api)
        assert publish._PUBLISHER.plugin is (publish._INSTALLED[-1][0] if publish._INSTALLED else None)
    finally:
        publish.unconfigure(api)
        publish.unconfigure(worker)
        if before[0] is not None and publish._PUBLISHER.plugin is not before[0]:
            publish.configure(*before)


@pytest.mark.asyncio
async def test_take_all_hands_over_everything_queued_in_order_and_a_replay_still_never_overflows():
    log = [_update(s) for s in range(1, 1001)]
    client, _ = _client(log, limit=20)
    await client.set_streams({f"trade_updates:{ACCOUNT}"}, {ACCOUNT.hex: 0}, None)
    got: list[int] = []
    while len(got) < 1000:
        items = await asyncio.wait_for(client.take_all(), 1)
        assert items and len(items) <= 10  # a replay fills at most half the buffer
        got.extend(seq for seq, _ in items)
    assert got == list(range(1, 1001)) and client.close_code is None
    client.close(1000, "done")
    assert await client.take_all() is None


def test_an_sse_chunk_carries_each_event_as_id_and_one_data_line_and_heartbeats_as_comments():
    from app.domain.streams.controllers import sse_chunk

    first, second = (encode(_update(s)).decode() for s in (7, 8))
    heartbeat = '{"type":"heartbeat","at":"2026-12-06T00:00:00Z"}'
    chunk = sse_chunk([(7, first), (0, heartbeat), (0, '{"type":"error"}'), (8, second)])
    assert chunk == (
        f"id: 7\r\ndata: {first}\r\n\r\n: heartbeat\r\n\r\nid: 8\r\ndata: {second}\r\n\r\n".encode()
    )
    # What an EventSource parser makes of it: two events (ids 7, 8, the JSON as data); the comment
    # dispatches nothing (an empty `data:` line under it would dispatch an empty event).
    events, data, last_id = [], [], None
    for line in chunk.decode().split("\r\n"):
        if line == "":
            if data:
                events.append((last_id, "\n".join(data)))
            data = []
        elif line.startswith("id: "):
            last_id = int(line[4:])
        elif line.startswith("data: "):
            data.append(line[6:])
    assert events == [(7, first), (8, second)]
