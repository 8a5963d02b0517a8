"""The peer benchmark's set-up: every app gets the same pool size, and each app's run starts from a fresh
CHECKPOINT (a timed one would otherwise land in some app's measured phase and not another's)."""

import asyncpg
import pytest

from app.lib.db import libpq_url
from benchmarks.peers.run_peers import app_env, checkpoint


def test_every_app_gets_the_same_pool_size():
    env = app_env("postgresql://x@127.0.0.1/db", "redis://127.0.0.1:6379/0", "abc", pool_size=6)
    assert (env["DB_POOL_SIZE"], env["DB_MAX_OVERFLOW"], env["DB_ORDER_POOL_SIZE"]) == ("6", "0", "6")
    assert app_env("postgresql://x@127.0.0.1/db", "redis://r", "abc")["DB_ORDER_POOL_SIZE"] == "8"


async def test_checkpoint_writes_a_new_checkpoint(database_url):
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        sql = "SELECT checkpoint_lsn FROM pg_control_checkpoint()"
        before = await conn.fetchval(sql)
        await checkpoint(database_url)  # the harness's own URL form (+asyncpg) is accepted too
        after = await conn.fetchval(sql)
    finally:
        await conn.close()
    assert after > before  # a forced CHECKPOINT always writes a checkpoint record


async def test_database_cpu_is_read_from_the_postgres_processes(database_url):
    from app.tools.loadtest import cpu_seconds_between, cpu_seconds_by_command

    start = cpu_seconds_by_command("postgres")
    if not start:
        pytest.skip("PostgreSQL does not run on this host (DATABASE_URL points elsewhere)")
    conn = await asyncpg.connect(libpq_url(database_url))
    try:  # ~0.3 s of CPU in this backend (the clock ticks at 10 ms), read while the backend still exists
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        await conn.execute("SELECT count(*) FROM generate_series(1, 3000000)")
        spent = cpu_seconds_between(start, cpu_seconds_by_command("postgres"))
    finally:
        await conn.close()
    assert spent >= 0.1
    assert cpu_seconds_between({1: 5.0}, {1: 7.5, 2: 1.0}) == 3.5  # a process born in between counts whole


BURN_THEN_WAIT = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"


def test_a_process_tree_counts_its_children():
    """The API server's CPU is its process tree's (granian's workers are children of its main process)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from app.tools.loadtest import process_tree_cpu_seconds, processes

    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{BURN_THEN_WAIT}'; true"],  # the child burns 0.3 s
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while process_tree_cpu_seconds(shell.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        shell_alone = next(cpu for pid, _, _, cpu in processes() if pid == shell.pid)
        assert process_tree_cpu_seconds(shell.pid) >= 0.25 > shell_alone
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
