"""Fault injection: Redis unreachable, PostgreSQL connections killed under load, a worker killed mid-job.

Each test states what clients see while the dependency is broken and what must hold once it is back; the
numbers they print (`FAULT ...` lines, run with `-s`) are the ones quoted in docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from app.domain.trading.reconcile import reconcile_account
from app.server.app import create_app
from tests.conftest import make_settings, server_env
from tests.integration.helpers import make_account, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROBLEM = "application/problem+json"


def _is_problem(resp) -> bool:
    return resp.headers.get("content-type", "").startswith(PROBLEM)


# ------------------------------------------------------------------------------------------ Redis unreachable


def _cache_errors() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("tradedesk_cache_events_total", {"event": "errors"}) or 0.0


@pytest.mark.timeout(60)
async def test_redis_unreachable_degrades_without_500(client, admin_headers, make_user):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    candles = [
        {
            "ts": f"2026-01-0{d}T00:00:00Z",
            "open": "100",
            "high": "101",
            "low": "99",
            "close": "100",
            "volume": "5",
        }
        for d in range(1, 4)
    ]
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles",
        json={"timeframe": "1d", "candles": candles},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    acct = await make_account(client, trader["headers"], cash="1000000")
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        json={"limit_type": "max_order_quantity", "value": "10"},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text

    # Limits of 2 per window: if the limiter were enforcing anything with Redis gone, the third request
    # of a group would be a 429; failing open means none is.
    settings = make_settings(
        redis_url="redis://127.0.0.1:1/0", rate_limit_read=2, rate_limit_write=2, rate_limit_orders=2
    )
    h = trader["headers"]
    seen: list[tuple[str, str, int, float]] = []
    cache_errors_before = _cache_errors()

    async with AsyncTestClient(app=create_app(settings), timeout=30) as c:

        async def call(method: str, path: str, **kw):
            started = time.perf_counter()
            r = await c.request(method, path, **kw)
            seen.append((method, path, r.status_code, time.perf_counter() - started))
            assert r.status_code != 500, (method, path, r.text)
            # Probes answer 503 with their own report body; every other error is problem details.
            if r.status_code >= 400 and path not in ("/ready", "/api/v1/cache/health"):
                assert _is_problem(r), (method, path, r.headers, r.text)
            return r

        r = await call("GET", "/ready")
        assert r.status_code == 503 and "cache" in r.json()["failing"], r.text
        assert "database" not in r.json()["failing"]
        r = await call("GET", "/api/v1/health")
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["components"]["cache"]["status"] == "down", report
        assert report["components"]["database"]["status"] == "ok", report
        assert report["status"] == "degraded", report
        assert (await call("GET", "/health")).status_code == 200

        reads = [
            "/api/v1/instruments",
            f"/api/v1/instruments/{symbol}",
            f"/api/v1/instruments/{symbol}/candles?timeframe=1d",
            f"/api/v1/accounts/{acct}",
            f"/api/v1/accounts/{acct}/orders",
            "/api/v1/exchanges",
        ]
        for _ in range(2):  # twice: a cache that half-worked would serve the second round differently
            for path in reads:
                r = await call("GET", path, headers=h)
                assert r.status_code == 200, (path, r.text)
        candles_back = (
            await call("GET", f"/api/v1/instruments/{symbol}/candles?timeframe=1d", headers=h)
        ).json()
        assert len(candles_back["items"]) == 3

        orders_url = f"/api/v1/accounts/{acct}/orders"
        for i in range(4):
            r = await call(
                "POST",
                orders_url,
                headers=h,
                json={
                    "symbol": symbol,
                    "side": "buy",
                    "type": "market",
                    "quantity": "1",
                    "client_order_id": f"redis-down-{i}",
                },
            )
            assert r.status_code == 201, r.text
        # risk checks read PostgreSQL only: still enforced
        r = await call(
            "POST",
            orders_url,
            headers=h,
            json={
                "symbol": symbol,
                "side": "buy",
                "type": "market",
                "quantity": "11",
            },
        )
        assert r.status_code == 422 and r.json()["type"].endswith("/risk-limit-breached"), r.text
        # instrument rules too
        r = await call(
            "POST",
            orders_url,
            headers=h,
            json={
                "symbol": symbol,
                "side": "buy",
                "type": "limit",
                "quantity": "1",
                "limit_price": "100.001",
            },
        )
        assert r.status_code == 422, r.text

        # Idempotency-Key cannot be honoured without its store: refuse rather than risk a double execution
        body = {
            "symbol": symbol,
            "side": "buy",
            "type": "market",
            "quantity": "1",
            "client_order_id": "idem-503",
        }
        r = await call(
            "POST", orders_url, headers={**h, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}, json=body
        )
        assert r.status_code == 503, r.text
        assert r.json()["status"] == 503 and "Idempotency" in r.json()["detail"]
        listed = (await call("GET", f"{orders_url}?limit=500", headers=h)).json()["items"]
        assert "idem-503" not in {o["client_order_id"] for o in listed}  # refused before anything ran
        r = await call("POST", orders_url, headers=h, json=body)
        assert r.status_code == 201, r.text
        # other writes keep working without the key
        r = await call(
            "POST", "/api/v1/accounts", headers=h, json={"name": "while-redis-down", "initial_cash": "10"}
        )
        assert r.status_code == 201, r.text

        r = await call("GET", f"/api/v1/accounts/{acct}", headers=h)
        assert r.json()["cash"] != "1000000"  # the fills landed

        r = await call("GET", "/api/v1/cache/health", headers=admin_headers)
        assert r.status_code == 503 and r.json()["status"] == "down", r.text

    codes = Counter(code for _, _, code, _ in seen)
    assert codes[429] == 0 and codes[500] == 0, codes
    bypassed = _cache_errors() - cache_errors_before
    assert bypassed >= 6, bypassed  # every cached read above went to PostgreSQL, and was counted
    slowest = max(seen, key=lambda s: s[3])
    print(
        f"\nFAULT redis-down: {len(seen)} requests, status counts {dict(sorted(codes.items()))}, "
        f"slowest {slowest[3] * 1000:.0f} ms ({slowest[0]} {slowest[1]}); "
        f"cache bypasses counted: {bypassed:.0f}"
    )


async def test_a_broken_pooled_connection_is_a_503_not_a_500():
    """The PostgreSQL-kill test hits this race only a few times per run; pin the classification."""
    from asyncpg.exceptions import InternalClientError
    from sqlalchemy.exc import DBAPIError

    from app.lib.dependency_errors import classify_dependency_error

    raw = InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    assert classify_dependency_error(raw)[0] == 503
    wrapped = DBAPIError("ROLLBACK", None, raw, connection_invalidated=True)
    assert classify_dependency_error(wrapped)[0] == 503
    assert classify_dependency_error(ValueError("a bug"))[0] == 500


# --------------------------------------------------------------------------- PostgreSQL connections killed

STORM_CLIENTS = 16
STORM_SECONDS = 10.0
# 3 s apart: each kill's error window (< RECOVERY_BOUND) can be told from the next one's, and a full
# second after it remains in which requests must succeed again (a 0.1 s remainder made that check depend
# on whether any request happened to complete inside it).
KILL_AT = (1.0, 4.0, 7.0)  # seconds into the storm
REQUEST_TIMEOUT = 5.0
RECOVERY_BOUND = 2.0

KILL_SQL = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'tradedesk'
"""


