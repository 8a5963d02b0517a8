"""Workers under faults, with real `tradedesk worker` processes: a worker SIGKILLed in the middle of a
sweep (its fan-out, or its runs) is recovered within a minute; the first job after a Redis restart does
not fail on a stale connection; SIGTERM stops a worker gracefully within WORKER_SHUTDOWN_SECONDS.

These tests start and stop their own processes, including their own redis-server, never the shared
PostgreSQL or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.lib.db import libpq_url
from app.server.app import create_app
from tests.conftest import make_settings, server_env
from tests.integration.helpers import make_daily_market

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

RECOVERY_BOUND = 60.0  # seconds from the kill until the whole sweep is done


def _start_worker(settings, log_path: Path, concurrency: int = 4, **extra: str) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("tradedesk"))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [exe, "worker", "--concurrency", str(concurrency)],
            env=server_env(settings, LOG_LEVEL="INFO", **extra),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


async def _sweep_with_market(settings, admin_headers, combos: int) -> tuple[str, int]:
    """A sweep of `combos` runs submitted through the API on `settings`' queue (no worker consumes it yet)."""
    async with AsyncTestClient(app=create_app(settings), timeout=30) as c:
        symbol = await make_daily_market(c, admin_headers, bars=300, seed=3)
        fast = list(range(2, 2 + combos // 2))
        resp = await c.post(
            "/api/v1/backtests/sweeps",
            headers=admin_headers,
            json={
                "strategy": "sma_cross",
                "grid": {"fast": fast, "slow": [40, 50]},
                "symbol": symbol,
                "timeframe": "1d",
                "initial_cash": "100000",
                "commission": "0",
            },
        )
        assert resp.status_code == 202, resp.text
        return resp.json()["id"], resp.json()["total"]


async def _sweep_counts(conn: asyncpg.Connection, sweep_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM backtests WHERE sweep_id = $1 GROUP BY status", uuid.UUID(sweep_id)
    )
    return {r["status"]: r["n"] for r in rows}


async def _wait(predicate, limit: float, what: str, diagnostics=lambda: "") -> None:
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {limit} s\n{diagnostics()}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("locked_table", ["backtests", "candles"], ids=["during-fan-out", "during-runs"])
async def test_worker_killed_mid_sweep_recovers_within_a_minute(
    admin_headers, database_url, tmp_path, locked_table
):
    """SIGKILL a worker while it holds the sweep's fan-out (parked on a lock of `backtests`) or its runs
    (parked loading candles); a second worker must finish the whole sweep within a minute of the kill."""
    from app.lib.jobs import make_queue

    s = make_settings(queue_name=f"{make_settings().queue_name}-kill-{uuid.uuid4().hex[:6]}")
    sweep_id, total = await _sweep_with_market(s, admin_headers, combos=12)
    queue = make_queue(s)
    await queue.connect()
    log_path = tmp_path / "workers.log"
    conn = await asyncpg.connect(libpq_url(database_url))
    locker = await asyncpg.connect(libpq_url(database_url))
    lock_tx = locker.transaction()
    procs: list[subprocess.Popen] = []
    try:
        await lock_tx.start()
        await locker.execute(f"LOCK TABLE {locked_table} IN ACCESS EXCLUSIVE MODE")
        procs.append(_start_worker(s, log_path))
        fan_out_key = f"sweep:{sweep_id}"

        async def caught() -> bool:
            assert procs[0].poll() is None, _tail(log_path)
            if locked_table == "backtests":
                job = await queue.job(fan_out_key)
                return job is not None and job.status == "active"
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE relation = 'candles'::regclass AND NOT granted"
            )
            # every slot of the worker holds a run parked in its bar load (one query; the others share it)
            return waiting >= 1 and (await _sweep_counts(conn, sweep_id)).get("running", 0) == 4

        await _wait(caught, 30, "worker busy on the sweep", lambda: _tail(log_path))
        await asyncio.sleep(1.0)
        os.killpg(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=5)
        killed = time.monotonic()
        await lock_tx.rollback()
        lock_tx = None
        procs.append(_start_worker(s, log_path))

        async def done() -> bool:
            assert procs[1].poll() is None, _tail(log_path)
            return (await _sweep_counts(conn, sweep_id)).get("completed", 0) == total

        await _wait(done, RECOVERY_BOUND, "sweep completed after the kill", lambda: _tail(log_path))
        elapsed = time.monotonic() - killed
        print(f"\nFAULT sweep worker-kill ({locked_table} locked): {total} runs done {elapsed:.1f} s later")
        assert await _sweep_counts(conn, sweep_id) == {"completed": total}
        results = await conn.fetchval(
            "SELECT count(*) FROM backtest_results r JOIN backtests b ON b.id = r.backtest_id "
            "WHERE b.sweep_id = $1",
            uuid.UUID(sweep_id),
        )
        assert results == total
    finally:
        if lock_tx is not None:
            with contextlib.suppress(Exception):
                await lock_tx.rollback()
        for proc in procs:
            _stop(proc)
        await locker.close()
        await conn.close()
        await queue.disconnect()


# ---------------------------------------------------------------------------------------------- Redis restart


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of this test's own, on a free port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


async def test_first_job_after_a_redis_restart_does_not_fail_on_a_stale_connection(tmp_path):
    from app.lib.jobs import enqueue, make_queue

    redis = RedisServer(tmp_path)
    redis.start()
    s = make_settings(redis_url=redis.url, queue_name=f"restart-{uuid.uuid4().hex[:6]}")
    log_path = tmp_path / "worker.log"
    worker = _start_worker(s, log_path, concurrency=2)
    try:

        async def run_job(function: str, kwargs: dict):
            queue = make_queue(s)
            await queue.connect()
            try:
                job = await enqueue(queue, function, kwargs, retries=1, timeout=10)
                deadline = time.monotonic() + 20
                while job.status not in ("complete", "failed", "aborted"):
                    assert worker.poll() is None, _tail(log_path)
                    assert time.monotonic() < deadline, (job, _tail(log_path))
                    await asyncio.sleep(0.1)
                    await job.refresh()
                return job
            finally:
                await queue.disconnect()

        # jobs that use the worker's own Redis connections (the cache), besides the queue's
        warm = await run_job("system.cache_stats_rollup", {})
        assert warm.status == "complete", (warm, _tail(log_path))
        await asyncio.sleep(1.0)  # the worker's pooled connections are now idle, and about to go stale
        redis.stop()
        await asyncio.sleep(2.0)  # an outage the worker's upkeep loops run into
        redis.start()
        after = await run_job("system.cache_stats_rollup", {})
        assert after.status == "complete" and after.attempts == 1, (after, _tail(log_path))
        echo = await run_job("system.echo", {"message": "after"})
        assert echo.status == "complete" and echo.attempts == 1 and echo.result["message"] == "after"
        assert worker.poll() is None
    finally:
        _stop(worker)
        redis.stop()


# ------------------------------------------------------------------------------------------------ SIGTERM


async def test_sigterm_stops_a_busy_worker_gracefully_within_the_bound(tmp_path):
    from app.lib.jobs import enqueue, make_queue

    bound = 4
    s = make_settings(queue_name=f"{make_settings().queue_name}-term-{uuid.uuid4().hex[:6]}")
    queue = make_queue(s)
    await queue.connect()
    log_path = tmp_path / "worker.log"
    worker = _start_worker(s, log_path, concurrency=2, WORKER_SHUTDOWN_SECONDS=str(bound))
    try:
        job = await enqueue(queue, "system.sleep", {"seconds": 60}, retries=2, timeout=120)

        async def running() -> bool:
            assert worker.poll() is None, _tail(log_path)
            await job.refresh()
            return job.status == "active"

        await _wait(running, 30, "sleep job running", lambda: _tail(log_path))
        await asyncio.sleep(0.5)
        os.killpg(worker.pid, signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = await asyncio.to_thread(worker.wait, bound + 3)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running {bound + 3} s after SIGTERM\n{_tail(log_path)}")
        took = time.monotonic() - sent
        print(f"\nworker exited {took:.1f} s after SIGTERM (bound {bound} s), exit code {code}")
        assert took <= bound + 1.5 and code == 0, _tail(log_path)
        # graceful: the interrupted job goes back to the queue for another worker, not lost or failed
        await job.refresh()
        assert job.status == "queued" and job.attempts == 1, job
    finally:
        _stop(worker)
        await queue.disconnect()
