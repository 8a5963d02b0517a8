"""Orphaned backtests: rows still queued or running that no live SAQ job will ever settle (the queue lost
the job in a Redis restart without persistence, or the job ended without finishing the row) are found
by the `backtest.recover_orphans` schedule and re-enqueued or failed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from app.domain.backtesting.models import Backtest
from app.domain.backtesting.services import job_key
from tests.integration.helpers import discard_pending_jobs, make_daily_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def queue(settings):
    from app.lib.jobs import make_queue

    q = make_queue(settings)
    await q.connect()
    yield q
    await discard_pending_jobs(q)
    await q.disconnect()


async def _submit(client, headers, symbol: str) -> uuid.UUID:
    body = {
        "strategy": "sma_cross",
        "params": {"fast": 5, "slow": 20},
        "symbol": symbol,
        "timeframe": "1d",
        "initial_cash": "10000",
        "commission": "0",
    }
    resp = await client.post("/api/v1/backtests", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    return uuid.UUID(resp.json()["id"])


async def _age(db_engine, backtest_id: uuid.UUID, **values) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            update(Backtest)
            .where(Backtest.id == backtest_id)
            .values(created_at=Backtest.created_at - timedelta(minutes=5), **values)
        )


async def _row(db_engine, backtest_id: uuid.UUID):
    async with db_engine.connect() as conn:
        return (
            await conn.execute(select(Backtest.status, Backtest.error).where(Backtest.id == backtest_id))
        ).one()


async def test_lost_and_dead_jobs_are_recovered_and_live_ones_left_alone(
    client, admin_headers, make_user, db_engine, queue, monkeypatch
):
    from app.domain.backtesting import recovery
    from app.domain.backtesting.recovery import recover_orphans

    # The run's database also holds the backtests of the test files that ran before this one in the same
    # process (which ones depends on the scheduling): settle those first, whatever their age, so the
    # counts below are this test's own.
    with monkeypatch.context() as m:
        m.setattr(recovery, "ORPHAN_GRACE", timedelta(0))
        await recover_orphans({"engine": db_engine, "queue": queue})

    user = await make_user("trader")
    symbol = await make_daily_market(client, admin_headers, bars=120, seed=8)
    lost, dead, waiting, fresh = [await _submit(client, user["headers"], symbol) for _ in range(4)]
    # lost: the queue forgot the job (a Redis restart without persistence)
    job = await queue.job(job_key(lost))
    await queue.redis.delete(job.id)
    await queue.redis.zrem(queue.namespace("incomplete"), job.id)
    await queue.redis.lrem(queue.namespace("queued"), 0, job.id)
    await _age(db_engine, lost)
    # dead: its job ended (aborted by a sweep with no attempt left) while the row still says running
    job = await queue.job(job_key(dead))
    await queue.finish(job, "aborted", error="swept")
    await _age(db_engine, dead, status="running")
    # waiting: old, but its job is still queued (a long backlog): not an orphan
    await _age(db_engine, waiting)
    # fresh: lost too, but younger than the grace period (its submission may still be enqueueing)
    job = await queue.job(job_key(fresh))
    await queue.redis.delete(job.id)

    ctx = {"engine": db_engine, "queue": queue}
    result = await recover_orphans(ctx)
    assert result == {"requeued": 1, "failed": 1}, result

    requeued = await queue.job(job_key(lost))
    assert requeued is not None and requeued.status == "queued"
    assert (await _row(db_engine, lost)).status == "queued"
    row = await _row(db_engine, dead)
    assert row.status == "failed" and "aborted" in row.error and "swept" in row.error
    assert (await _row(db_engine, waiting)).status == "queued"
    assert (await queue.job(job_key(waiting))).status == "queued"
    assert (await _row(db_engine, fresh)).status == "queued"
    # nothing left to do: a second pass changes nothing
    assert await recover_orphans(ctx) == {"requeued": 0, "failed": 0}


async def test_recovery_runs_on_a_builtin_schedule(client, admin_headers):
    items = {
        s["name"]: s
        for s in (await client.get("/api/v1/jobs/schedules", headers=admin_headers)).json()["items"]
    }
    assert items["backtest-orphans"]["function"] == "backtest.recover_orphans"
    assert items["backtest-orphans"]["cron"] == "* * * * *" and items["backtest-orphans"]["enabled"]