@dataclass
class Outcome:
    kind: str  # "order" or "read"
    started: float  # seconds since the storm began
    ended: float
    status: int | str  # HTTP status, or the client-side exception name
    problem: bool = False
    client_order_id: str | None = None
    order_id: str | None = None
    body: dict | None = None


def _server_logs(cluster, limit: int = 6000) -> str:
    """What the API processes logged so far, for a failure message. Their stderr is a pipe nobody else
    reads; draining it here also keeps a chatty outage from filling it and blocking the servers."""
    out = []
    for proc in cluster.procs:
        if proc.stderr is None:
            continue
        os.set_blocking(proc.stderr.fileno(), False)
        with contextlib.suppress(Exception):
            out.append((proc.stderr.read() or b"").decode(errors="replace"))
    return "\n".join(out)[-limit:]


_CAUSES = (
    ("InternalClientError", "FATAL on an idle pooled connection (InternalClientError)"),
    ("closed in the middle of operation", "connection lost mid-statement"),
    ("ConnectionDoesNotExistError", "connection lost mid-statement"),
    ("AdminShutdownError", "terminated mid-statement (AdminShutdownError)"),
    ("connection is closed", "connection already closed"),
    ("QueuePool limit", "pool exhausted"),
    ("Timeout", "timeout"),
)


