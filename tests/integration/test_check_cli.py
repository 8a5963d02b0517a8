"""`tradedesk check`: a readable report, non-zero exit when anything is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import server_env


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    return subprocess.run([tradedesk, "check", "--no-require-workers"], env=env, capture_output=True, text=True, timeout=60)


def _reset_schedules(settings) -> None:
    """No scheduler runs in this test: make the built-in schedules due in the future, not overdue."""
    import asyncio

    import asyncpg

    from app.lib.db import libpq_url

    async def run() -> None:
        conn = await asyncpg.connect(libpq_url(settings.database_url))
        try:
            await conn.execute("UPDATE job_schedules SET next_run_at = now() + interval '1 minute' WHERE enabled")
        finally:
            await conn.close()

    asyncio.run(run())


def test_check_reports_database_redis_cache_and_schedules(settings):
    _reset_schedules(settings)
    env = server_env(settings, TRADEDESK_ADMIN_API_KEY="x" * 40, LOG_FORMAT="json")
    done = _check(env)
    out = done.stdout
    assert "[ok] database: reachable and at migration head" in out, out
    assert "[ok] redis: reachable" in out and "[ok] cache: read-through round trip works" in out
    assert "[ok] schedules: 5 enabled" in out  # the four of migration 0002 and 0007's orphan recovery
    assert done.returncode == 0, out


def test_check_fails_on_unreachable_redis_and_weak_secret(settings):
    env = server_env(settings, REDIS_URL="redis://127.0.0.1:1/0", TRADEDESK_ADMIN_API_KEY="devkey")
    env.pop("TRADEDESK_QUEUE_URL", None)
    done = _check({k: v for k, v in env.items() if k != "LOG_FORMAT"} | {"LOG_FORMAT": os.environ.get("LOG_FORMAT", "json")})
    assert done.returncode == 1
    assert "[FAIL] settings: TRADEDESK_ADMIN_API_KEY is short or a development default" in done.stdout
    assert "[FAIL] redis" in done.stdout


def test_reconcile_tells_bad_input_from_drift(settings):
    """Exit 1 means drift; an account id that is not a UUID, or no such account, is a usage error (2)."""
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    env = server_env(settings)
    for account in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        done = subprocess.run(
            [tradedesk, "reconcile", "--account", account], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "--account" in done.stderr and "Traceback" not in done.stderr, done.stderr
