"""Backtests and sweeps through the API, on real SAQ workers where a run has to happen."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from app.domain.backtesting import tasks
from app.domain.backtesting.engine import Bars, run_strategy
from app.domain.backtesting.models import Backtest, BacktestResult
from app.domain.backtesting.schemas import MONEY_METRICS
from app.domain.markets.synthetic import candles_to_csv, generate_candles
from tests.conftest import make_settings
from tests.integration.helpers import client_with_worker, discard_pending_jobs, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")

COSTS = {"initial_cash": "100000", "commission": "0.0005", "slippage_bps": "2"}


def bars_of(rows) -> Bars:
    return Bars(
        ts=np.array([int(r.ts.timestamp()) for r in rows], dtype=np.int64),
        open=[float(r.open) for r in rows],
        high=[float(r.high) for r in rows],
        low=[float(r.low) for r in rows],
        close=[float(r.close) for r in rows],
        volume=[float(r.volume) for r in rows],
    )


def direct_run(bars: Bars, timeframe: str, params: dict, strategy: str = "sma_cross"):
    return run_strategy(
        bars,
        strategy,
        params,
        initial_cash=100_000.0,
        commission=0.0005,
        slippage_bps=2.0,
        lot_size=1.0,
    )


def assert_same_metrics(api: dict, direct: dict) -> None:
    assert set(api) == set(direct)
    for key, value in direct.items():
        got = api[key]
        if value is None:
            assert got is None, key
        elif key in MONEY_METRICS:
            # money is rounded half-even to 1e-8 (the engine's float noise is not an amount)
            assert isinstance(got, str) and abs(float(got) - value) <= 5e-9 * max(1.0, abs(value)), key
        else:
            assert got == value, (key, got, value)


async def upload(client, admin_headers, symbol: str, rows, timeframe: str) -> None:
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles?timeframe={timeframe}",
        content=candles_to_csv(rows).encode(),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text


async def wait_for(
    client, headers, backtest_id: str, limit_seconds: float = 30.0
) -> tuple[dict, list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + limit_seconds
    while True:
        resp = await client.get(f"/api/v1/backtests/{backtest_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.append((body["status"], body["progress"]))
        if body["status"] in ("completed", "failed", "canceled"):
            return body, seen
        assert time.monotonic() < deadline, f"backtest still {body['status']} after {limit_seconds}s"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def worker_client(settings):
    """An app and a real worker of its own on a queue nobody else uses (the session `client` has none)."""
    async with client_with_worker(settings, "bt", concurrency=4) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def queue(settings):
    """The session client's queue (no worker consumes it), opened on the test's own event loop. What the
    module queued is discarded at its end, so a later module's worker starts on an empty queue."""
    from app.lib.jobs import make_queue

    q = make_queue(settings)
    await q.connect()
    yield q
    await discard_pending_jobs(q)
    await q.disconnect()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def daily_market(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    rows = generate_candles(bars=800, seed=11, timeframe="1d")
    await upload(client, admin_headers, symbol, rows, "1d")
    return symbol, rows


async def submit(client, headers, symbol: str, timeframe: str = "1d", expect: int = 202, **extra) -> dict:
    body = {
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "symbol": symbol,
        "timeframe": timeframe,
        **COSTS,
        **extra,
    }
    resp = await client.post("/api/v1/backtests", json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


async def result_rows(db_engine, backtest_id: str) -> int:
    async with db_engine.connect() as conn:
        return await conn.scalar(
            select(func.count())
            .select_from(BacktestResult)
            .where(BacktestResult.backtest_id == uuid.UUID(backtest_id))
        )


# ------------------------------------------------------------------------------------------------ strategies


async def test_strategies_list_schema_and_defaults(client, make_user):
    user = await make_user()
    resp = await client.get("/api/v1/strategies", headers=user["headers"])
    assert resp.status_code == 200
    items = {s["name"]: s for s in resp.json()["items"]}
    assert {"sma_cross", "buy_and_hold", "rsi_reversion"} <= set(items)
    sma = items["sma_cross"]
    assert sma["defaults"] == {"fast": 10, "slow": 30, "allow_short": False}
    assert sma["description"]
    props = sma["params_schema"]["$defs"]["SmaCrossParams"]["properties"]
    assert props["fast"]["minimum"] == 1 and props["fast"]["default"] == 10
    assert (await client.get("/api/v1/strategies")).status_code == 401


# ------------------------------------------------------------------------------------------------ real worker


async def test_backtest_on_a_real_worker_reports_progress_and_matches_the_engine(
    worker_client, client, admin_headers, make_user
):
    user = await make_user()
    symbol = await make_market(client, admin_headers)
    # Off the event loop: the worker shares this loop and would miss its Redis deadlines meanwhile.
    rows = await asyncio.to_thread(generate_candles, bars=50_000, seed=5, timeframe="1m")
    await upload(client, admin_headers, symbol, rows, "1m")

    submitted = await submit(worker_client, user["headers"], symbol, "1m")
    assert submitted["status"] == "queued" and submitted["progress"] == 0.0
    assert submitted["job_key"] == f"backtest:{submitted['id']}"
    assert submitted["params"] == {"fast": 10, "slow": 30, "allow_short": False}  # defaults filled in
    body, seen = await wait_for(worker_client, user["headers"], submitted["id"])
    assert body["status"] == "completed", body["error"]

    progress = [p for _, p in seen]
    assert progress == sorted(progress), f"progress went backwards: {seen}"
    assert all(0.0 <= p <= 1.0 for p in progress) and progress[-1] == 1.0
    assert [s for s, _ in seen][-1] == "completed"
    assert (
        body["started_at"]
        and body["finished_at"]
        and body["run_seconds"] >= 0
        and body["queued_seconds"] >= 0
    )

    direct = await asyncio.to_thread(direct_run, bars_of(rows), "1m", {"fast": 10, "slow": 30})
    assert body["input_hash"] == direct.input_hash
    assert_same_metrics(body["metrics"], direct.metrics)
    assert direct.metrics["trades"] > 100  # a run that actually traded

    # Trades: every trade once, in order, exactly the engine's numbers.
    got, cursor = [], None
    while True:
        url = f"/api/v1/backtests/{body['id']}/trades?limit=500&sort=asc" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = (await worker_client.get(url, headers=user["headers"])).json()
        got += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert page["total"] == len(direct.trades) == len(got)
    assert [t["index"] for t in got] == list(range(len(got)))
    for api_trade, trade in zip(got, direct.trades, strict=True):
        # money and fill prices rounded half-even to 1e-8 (the engine works in floats): a price the slippage
        # moved off the tick grid is the fill as made, so the trade's prices add up to its PnL
        assert abs(float(api_trade["pnl"]) - trade.pnl) <= 5e-9 * max(1.0, abs(trade.pnl))
        expected = Decimal(repr(trade.entry_price)).quantize(Decimal("1e-8"), ROUND_HALF_EVEN)
        assert Decimal(api_trade["entry_price"]) == expected
        assert api_trade["entry_ts"] == datetime.fromtimestamp(trade.entry_ts, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    newest = (
        await worker_client.get(f"/api/v1/backtests/{body['id']}/trades?limit=3", headers=user["headers"])
    ).json()
    assert [t["index"] for t in newest["items"]] == [len(got) - 1, len(got) - 2, len(got) - 3]

    # Equity: downsampled, keeps first/last, drawdown <= 0.
    eq = (
        await worker_client.get(
            f"/api/v1/backtests/{body['id']}/equity?max_points=400", headers=user["headers"]
        )
    ).json()
    assert eq["bars"] == 50_000 and 2 < eq["points"] <= 400
    assert abs(float(eq["items"][-1]["equity"]) - direct.equity[-1]) <= 5e-9 * abs(direct.equity[-1])
    assert float(eq["items"][0]["equity"]) == direct.equity[0]
    assert all(p["drawdown"] <= 0 for p in eq["items"])
    assert min(p["drawdown"] for p in eq["items"]) == pytest.approx(direct.metrics["max_drawdown"], abs=1e-12)
    resp = await worker_client.get(
        f"/api/v1/backtests/{body['id']}/equity?max_points=1", headers=user["headers"]
    )
    assert resp.status_code == 400

    report = await worker_client.get(f"/api/v1/backtests/{body['id']}/report", headers=user["headers"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in report.headers["content-security-policy"]
    html = report.text
    assert 'data-chart="equity"' in html and 'data-chart="drawdown"' in html and "trade-marker" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing external


async def test_progress_is_written_while_the_simulation_runs(
    client, admin_headers, make_user, db_engine, monkeypatch
):
    """The engine's progress callback reaches the SAQ job and the row, increasing, between load and end."""
    user = await make_user()
    symbol = await make_market(client, admin_headers)
    rows = await asyncio.to_thread(generate_candles, bars=20_000, seed=8, timeframe="1m")
    await upload(client, admin_headers, symbol, rows, "1m")
    bt = await submit(client, user["headers"], symbol, "1m", params={"fast": 3, "slow": 7})

    class RecordingJob:
        attempts, retryable = 1, False

        def __init__(self) -> None:
            self.progress: list[float] = []

        async def update(self, progress: float) -> None:
            self.progress.append(progress)

    monkeypatch.setattr(tasks, "PROGRESS_MIN_INTERVAL", 0.0)
    rec = RecordingJob()
    result = await tasks.run_backtest_job({"engine": db_engine, "job": rec}, backtest_id=bt["id"])
    assert result["status"] == "completed"
    assert rec.progress == sorted(rec.progress) and len(rec.progress) >= 5, rec.progress
    assert rec.progress[0] == tasks.LOADED and tasks.LOADED < rec.progress[-2] <= tasks.SIMULATED
    steps = np.diff(rec.progress)
    assert np.all(steps >= tasks.PROGRESS_MIN_STEP - 1e-12)
    final = (await client.get(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])).json()
    assert final["status"] == "completed" and final["progress"] == 1.0


# ------------------------------------------------------------------------------------------------ validation


async def test_bad_strategy_or_params_are_422_at_submit_with_no_row_and_no_job(
    client, daily_market, make_user, queue
):
    symbol, _ = daily_market
    user = await make_user()
    jobs_before = await queue.count("incomplete")
    cases = [
        ({"strategy": "nope"}, "strategy"),
        ({"params": {"fast": 0, "slow": 30}}, "params.fast"),
        ({"params": {"fast": 40, "slow": 30}}, "params.fast"),
        ({"params": {"fast": "ten"}}, "params.fast"),
        ({"params": {"fats": 5}}, "params.fats"),
        ({"symbol": "NOSUCHSYM"}, "symbol"),
        ({"timeframe": "1h"}, "timeframe"),
        ({"start": "2031-01-01T00:00:00Z"}, "start"),
    ]
    for extra, field in cases:
        resp = await client.post(
            "/api/v1/backtests",
            json={
                "strategy": "sma_cross",
                "params": {},
                "symbol": symbol,
                "timeframe": "1d",
                **COSTS,
                **extra,
            },
            headers=user["headers"],
        )
        assert resp.status_code == 422, (extra, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in resp.json()["errors"]], (extra, resp.json())
    # Malformed costs are rejected by the body schema before anything else.
    for bad in ({"initial_cash": "-5"}, {"commission": "1.5"}, {"timeframe": "7m"}):
        resp = await client.post(
            "/api/v1/backtests",
            json={"strategy": "sma_cross", "symbol": symbol, "timeframe": "1d", **COSTS, **bad},
            headers=user["headers"],
        )
        assert resp.status_code in (400, 422), resp.text
    listed = (await client.get("/api/v1/backtests", headers=user["headers"])).json()
    assert listed["items"] == []
    assert await queue.count("incomplete") == jobs_before


async def test_users_see_only_their_own_backtests(client, daily_market, make_user, admin_headers):
    symbol, _ = daily_market
    alice, bob = await make_user(), await make_user()
    a_runs = await asyncio.gather(*(submit(client, alice["headers"], symbol) for _ in range(3)))
    b_runs = await asyncio.gather(*(submit(client, bob["headers"], symbol) for _ in range(2)))
    a_list = (await client.get("/api/v1/backtests?limit=2", headers=alice["headers"])).json()
    assert len(a_list["items"]) == 2 and a_list["next_cursor"]
    rest = (
        await client.get(
            f"/api/v1/backtests?limit=2&cursor={a_list['next_cursor']}", headers=alice["headers"]
        )
    ).json()
    assert {b["id"] for b in a_list["items"] + rest["items"]} == {b["id"] for b in a_runs}
    assert rest["next_cursor"] is None
    created = [b["created_at"] for b in a_list["items"] + rest["items"]]
    assert created == sorted(created, reverse=True)
    b_list = (await client.get("/api/v1/backtests", headers=bob["headers"])).json()
    assert {b["id"] for b in b_list["items"]} == {b["id"] for b in b_runs}

    other = b_runs[0]["id"]
    for method, path in [
        ("GET", ""),
        ("GET", "/trades"),
        ("GET", "/equity"),
        ("GET", "/report"),
        ("POST", "/report-token"),
        ("DELETE", ""),
    ]:
        resp = await client.request(method, f"/api/v1/backtests/{other}{path}", headers=alice["headers"])
        assert resp.status_code == 404, (method, path, resp.text)
    assert (
        await client.get(f"/api/v1/backtests/{uuid.uuid4()}", headers=alice["headers"])
    ).status_code == 404
    # Bob's run is untouched by Alice's DELETE attempt; an admin sees it.
    resp = await client.get(f"/api/v1/backtests/{other}", headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["status"] == "queued"
    # Results of an unfinished run are a conflict, not an empty success.
    assert (await client.get(f"/api/v1/backtests/{other}/trades", headers=bob["headers"])).status_code == 409


async def test_cancel_aborts_the_job_and_a_late_worker_writes_nothing(
    client, daily_market, make_user, db_engine, queue
):
    from saq.job import Status

    symbol, _ = daily_market
    user = await make_user()
    bt = await submit(client, user["headers"], symbol)
    resp = await client.delete(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "canceled" and body["error"] == "canceled" and body["finished_at"]
    saq_job = await queue.job(bt["job_key"])
    assert saq_job.status == Status.ABORTED
    assert (await client.delete(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])).status_code == 409
    # A worker that picks the job up anyway (it was already dequeued) must not resurrect it.
    result = await tasks.run_backtest_job({"engine": db_engine}, backtest_id=bt["id"])
    assert result["skipped"] and result["status"] == "canceled"
    assert await result_rows(db_engine, bt["id"]) == 0
    listed = (await client.get("/api/v1/backtests?status=canceled", headers=user["headers"])).json()
    assert [b["id"] for b in listed["items"]] == [bt["id"]]


async def test_a_retried_or_duplicated_job_writes_one_result(client, daily_market, make_user, db_engine):
    symbol, rows = daily_market
    user = await make_user()
    ctx = {"engine": db_engine}

    bt = await submit(client, user["headers"], symbol)
    first = await tasks.run_backtest_job(ctx, backtest_id=bt["id"])
    assert first["status"] == "completed"
    done = (await client.get(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])).json()
    again = await tasks.run_backtest_job(ctx, backtest_id=bt["id"])
    assert again == {"backtest_id": bt["id"], "status": "completed", "skipped": True}
    assert await result_rows(db_engine, bt["id"]) == 1
    after = (await client.get(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])).json()
    assert after == done  # nothing rewritten: same metrics, same finished_at
    assert_same_metrics(after["metrics"], direct_run(bars_of(rows), "1d", {"fast": 10, "slow": 30}).metrics)

    # Two attempts racing on one backtest: one stores, the other finds it done.
    bt2 = await submit(client, user["headers"], symbol)
    results = await asyncio.gather(*(tasks.run_backtest_job(ctx, backtest_id=bt2["id"]) for _ in range(2)))
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert sum(not r.get("skipped") for r in results) == 1  # exactly one attempt stored its result
    assert await result_rows(db_engine, bt2["id"]) == 1
    final = (await client.get(f"/api/v1/backtests/{bt2['id']}", headers=user["headers"])).json()
    assert final["status"] == "completed" and final["metrics"] == after["metrics"]


async def test_a_run_that_cannot_succeed_fails_with_the_reason(client, daily_market, make_user, db_engine):
    symbol, _ = daily_market
    user = await make_user()
    bt = await submit(client, user["headers"], symbol)
    # Simulate a parameter set that became invalid after submission (e.g. a strategy change on deploy).
    async with db_engine.begin() as conn:
        await conn.execute(
            Backtest.__table__.update()
            .where(Backtest.id == uuid.UUID(bt["id"]))
            .values(params={"fast": 50, "slow": 5})
        )
    result = await tasks.run_backtest_job({"engine": db_engine}, backtest_id=bt["id"])
    assert result["status"] == "failed"
    body = (await client.get(f"/api/v1/backtests/{bt['id']}", headers=user["headers"])).json()
    assert body["status"] == "failed" and "`fast` (50) must be less than `slow` (5)" in body["error"]
    assert body["metrics"] is None and body["finished_at"]


async def test_bars_cache_serves_repeat_ranges_and_sees_new_candles(
    client, admin_headers, make_user, db_engine
):
    from app.lib.cache import Cache
    from app.lib.state import make_kv

    user = await make_user()
    symbol = await make_market(client, admin_headers)
    rows = generate_candles(bars=300, seed=3, timeframe="1d")
    await upload(client, admin_headers, symbol, rows[:200], "1d")
    kv = make_kv(make_settings())
    ctx = {"engine": db_engine, "cache": Cache(kv)}
    try:
        misses = tasks.BARS_CACHE.misses
        first = await tasks.bars_for(ctx, symbol, "1d", None, None)
        second = await tasks.bars_for(ctx, symbol, "1d", None, None)
        assert second is first and len(first) == 200
        assert tasks.BARS_CACHE.misses == misses + 1
        await upload(client, admin_headers, symbol, rows, "1d")  # bumps the candles generation
        third = await tasks.bars_for(ctx, symbol, "1d", None, None)
        assert len(third) == 300
        bt = await submit(client, user["headers"], symbol)
        assert (await tasks.run_backtest_job(ctx, backtest_id=bt["id"]))["bars"] == 300
    finally:
        await kv.close()


# ------------------------------------------------------------------------------------------------ sweeps


async def test_sweep_runs_every_combination_and_ranks_them(worker_client, daily_market, make_user):
    symbol, rows = daily_market
    user = await make_user()
    grid = {"fast": [5, 10, 20], "slow": [30, 50, 80, 120]}
    resp = await worker_client.post(
        "/api/v1/backtests/sweeps",
        json={"strategy": "sma_cross", "grid": grid, "symbol": symbol, "timeframe": "1d", **COSTS},
        headers=user["headers"],
    )
    assert resp.status_code == 202, resp.text
    sweep = resp.json()
    assert sweep["total"] == 12 and sweep["rank_by"] == "sharpe" and sweep["skipped"] == []

    deadline = time.monotonic() + 45
    while True:
        body = (
            await worker_client.get(f"/api/v1/backtests/sweeps/{sweep['id']}", headers=user["headers"])
        ).json()
        if body["status"] == "completed":
            break
        assert time.monotonic() < deadline, body["counts"]
        await asyncio.sleep(0.05)
    assert body["counts"] == {"queued": 0, "running": 0, "completed": 12, "failed": 0, "canceled": 0}
    assert body["progress"] == 1.0 and body["symbol"] == symbol and len(body["ranked"]) == 12

    bars = bars_of(rows)
    expected = []
    for fast in grid["fast"]:
        for slow in grid["slow"]:
            m = direct_run(bars, "1d", {"fast": fast, "slow": slow}).metrics
            expected.append(((fast, slow), m["sharpe"]))
    expected.sort(key=lambda e: (e[1] is None, -(e[1] or 0.0)))
    got = [((r["params"]["fast"], r["params"]["slow"]), r["value"]) for r in body["ranked"]]
    assert [g[1] for g in got] == [e[1] for e in expected]
    assert {g[0] for g in got} == {e[0] for e in expected}
    assert [r["rank"] for r in body["ranked"]] == list(range(1, 13))
    # Annualised by the data's calendar like a single run (daily bars with weekends: 365).
    assert {r["metrics"]["periods_per_year"] for r in body["ranked"]} == {365}

    # Re-ranked by another metric on request; smaller-is-better metrics rank ascending.
    by_dd = (
        await worker_client.get(
            f"/api/v1/backtests/sweeps/{sweep['id']}?rank_by=annual_volatility&limit=5",
            headers=user["headers"],
        )
    ).json()
    vols = [r["value"] for r in by_dd["ranked"]]
    assert len(vols) == 5 and vols == sorted(vols)
    # The runs are ordinary backtests of the owner.
    runs = (
        await worker_client.get(
            f"/api/v1/backtests?sweep_id={sweep['id']}&limit=100", headers=user["headers"]
        )
    ).json()
    assert len(runs["items"]) == 12
    stranger = await make_user()
    assert (
        await worker_client.get(f"/api/v1/backtests/sweeps/{sweep['id']}", headers=stranger["headers"])
    ).status_code == 404


async def test_sweep_validates_every_combination_up_front(client, daily_market, make_user):
    symbol, _ = daily_market
    user = await make_user()
    base = {"strategy": "sma_cross", "symbol": symbol, "timeframe": "1d", **COSTS}

    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={**base, "grid": {"fast": [10, 40], "slow": [30]}},
        headers=user["headers"],
    )
    assert resp.status_code == 422
    err = resp.json()["errors"]
    assert err[0]["field"] == "grid.fast" and '{"fast":40,"slow":30}' in err[0]["message"]

    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={**base, "grid": {"fast": [1, 2], "slow": [3, 3000000]}},
        headers=user["headers"],
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "grid.slow"

    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={**base, "grid": {"fast": list(range(1, 101)), "slow": list(range(101, 161))}},
        headers=user["headers"],
    )
    assert resp.status_code == 422 and "6000 combinations" in resp.json()["detail"]

    for grid, field in [({"nope": [1]}, "grid.nope"), ({"fast": [5, 5]}, "grid.fast")]:
        resp = await client.post(
            "/api/v1/backtests/sweeps", json={**base, "grid": grid}, headers=user["headers"]
        )
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, resp.text
    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={**base, "grid": {"fast": [5]}, "params": {"fast": 3}},
        headers=user["headers"],
    )
    assert resp.status_code == 422

    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={
            **base,
            "grid": {"fast": [10, 40], "slow": [30]},
            "skip_invalid": True,
            "rank_by": "total_return",
        },
        headers=user["headers"],
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["total"] == 1 and body["skipped"][0]["params"] == {"fast": 40, "slow": 30}
    assert (await client.get("/api/v1/backtests", headers=user["headers"])).json()["items"][0]["params"][
        "fast"
    ] == 10