def _cause(log_line: str) -> str:
    return next((label for marker, label in _CAUSES if marker in log_line), "other")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else 0.0


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_postgres_connections_killed_mid_traffic(
    client, cluster, live, admin_headers, make_user, db_engine, database_url
):
    import httpx
    from sqlalchemy import text

    from app.lib.db import libpq_url

    trader = await make_user("trader")
    h = trader["headers"]
    symbol = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000000", allow_short=True)
    reads = [
        f"/api/v1/accounts/{acct}",
        f"/api/v1/accounts/{acct}/orders?limit=20",
        f"/api/v1/instruments/{symbol}",
        f"/api/v1/accounts/{acct}/positions",
    ]
    for c in live:  # both processes warm (pools open, key cached) before the clock starts
        assert (await c.get(reads[0], headers=h)).status_code == 200

    outcomes: list[Outcome] = []
    kills: list[tuple[float, int]] = []
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    async def one_client(i: int) -> None:
        c = live[i % 2]
        n = 0
        while now() < STORM_SECONDS:
            n += 1
            coid = None
            if n % 2:
                coid = f"pgkill-{i}-{n}"
                kind, method, path = "order", "POST", f"/api/v1/accounts/{acct}/orders"
                body = {
                    "symbol": symbol,
                    "side": "buy" if (i + n) % 4 else "sell",
                    "type": "market",
                    "quantity": "1",
                    "client_order_id": coid,
                }
            else:
                kind, method, path, body = "read", "GET", reads[(i + n) % len(reads)], None
            started = now()
            try:
                r = await c.request(method, path, json=body, headers=h, timeout=REQUEST_TIMEOUT)
            except httpx.HTTPError as exc:  # a hang or a dropped connection: recorded, asserted on below
                outcomes.append(
                    Outcome(kind, started, now(), type(exc).__name__, client_order_id=coid, body=body)
                )
                continue
            oid = r.json().get("id") if kind == "order" and r.status_code in (200, 201) else None
            outcomes.append(Outcome(kind, started, now(), r.status_code, _is_problem(r), coid, oid, body))

    async def killer() -> None:
        conn = await asyncpg.connect(libpq_url(database_url))
        try:
            for at in KILL_AT:
                await asyncio.sleep(max(0.0, at - now()))
                started = now()
                kills.append((started, await conn.fetchval(KILL_SQL)))
        finally:
            await conn.close()

    await asyncio.gather(killer(), *[one_client(i) for i in range(STORM_CLIENTS)])

    statuses = Counter(o.status for o in outcomes)
    bad = [o for o in outcomes if o.status not in (200, 201, 503)]
    logs = _server_logs(cluster, 2_000_000)
    if bad:
        print("SERVER LOGS\n" + logs[-100_000:])
    assert not bad, (statuses, bad[:5])
    assert all(o.problem for o in outcomes if o.status == 503)
    assert all(o.ended - o.started < REQUEST_TIMEOUT for o in outcomes)
    assert all(killed > 0 for _, killed in kills), kills
    errors = [o for o in outcomes if o.status == 503]
    assert not [o for o in errors if o.ended < kills[0][0]], "errors before the first kill"

    # Per kill: how long clients kept seeing 503s, and when the first request sent after the kill succeeded.
    # A 503 belongs to the last kill before it was answered (a request sent just before a kill fails by it).
    windows = []
    for k, (at, killed) in enumerate(kills):
        until = kills[k + 1][0] if k + 1 < len(kills) else float("inf")
        errs = [o for o in errors if at <= o.ended < until]
        last_error = max((o.ended for o in errs), default=at) - at
        first_ok = min(
            (o.ended for o in outcomes if o.started >= at and o.status in (200, 201)), default=None
        )
        assert first_ok is not None, f"nothing succeeded after kill {k}"
        windows.append((at, killed, len(errs), last_error, first_ok - at))
        assert last_error < RECOVERY_BOUND, (k, last_error, errs[-3:])
        late = [o for o in outcomes if o.started >= at + RECOVERY_BOUND and o.ended < until]
        assert late and all(o.status != 503 for o in late), (k, late[:3])

    # Afterwards: every 201 exists exactly once; a 503'd order either committed or not, never twice, and a
    # client retrying it with the same client_order_id gets the one order (200) or places it now (201).
    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT client_order_id, count(*) AS n, min(id::text) AS id FROM orders "
                    "WHERE account_id = :a GROUP BY client_order_id"
                ),
                {"a": acct},
            )
        ).all()
    stored = {r.client_order_id: (r.n, r.id) for r in rows}
    orders = [o for o in outcomes if o.kind == "order"]
    assert all(n == 1 for n, _ in stored.values())
    for o in orders:
        if o.status == 201:
            assert stored.get(o.client_order_id) == (1, o.order_id), o
    failed_orders = [o for o in orders if o.status == 503]
    committed_anyway = [o for o in failed_orders if o.client_order_id in stored]
    for o in failed_orders:
        r = await live[0].post(f"/api/v1/accounts/{acct}/orders", headers=h, json=o.body)
        assert r.status_code == (200 if o.client_order_id in stored else 201), (o, r.text)
    async with db_engine.connect() as conn:
        total = await conn.scalar(text("SELECT count(*) FROM orders WHERE account_id = :a"), {"a": acct})
        dupes = await conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT client_order_id FROM orders WHERE account_id = :a "
                "GROUP BY client_order_id HAVING count(*) > 1) d"
            ),
            {"a": acct},
        )
        drift = await reconcile_account(conn, uuid.UUID(acct))
    assert dupes == 0
    assert total == len(orders), (total, len(orders))
    assert drift.ok, drift.problems

    causes = Counter(_cause(line) for line in logs.splitlines() if "dependency_unavailable" in line)
    latencies = [o.ended - o.started for o in outcomes]
    err_lat = [o.ended - o.started for o in errors]
    print(
        f"\nFAULT pg-kill: {len(outcomes)} requests from {STORM_CLIENTS} clients over {STORM_SECONDS:.1f} s "
        f"on 2 processes; status counts {dict(sorted(statuses.items(), key=str))}; "
        f"error rate {len(errors) / len(outcomes):.2%}; latency p50 {_pct(latencies, 0.5) * 1000:.0f} ms "
        f"p99 {_pct(latencies, 0.99) * 1000:.0f} ms max {max(latencies) * 1000:.0f} ms; "
        f"503 latency max {max(err_lat, default=0) * 1000:.0f} ms"
    )
    for at, killed, n_err, last_error, first_ok in windows:
        print(
            f"FAULT pg-kill: kill at {at:.2f} s terminated {killed} backends -> {n_err} x 503, "
            f"last 503 {last_error * 1000:.0f} ms after, first success {first_ok * 1000:.0f} ms after"
        )
    print(
        f"FAULT pg-kill: orders 201={sum(o.status == 201 for o in orders)} 503={len(failed_orders)} "
        f"(of which committed anyway: {len(committed_anyway)}); after client retries {total} orders, "
        f"0 duplicates, reconcile ok"
    )
    print(f"FAULT pg-kill: server-side causes of the 503s: {dict(causes.most_common())}")


