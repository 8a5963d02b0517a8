"""The queue's sweep against real Redis: a job caught between BLMOVE and its worker marking it ACTIVE is
left alone (SAQ 0.26 aborted it, and a worker dying right then lost it for good), a real orphan is still
recovered, and a stuck ACTIVE job is still retried."""

from __future__ import annotations

import asyncio
import uuid

import pytest_asyncio
from saq.job import Status

from app.lib.jobs import SweepSafeRedisQueue, make_queue
from tests.conftest import make_settings
from tests.integration.helpers import discard_pending_jobs


@pytest_asyncio.fixture(loop_scope="session")
async def queue():
    # Under the run's queue name: the session's teardown removes what is left (the dequeuing markers).
    queue_name = f"{make_settings().queue_name}-sweep-{uuid.uuid4().hex[:8]}"
    q = make_queue(make_settings(queue_name=queue_name))
    assert isinstance(q, SweepSafeRedisQueue)
    await q.connect()
    yield q
    await discard_pending_jobs(q)
    await q.redis.delete(q.namespace("sweep"))
    await q.disconnect()


async def _take_without_marking(queue) -> None:
    """The first half of a dequeue: what a worker has done just before it marks the job ACTIVE."""
    queued, active = queue.namespace("queued"), queue.namespace("active")
    moved = await queue.redis.blmove(queued, active, 0.5, "LEFT", "RIGHT")
    assert moved is not None


async def _sweep(queue) -> list[str]:
    await queue.redis.delete(queue.namespace("sweep"))  # the sweep lock: let every call sweep
    return await queue.sweep(abort=0.2)


async def _active_ids(queue) -> list[str]:
    return [i.decode() for i in await queue.redis.lrange(queue.namespace("active"), 0, -1)]


async def test_a_job_being_dequeued_is_not_swept(queue):
    job = await queue.enqueue("system.echo", key=f"deq-{uuid.uuid4().hex[:6]}", retries=2, timeout=60)
    await _take_without_marking(queue)
    assert await _sweep(queue) == []
    assert await _sweep(queue) == []  # still within the grace period
    stored = await queue.job(job.key)
    assert stored.status == Status.QUEUED and stored.error is None
    assert await _active_ids(queue) == [job.id]


async def test_an_orphan_left_queued_in_active_is_recovered_after_the_grace_period(queue, monkeypatch):
    monkeypatch.setattr(SweepSafeRedisQueue, "DEQUEUE_GRACE_SECONDS", 0.3)
    job = await queue.enqueue("system.echo", key=f"orph-{uuid.uuid4().hex[:6]}", retries=2, timeout=60)
    await _take_without_marking(queue)
    assert await _sweep(queue) == []
    await asyncio.sleep(0.4)
    assert await _sweep(queue) == [job.id]
    stored = await queue.job(job.key)
    assert stored.status == Status.QUEUED  # retried: back in the queue, not in `active`
    assert job.id not in await _active_ids(queue)
    assert job.id.encode() in await queue.redis.lrange(queue.namespace("queued"), 0, -1)


async def test_a_stuck_active_job_is_still_swept_and_retried(queue):
    job = await queue.enqueue("system.echo", key=f"stuck-{uuid.uuid4().hex[:6]}", retries=2, timeout=1)
    await _take_without_marking(queue)
    stored = await queue.job(job.key)
    stored.status = Status.ACTIVE
    stored.started = stored.queued - 5_000  # started 5 s before it was queued: well past its 1 s timeout
    await queue.redis.set(stored.id, queue.serialize(stored))
    assert await _sweep(queue) == [job.id]
    assert (await queue.job(job.key)).status == Status.QUEUED


async def test_an_id_without_job_data_is_dropped_from_active(queue):
    ghost = queue.job_id(f"ghost-{uuid.uuid4().hex[:6]}")
    await queue.redis.rpush(queue.namespace("active"), ghost)
    assert await _sweep(queue) == [ghost]
    assert ghost not in await _active_ids(queue)