async def test_sweep_of_a_thousand_combinations_is_accepted_quickly(
    client, daily_market, make_user, db_engine, queue
):
    symbol, _ = daily_market
    user = await make_user()
    started = time.perf_counter()
    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={
            "strategy": "sma_cross",
            "grid": {"fast": list(range(1, 41)), "slow": list(range(50, 75))},
            "symbol": symbol,
            "timeframe": "1d",
            **COSTS,
        },
        headers=user["headers"],
    )
    elapsed = time.perf_counter() - started
    assert resp.status_code == 202, resp.text
    assert resp.json()["total"] == 1000
    assert elapsed < 5.0, f"accepting 1,000 runs took {elapsed:.2f}s"
    # The fan-out is one job; the 1,000 run jobs are its work, not the request's.
    saq_job = await queue.job(resp.json()["job_key"])
    assert saq_job is not None and saq_job.function == "backtest.fan_out"
    async with db_engine.connect() as conn:
        n = await conn.scalar(
            select(func.count())
            .select_from(Backtest)
            .where(Backtest.sweep_id == uuid.UUID(resp.json()["id"]))
        )
    assert n == 1000


async def test_fan_out_enqueues_each_run_once(client, daily_market, make_user, db_engine, queue):
    symbol, _ = daily_market
    user = await make_user()
    resp = await client.post(
        "/api/v1/backtests/sweeps",
        json={
            "strategy": "sma_cross",
            "grid": {"fast": [3, 4, 5], "slow": [20, 21]},
            "symbol": symbol,
            "timeframe": "1d",
            **COSTS,
        },
        headers=user["headers"],
    )
    sweep = resp.json()
    ctx = {"engine": db_engine, "queue": queue}
    assert (await tasks.fan_out_job(ctx, sweep_id=sweep["id"]))["enqueued"] == 6
    await tasks.fan_out_job(ctx, sweep_id=sweep["id"])  # a retried fan-out
    runs = (await client.get(f"/api/v1/backtests?sweep_id={sweep['id']}", headers=user["headers"])).json()[
        "items"
    ]
    for run in runs:
        saq_job = await queue.job(run["job_key"])
        assert saq_job is not None and saq_job.kwargs == {"backtest_id": run["id"]}
    info = await queue.info(jobs=True, limit=1000)
    keys = [j["key"] for j in info["jobs"] if j["key"].startswith("backtest:")]
    assert len(keys) == len(set(keys))