# ------------------------------------------------------------------------------------ worker killed mid-job

JOB_TIMEOUT = 12  # production jobs carry no heartbeat: SAQ's sweep finds a dead worker's job by its timeout
SLEEP_SECONDS = 8


def _transitions(statuses: list[str]) -> list[str]:
    return [st for i, st in enumerate(statuses) if i == 0 or statuses[i - 1] != st]


def _tail(path: Path, chars: int) -> str:
    return path.read_text(errors="replace")[-chars:]


def _start_worker(settings, queue_name: str, log_path: Path) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("tradedesk"))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [exe, "worker", "--concurrency", "4"],
            env=server_env(settings, TRADEDESK_QUEUE_NAME=queue_name, LOG_LEVEL="INFO"),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


async def _worker_diagnostics(conn, keys: dict[str, str], events, log_path: Path, backtest_id: str) -> str:
    """Everything needed to tell a slow sweep from a hung retry, printed when the wait times out."""
    lines = [
        f"{name}: {_transitions([st for _, k, st in events if k == key])} {events_for}"
        for name, key in keys.items()
        for events_for in [[(round(t, 1), st) for t, k, st in events if k == key][-8:]]
    ]
    row = await conn.fetchrow(
        "SELECT status, progress, error FROM backtests WHERE id = $1", uuid.UUID(backtest_id)
    )
    lines.append(f"backtest row: {dict(row) if row else None}")
    for r in await conn.fetch(
        "SELECT pid, application_name, state, wait_event_type, wait_event, left(query, 120) AS query "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ):
        lines.append(f"pg: {dict(r)}")
    lines.append(_tail(log_path, 6000))
    return "\n".join(lines)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 25) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_worker_killed_mid_job_is_retried_and_completes_once(
    settings, admin_headers, db_engine, database_url, tmp_path
):
    import redis.asyncio as aioredis
    from sqlalchemy import func, select

    from app.domain.backtesting.models import Backtest, BacktestResult
    from app.domain.backtesting.services import job_key
    from app.domain.markets.synthetic import candles_to_csv, generate_candles
    from app.lib.db import libpq_url
    from app.lib.jobs import enqueue, make_queue

    queue_name = f"{settings.queue_name}-faults-{uuid.uuid4().hex[:6]}"
    s = make_settings(queue_name=queue_name)
    queue = make_queue(s)
    await queue.connect()
    log_path = tmp_path / "workers.log"
    procs: list[subprocess.Popen] = []
    watcher = aioredis.from_url(s.redis_url)
    pubsub = watcher.pubsub()
    events: list[tuple[float, str, str]] = []
    lock_conn = await asyncpg.connect(libpq_url(database_url))
    lock_tx = None
    t0 = time.monotonic()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                key = message["channel"].decode().removeprefix(f"saq:job:{queue_name}:")
                events.append((time.monotonic() - t0, key, message["data"].decode()))

    listener = None
    try:
        # A backtest submitted through the API, on this test's queue (nobody else consumes it).
        async with AsyncTestClient(app=create_app(s), timeout=30) as c:
            symbol = await make_market(c, admin_headers)
            rows = generate_candles(bars=300, seed=21, timeframe="1d")
            resp = await c.post(
                f"/api/v1/instruments/{symbol}/candles?timeframe=1d",
                content=candles_to_csv(rows).encode(),
                headers={**admin_headers, "Content-Type": "text/csv"},
            )
            assert resp.status_code == 201, resp.text
            resp = await c.post(
                "/api/v1/backtests",
                headers=admin_headers,
                json={
                    "strategy": "sma_cross",
                    "params": {"fast": 5, "slow": 20},
                    "symbol": symbol,
                    "timeframe": "1d",
                    "initial_cash": "100000",
                    "commission": "0.0005",
                },
            )
            assert resp.status_code == 202, resp.text
            backtest_id = resp.json()["id"]
        bt_key = job_key(uuid.UUID(backtest_id))
        bt_job = await queue.job(bt_key)
        assert bt_job is not None and bt_job.retries >= 2
        # backtest.run's own timeout is 1800 s, and that bounds recovery (see docs/RELIABILITY.md); shortened
        # here so the sweep retries it within the test.
        await bt_job.update(timeout=JOB_TIMEOUT)
        sleep_key = f"faults-sleep-{uuid.uuid4().hex[:8]}"
        await enqueue(
            queue, "system.sleep", {"seconds": SLEEP_SECONDS}, key=sleep_key, retries=2, timeout=JOB_TIMEOUT
        )
        keys = {"sleep": sleep_key, "backtest": bt_key}

        await pubsub.psubscribe(f"saq:job:{queue_name}:*")
        listener = asyncio.create_task(listen())

        # The backtest has to be caught mid-run, but a 300-bar simulation takes milliseconds: holding the
        # candles table locked parks it in its bar load, after it marked the row `running`.
        await lock_conn.execute("SET lock_timeout = '5s'")
        lock_tx = lock_conn.transaction()
        await lock_tx.start()
        await lock_conn.execute("LOCK TABLE candles IN ACCESS EXCLUSIVE MODE")

        async def job_status(key: str):
            job = await queue.job(key)
            return job.status if job else None

        async def row_status() -> str:
            async with db_engine.connect() as conn:
                return await conn.scalar(select(Backtest.status).where(Backtest.id == uuid.UUID(backtest_id)))

        procs.append(_start_worker(settings, queue_name, log_path))
        deadline = time.monotonic() + 20
        while not (
            await job_status(sleep_key) == "active"
            and await job_status(bt_key) == "active"
            and await row_status() == "running"
        ):
            assert procs[0].poll() is None, _tail(log_path, 3000)
            assert time.monotonic() < deadline, "jobs never became active"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the sleep job is well into its 8 s
        assert (await queue.job(sleep_key)).progress > 0

        os.killpg(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=5)
        killed_at = time.monotonic() - t0
        await lock_tx.rollback()
        lock_tx = None
        for key in keys.values():  # nobody is left to say otherwise
            assert await job_status(key) == "active"

        # The replacement worker starts once both jobs are past their timeout (the dead worker's sweep lock,
        # taken when it started, has expired by then): its first sweep, at start-up, finds both stuck.
        # Started at once instead, it would sweep every 10 s from a random phase, and two jobs whose
        # timeouts straddle one sweep come back a whole sweep (plus 5 s) apart: up to ~42 s after the kill,
        # too close to this test's bound to be a stable test.
        started = [(await queue.job(key)).started for key in keys.values()]
        stuck_at = max(started) / 1000 + JOB_TIMEOUT + 0.5
        await asyncio.sleep(max(0.0, stuck_at - time.time()))
        procs.append(_start_worker(settings, queue_name, log_path))
        replaced_at = time.monotonic() - t0
        deadline = time.monotonic() + 35
        while True:
            statuses = {name: await job_status(key) for name, key in keys.items()}
            if all(st in ("complete", "failed", "aborted") for st in statuses.values()):
                break
            assert procs[1].poll() is None, _tail(log_path, 3000)
            if time.monotonic() > deadline:
                print(await _worker_diagnostics(lock_conn, keys, events, log_path, backtest_id))
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)  # let the last notifications arrive

        sleep_job = await queue.job(sleep_key)
        assert sleep_job.status == "complete", (sleep_job, events)
        assert sleep_job.attempts == 2 and sleep_job.result == {"slept": SLEEP_SECONDS}, sleep_job
        bt_job = await queue.job(bt_key)
        assert bt_job.status == "complete" and bt_job.attempts == 2, bt_job
        assert bt_job.result["status"] == "completed" and not bt_job.result.get("skipped"), bt_job.result
        async with db_engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Backtest.status, Backtest.progress).where(Backtest.id == uuid.UUID(backtest_id))
                )
            ).one()
            results = await conn.scalar(
                select(func.count())
                .select_from(BacktestResult)
                .where(BacktestResult.backtest_id == uuid.UUID(backtest_id))
            )
        assert (row.status, row.progress, results) == ("completed", 1.0, 1)
        for name, key in keys.items():
            # Progress updates re-publish "active"; the transitions are what tell the story.
            mine = _transitions([status for _, k, status in events if k == key])
            assert mine == ["active", "aborting", "queued", "active", "complete"], (name, mine)

        def first(key: str, status: str, after: float) -> float:
            return min(t for t, k, st in events if k == key and st == status and t >= after) - killed_at

        print(f"\nFAULT worker-kill: second worker started {replaced_at - killed_at:.1f} s after the kill")
        for name, key in keys.items():
            print(
                f"FAULT worker-kill: {name} job killed mid-run; re-queued by the sweep "
                f"{first(key, 'queued', killed_at):.1f} s after the kill, running again after "
                f"{first(key, 'active', killed_at):.1f} s, "
                f"complete after {first(key, 'complete', killed_at):.1f} s "
                f"(timeout {JOB_TIMEOUT} s, attempts {(await queue.job(key)).attempts}, "
                f"transitions {_transitions([st for _, k, st in events if k == key])})"
            )
        assert all(p.poll() is None for p in procs[1:])
    finally:
        if lock_tx is not None:
            with contextlib.suppress(Exception):
                await lock_tx.rollback()
        await lock_conn.close()
        for proc in procs:
            _stop(proc)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        await watcher.aclose()
        await queue.disconnect()
