from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, update

from app.domain.jobs.models import JobSchedule
from tests.conftest import REDIS_URL, RUN_ID, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

TERMINAL = {"complete", "failed", "aborted"}


@contextlib.asynccontextmanager
async def running_worker(settings, concurrency: int = 4) -> AsyncIterator[None]:
    """A real SAQ worker (own engine and KV, like `tradedesk worker`) on the given settings' queue."""
    from app.lib.jobs import make_queue
    from app.lib.state import build_worker

    queue = make_queue(settings)
    await queue.connect()
    worker = build_worker(queue, settings, concurrency=concurrency)
    worker.SIGNALS = []
    # SAQ's upkeep loops only notice a stop after their current sleep (10 s for the sweep); a short
    # grace period keeps each test's teardown at about a second.
    worker._shutdown_grace_period_s = 1
    task = asyncio.create_task(worker.start())
    try:
        yield
    finally:
        await worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await queue.disconnect()


async def submit(client, headers, function: str, expect: int = 202, **body) -> dict:
    resp = await client.post("/api/v1/jobs", json={"function": function, **body}, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


async def wait_for(client, headers, key: str, statuses: set[str], within: float = 15) -> dict:
    deadline = time.monotonic() + within
    while True:
        resp = await client.get(f"/api/v1/jobs/{key}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"job still {body['status']}: {body}"
        await asyncio.sleep(0.1)


async def failures(client, headers) -> int:
    resp = await client.get("/api/v1/jobs/health", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["failures_last_hour"]


async def test_jobs_api_is_admin_only(client, make_user):
    trader = await make_user("trader")
    risk = await make_user("risk_manager")
    for headers in (trader["headers"], risk["headers"]):
        assert (await client.get("/api/v1/jobs", headers=headers)).status_code == 403
        assert (await client.get("/api/v1/jobs/health", headers=headers)).status_code == 403
        resp = await client.post("/api/v1/jobs", json={"function": "system.echo"}, headers=headers)
        assert resp.status_code == 403
        assert (await client.get("/api/v1/jobs/schedules", headers=headers)).status_code == 403
    assert (await client.get("/api/v1/jobs")).status_code == 401


async def test_submit_rejects_unknown_functions_and_bad_kwargs(client, admin_headers):
    body = await submit(client, admin_headers, "os.system", expect=422, kwargs={"command": "true"})
    assert body["errors"][0]["field"] == "function"
    assert "system.echo" in body["functions"]
    body = await submit(client, admin_headers, "system.sleep", expect=422, kwargs={"seconds": "long"})
    assert body["errors"] == [{"field": "kwargs.seconds", "message": body["errors"][0]["message"]}]
    body = await submit(client, admin_headers, "system.sleep", expect=422, kwargs={"nap": 1})
    assert body["errors"][0]["field"] == "kwargs.nap"
    body = await submit(client, admin_headers, "system.sleep", expect=422, kwargs={"seconds": -1})
    assert body["errors"][0]["field"] == "kwargs.seconds"
    assert (await client.get("/api/v1/jobs/no-such-job", headers=admin_headers)).status_code == 404
    assert (
        await client.get("/api/v1/jobs/schedule:risk-monitor:1", headers=admin_headers)
    ).status_code == 404
    assert (await client.delete("/api/v1/jobs/no-such-job", headers=admin_headers)).status_code == 404


async def test_health_reports_depth_and_oldest_age_of_waiting_jobs(client, admin_headers, settings):
    # Nothing consumes the app's queue during this test, so the job waits at the head of the list.
    job = await submit(client, admin_headers, "system.echo", kwargs={"message": "waiting"})
    assert job["status"] == "queued"
    await asyncio.sleep(1.2)
    health = (await client.get("/api/v1/jobs/health", headers=admin_headers)).json()
    assert health["queue_depth"] >= 1
    assert health["oldest_queued_age_seconds"] >= 1.0
    assert isinstance(health["failures_last_hour"], int)
    stats = (await client.get("/api/v1/jobs", headers=admin_headers)).json()
    assert stats["name"] == settings.queue_name and stats["queued"] >= 1
    metrics = (await client.get("/metrics")).text
    assert "tradedesk_queue_depth " in metrics
    # and the queued job runs once a worker shows up
    async with running_worker(settings):
        done = await wait_for(client, admin_headers, job["key"], TERMINAL)
        assert done["status"] == "complete" and done["result"]["message"] == "waiting"


async def test_result_progress_meta_and_queue_stats_through_a_worker(client, admin_headers, settings):
    async with running_worker(settings):
        job = await submit(
            client, {**admin_headers, "X-Request-ID": "req-jobs-1"}, "system.echo", kwargs={"message": "hi"}
        )
        body = await wait_for(client, admin_headers, job["key"], TERMINAL)
        assert body["status"] == "complete", body
        assert body["result"] == {"message": "hi", "db": 1}
        assert body["progress"] == 1.0 and body["attempts"] == 1 and body["function"] == "system.echo"
        assert body["meta"]["request_id"] == "req-jobs-1" and body["meta"]["user_id"]
        assert body["queued_at"] <= body["started_at"] <= body["completed_at"]

        sleeper = await submit(client, admin_headers, "system.sleep", kwargs={"seconds": 3})
        deadline = time.monotonic() + 10
        while True:
            running = (await client.get(f"/api/v1/jobs/{sleeper['key']}", headers=admin_headers)).json()
            if running["status"] == "active" and running["progress"] > 0:
                break
            assert time.monotonic() < deadline, running
            await asyncio.sleep(0.1)
        assert 0 < running["progress"] < 1

        stats = (await client.get("/api/v1/jobs", headers=admin_headers)).json()
        assert stats["workers"] >= 1 and len(stats["worker_details"]) == stats["workers"]
        assert stats["active"] >= 1
        health = (await client.get("/api/v1/jobs/health", headers=admin_headers)).json()
        assert health["workers_alive"] >= 1 and health["status"] in ("ok", "degraded")
        done = await wait_for(client, admin_headers, sleeper["key"], TERMINAL)
        assert done["status"] == "complete"


async def test_abort_running_and_waiting_jobs(client, admin_headers, settings):
    async with running_worker(settings):
        job = await submit(client, admin_headers, "system.sleep", kwargs={"seconds": 30})
        await wait_for(client, admin_headers, job["key"], {"active"})
        resp = await client.delete(f"/api/v1/jobs/{job['key']}", headers=admin_headers)
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] in ("aborting", "aborted")
        started = time.monotonic()
        body = await wait_for(client, admin_headers, job["key"], TERMINAL, within=10)
        assert body["status"] == "aborted" and body["error"].startswith("aborted by ")
        assert time.monotonic() - started < 5
        resp = await client.delete(f"/api/v1/jobs/{job['key']}", headers=admin_headers)
        assert resp.status_code == 409

        later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
        waiting = await submit(client, admin_headers, "system.echo", scheduled_at=later)
        resp = await client.delete(f"/api/v1/jobs/{waiting['key']}", headers=admin_headers)
        assert resp.status_code == 202 and resp.json()["status"] == "aborted", resp.text


async def test_timeout_fails_the_job_and_counts_a_failure(client, admin_headers, settings):
    before = await failures(client, admin_headers)
    async with running_worker(settings):
        job = await submit(client, admin_headers, "system.sleep", kwargs={"seconds": 5}, timeout=1)
        started = time.monotonic()
        body = await wait_for(client, admin_headers, job["key"], TERMINAL, within=10)
    assert body["status"] == "failed" and "TimeoutError" in body["error"]
    assert body["attempts"] == 1
    assert time.monotonic() - started < 4
    assert await failures(client, admin_headers) >= before + 1


async def test_retries_with_backoff_until_attempts_are_used_up(client, admin_headers, settings):
    before = await failures(client, admin_headers)
    async with running_worker(settings):
        job = await submit(
            client, admin_headers, "system.sleep", kwargs={"seconds": 0.05, "fail": True}, retries=3
        )
        body = await wait_for(client, admin_headers, job["key"], TERMINAL, within=20)
    assert body["status"] == "failed" and body["attempts"] == 3, body
    assert "failed on purpose (attempt 3)" in body["error"]
    assert await failures(client, admin_headers) >= before + 3


async def test_cache_stats_rollup_job_stores_a_snapshot(client, admin_headers, settings):
    async with running_worker(settings):
        first = await submit(client, admin_headers, "system.cache_stats_rollup")
        first = await wait_for(client, admin_headers, first["key"], TERMINAL)
        assert first["status"] == "complete", first
        await client.get("/api/v1/exchanges", headers=admin_headers)
        second = await submit(client, admin_headers, "system.cache_stats_rollup")
        second = await wait_for(client, admin_headers, second["key"], TERMINAL)
    snapshot = second["result"]
    assert snapshot["interval_hits"] + snapshot["interval_misses"] >= 1
    assert snapshot["hits"] + snapshot["misses"] > first["result"]["hits"] + first["result"]["misses"]
    stats = (await client.get("/api/v1/cache/stats", headers=admin_headers)).json()
    assert stats["last_rollup"]["ts"] == snapshot["ts"]


# --- schedules --------------------------------------------------------------------------------------


async def test_builtin_schedules_exist(client, admin_headers):
    resp = await client.get("/api/v1/jobs/schedules", headers=admin_headers)
    assert resp.status_code == 200
    items = {s["name"]: s for s in resp.json()["items"]}
    assert (
        items["risk-monitor"]["function"] == "risk.monitor_all"
        and items["risk-monitor"]["cron"] == "* * * * *"
    )
    assert items["equity-snapshots"]["function"] == "risk.snapshot_equity"
    assert items["expire-day-orders"]["function"] == "trading.expire_day_orders"
    assert items["cache-stats-rollup"]["function"] == "system.cache_stats_rollup"
    assert all(items[n]["next_run_at"] for n in ("risk-monitor", "cache-stats-rollup"))


async def test_schedule_crud_and_validation(client, admin_headers):
    name = f"crud-{uuid.uuid4().hex[:8]}"
    url = "/api/v1/jobs/schedules"

    async def create(expect: int, **body) -> dict:
        resp = await client.post(
            url,
            json={"name": name, "function": "system.echo", "cron": "*/5 * * * *", **body},
            headers=admin_headers,
        )
        assert resp.status_code == expect, resp.text
        return resp.json()

    assert (await create(422, cron="61 * * * *"))["errors"][0]["field"] == "cron"
    assert (await create(422, cron="every minute"))["errors"][0]["field"] == "cron"
    assert (await create(422, cron="0 0 31 2 *"))["errors"][0]["field"] == "cron"
    assert (await create(422, function="nope.missing"))["errors"][0]["field"] == "function"
    assert (await create(422, timezone="Mars/Olympus"))["errors"][0]["field"] == "timezone"
    assert (await create(422, kwargs={"message": 5}))["errors"][0]["field"] == "kwargs.message"

    before = datetime.now(UTC)
    body = await create(201, kwargs={"message": "x"}, timezone="America/New_York")
    assert body["enabled"] and body["last_run_at"] is None and body["kwargs"] == {"message": "x"}
    next_run = datetime.fromisoformat(body["next_run_at"])
    assert before < next_run <= before + timedelta(minutes=5, seconds=1) and next_run.minute % 5 == 0
    await create(409)

    assert (await client.get(f"{url}/{name}", headers=admin_headers)).json()["cron"] == "*/5 * * * *"
    assert any(s["name"] == name for s in (await client.get(url, headers=admin_headers)).json()["items"])

    resp = await client.patch(f"{url}/{name}", json={"enabled": False}, headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["enabled"] is False and resp.json()["next_run_at"] is None
    resp = await client.patch(f"{url}/{name}", json={"cron": "bad"}, headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "cron"
    resp = await client.patch(
        f"{url}/{name}", json={"enabled": True, "cron": "0 9 * * 1"}, headers=admin_headers
    )
    body = resp.json()
    assert resp.status_code == 200 and body["enabled"] and body["cron"] == "0 9 * * 1"
    nine_am_ny = datetime.fromisoformat(body["next_run_at"]).astimezone(ZoneInfo("America/New_York"))
    assert (nine_am_ny.weekday(), nine_am_ny.hour, nine_am_ny.minute) == (0, 9, 0)
    resp = await client.patch(f"{url}/{name}", json={"kwargs": {"bogus": 1}}, headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "kwargs.bogus"

    assert (await client.delete(f"{url}/{name}", headers=admin_headers)).status_code == 204
    assert (await client.get(f"{url}/{name}", headers=admin_headers)).status_code == 404
    assert (await client.delete(f"{url}/{name}", headers=admin_headers)).status_code == 404
    assert (
        await client.patch(f"{url}/{name}", json={"enabled": True}, headers=admin_headers)
    ).status_code == 404


async def test_missed_runs_run_once_and_unknown_functions_are_skipped(client, admin_headers, db_engine):
    from app.domain.jobs.scheduler import Scheduler
    from app.lib.jobs import make_queue

    name = f"missed-{uuid.uuid4().hex[:8]}"
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        "/api/v1/jobs/schedules",
        json={"name": name, "function": "system.echo", "cron": "* * * * *"},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    t = JobSchedule.__table__
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    async with db_engine.begin() as conn:
        # Three hours of missed minutes, and a schedule whose job this process does not have.
        await conn.execute(update(t).where(t.c.name == name).values(next_run_at=long_ago))
        await conn.execute(
            t.insert().values(name=ghost, function="ghost.job", cron="* * * * *", next_run_at=long_ago)
        )
    queue = make_queue(make_settings(queue_name=f"tdtest-{RUN_ID}-missed-{uuid.uuid4().hex[:6]}"))
    await queue.connect()
    try:
        scheduler = Scheduler(db_engine, queue)
        first = [k for k in await scheduler.tick() if k.startswith(f"schedule:{name}:")]
        assert first == [f"schedule:{name}:{int(long_ago.timestamp())}"]
        second = [k for k in await scheduler.tick() if k.startswith(f"schedule:{name}:")]
        assert second == []
        async with db_engine.connect() as conn:
            rows = {
                r.name: r for r in (await conn.execute(select(t).where(t.c.name.in_([name, ghost])))).all()
            }
        assert rows[name].next_run_at > datetime.now(UTC) and rows[name].last_run_at is not None
        assert rows[ghost].next_run_at == long_ago and rows[ghost].last_run_at is None
        job = await queue.job(first[0])
        assert job is not None and job.function == "system.echo" and job.meta["schedule"] == name
    finally:
        await queue.disconnect()
        async with db_engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.name.in_([name, ghost])))


@pytest.mark.timeout(60)
async def test_schedule_runs_exactly_once_per_due_time_across_three_worker_processes(
    client, admin_headers, database_url, tmp_path
):
    from app.lib.jobs import make_queue

    exe = Path(sys.executable).with_name("tradedesk")
    suffix = uuid.uuid4().hex[:6]
    queue_name = f"tdtest-{RUN_ID}-sched-{suffix}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "TRADEDESK_QUEUE_NAME": queue_name,
        "TRADEDESK_REDIS_PREFIX": f"tdtest-{RUN_ID}-sched-{suffix}",
        "TRADEDESK_WORKERS_IN_PROCESS": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    env.pop("TRADEDESK_ADMIN_API_KEY", None)
    name = f"every-second-{suffix}"
    off = f"disabled-{suffix}"
    url = "/api/v1/jobs/schedules"
    queue = make_queue(make_settings(queue_name=queue_name))
    await queue.connect()
    watcher = aioredis.from_url(REDIS_URL)
    pubsub = watcher.pubsub()
    events: list[tuple[str, str]] = []
    logs = [await asyncio.to_thread(open, tmp_path / f"worker-{i}.log", "wb") for i in range(3)]
    procs: list[asyncio.subprocess.Process] = []

    async def listen() -> None:
        # SAQ publishes every status change of a job on its own channel: a run that happened twice for
        # one due time would show two "active" events on that key even though the stored job is overwritten.
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                events.append((message["channel"].decode(), message["data"].decode()))

    listener = None
    try:
        await pubsub.psubscribe(f"saq:job:{queue_name}:schedule:*")
        listener = asyncio.create_task(listen())
        for log in logs:
            procs.append(
                await asyncio.create_subprocess_exec(
                    str(exe), "worker", "--concurrency", "4", env=env, stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + 20
        while len((await queue.info())["workers"]) < 3:
            assert all(p.returncode is None for p in procs), [
                (tmp_path / f"worker-{i}.log").read_text() for i in range(3)
            ]
            assert time.monotonic() < deadline, "3 workers did not come up"
            await asyncio.sleep(0.2)

        for body in (
            {"name": off, "function": "system.echo", "cron": "* * * * * *", "enabled": False},
            {"name": name, "function": "system.echo", "cron": "* * * * * *", "kwargs": {"message": "tick"}},
        ):
            resp = await client.post(url, json=body, headers=admin_headers)
            assert resp.status_code == 201, resp.text
        await asyncio.sleep(5)
        resp = await client.patch(f"{url}/{name}", json={"enabled": False}, headers=admin_headers)
        assert resp.status_code == 200
        await asyncio.sleep(1.0)  # let the last runs finish

        prefix = f"saq:job:{queue_name}:"
        keys = sorted(
            [
                k.decode()[len(prefix) :]
                async for k in watcher.scan_iter(match=f"{prefix}schedule:{name}:*", count=1000)
            ]
        )
        assert 3 <= len(keys) <= 8, keys
        jobs = [await queue.job(k) for k in keys]
        assert all(j is not None and j.status == "complete" and j.attempts == 1 for j in jobs), jobs
        assert all(j.result == {"message": "tick", "db": 1} for j in jobs)
        workers = set((await queue.info())["workers"])
        assert {j.meta["claimed_by"] for j in jobs} <= workers  # claimed by the schedulers of these workers
        due_times = [int(k.rsplit(":", 1)[1]) for k in keys]
        assert len(set(due_times)) == len(due_times)

        per_key = Counter((channel[len(prefix) :], status) for channel, status in events)
        for key in keys:
            assert per_key[(key, "active")] == 1, (key, per_key)
            assert per_key[(key, "complete")] == 1, (key, per_key)
        assert not any(channel[len(prefix) :].startswith(f"schedule:{off}:") for channel, _ in events)

        # disabled means disabled: no new runs appear afterwards
        await asyncio.sleep(1.2)
        later = [k async for k in watcher.scan_iter(match=f"{prefix}schedule:{name}:*", count=1000)]
        assert len(later) == len(keys)
        assert [k async for k in watcher.scan_iter(match=f"{prefix}schedule:{off}:*", count=1000)] == []
        assert all(p.returncode is None for p in procs)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 6)
            except TimeoutError:
                p.kill()
                await p.wait()
        for log in logs:
            log.close()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        await pubsub.aclose()
        await watcher.aclose()
        await queue.disconnect()
        for n in (name, off):
            await client.delete(f"{url}/{n}", headers=admin_headers)


async def test_bad_cron_is_422(client, admin_headers):
    resp = await client.post(
        "/api/v1/jobs/schedules",
        json={"name": "bad-cron", "function": "system.echo", "cron": "* * * *"},
        headers=admin_headers,
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "cron"
