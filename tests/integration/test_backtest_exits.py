"""One-instrument backtests with exits inside bars and calendar annualisation, through the API on a
real worker: the body, the stored run settings, the engine's numbers, and 400s naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from app.domain.backtesting.engine import run_strategy
from app.domain.backtesting.exits import Exits
from app.domain.backtesting.models import Backtest
from app.domain.markets.synthetic import generate_candles
from tests.integration import test_backtests
from tests.integration.helpers import make_market
from tests.integration.test_backtests import bars_of, upload, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")
worker_client = test_backtests.worker_client

COSTS = test_backtests.COSTS
EXITS = {"stop_loss_pct": 3, "trailing_stop_pct": 6}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def markets(client, admin_headers):
    """Daily bars on every calendar day (a 7-day market) and hourly bars around the clock."""
    daily = await make_market(client, admin_headers)
    daily_rows = generate_candles(bars=400, seed=21, timeframe="1d", start=datetime(2024, 1, 1, tzinfo=UTC))
    await upload(client, admin_headers, daily, daily_rows, "1d")
    hourly = await make_market(client, admin_headers)
    hourly_rows = generate_candles(bars=600, seed=22, timeframe="1h", start=datetime(2024, 1, 1, tzinfo=UTC))
    await upload(client, admin_headers, hourly, hourly_rows, "1h")
    return {"daily": (daily, daily_rows), "hourly": (hourly, hourly_rows)}


async def submit(client, headers, symbol: str, timeframe: str = "1d", **extra) -> dict:
    """test_backtests.submit with this module's parameters, waited for until completed."""
    created = await test_backtests.submit(
        client, headers, symbol, timeframe, params={"fast": 5, "slow": 20}, **extra
    )
    done, _ = await wait_for(client, headers, created["id"], limit_seconds=60)
    assert done["status"] == "completed", done
    return done


async def all_trades(client, headers, backtest_id: str) -> list[dict]:
    resp = await client.get(f"/api/v1/backtests/{backtest_id}/trades?limit=500&sort=asc", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["next_cursor"] is None
    return resp.json()["items"]


def direct(rows, **kw):
    return run_strategy(
        bars_of(rows),
        "sma_cross",
        {"fast": 5, "slow": 20},
        initial_cash=100_000.0,
        commission=0.0005,
        slippage_bps=2.0,
        lot_size=1.0,
        **kw,
    )


async def test_exits_run_on_a_worker_and_match_the_engine(worker_client, markets, make_user, db_engine):
    user = await make_user()
    symbol, rows = markets["daily"]
    done = await submit(worker_client, user["headers"], symbol, exits=EXITS)
    # The run settings are fields of their own; `params` stays the strategy's.
    assert done["exits"] == {"stop_loss_pct": 3.0, "take_profit_pct": None, "trailing_stop_pct": 6.0}
    assert done["params"] == {"fast": 5, "slow": 20, "allow_short": False}
    assert done["periods_per_year"] is None  # not given: the data's calendar
    assert done["metrics"]["periods_per_year"] == 365  # daily bars with weekends

    expected = await asyncio.to_thread(direct, rows, exits=Exits(stop_loss_pct=3, trailing_stop_pct=6))
    assert done["input_hash"] == expected.input_hash
    assert done["metrics"]["sharpe"] == expected.metrics["sharpe"]
    trades = await all_trades(worker_client, user["headers"], done["id"])
    assert [(t["entry_bar"], t["exit_bar"], t["exit_reason"]) for t in trades] == [
        (t.entry_bar, t.exit_bar, t.exit_reason) for t in expected.trades
    ]
    reasons = {t["exit_reason"] for t in trades}
    assert {"stop_loss", "trailing_stop"} & reasons and "signal" in reasons
    # The report's setup lists the exits and the annualisation.
    report = await worker_client.get(f"/api/v1/backtests/{done['id']}/report", headers=user["headers"])
    assert report.status_code == 200
    for label, value in (("stop loss (%)", "3"), ("trailing stop (%)", "6"), ("periods per year", "365")):
        assert f"<th>{label}</th><td>{value}</td>" in report.text, label

    # Without exits: a different input hash and only signal exits; the same request twice: same hash.
    plain = await submit(worker_client, user["headers"], symbol)
    assert plain["exits"] is None and plain["input_hash"] != done["input_hash"]
    assert plain["input_hash"] == (await asyncio.to_thread(direct, rows)).input_hash
    again = await submit(worker_client, user["headers"], symbol, exits=EXITS)
    assert again["input_hash"] == done["input_hash"] and again["metrics"] == done["metrics"]
    assert {t["exit_reason"] for t in await all_trades(worker_client, user["headers"], plain["id"])} <= {
        "signal",
        None,
    }


async def test_annualisation_follows_the_calendar_unless_given(worker_client, markets, make_user):
    user = await make_user()
    hourly, hourly_rows = markets["hourly"]
    done = await submit(worker_client, user["headers"], hourly, "1h")
    assert done["metrics"]["periods_per_year"] == round(365.25 * 24)
    assert done["metrics"]["sharpe"] == (await asyncio.to_thread(direct, hourly_rows)).metrics["sharpe"]

    daily, daily_rows = markets["daily"]
    given = await submit(worker_client, user["headers"], daily, periods_per_year=252)
    assert given["periods_per_year"] == 252 and given["metrics"]["periods_per_year"] == 252
    expected = await asyncio.to_thread(direct, daily_rows, periods_per_year=252)
    assert given["input_hash"] == expected.input_hash
    assert given["metrics"]["sharpe"] == expected.metrics["sharpe"]


async def test_bad_exits_and_periods_are_400_naming_the_field(client, markets, make_user, db_engine):
    user = await make_user()
    symbol, _ = markets["daily"]
    base = {"strategy": "sma_cross", "symbol": symbol, "timeframe": "1d", **COSTS}
    async with db_engine.connect() as conn:
        before = await conn.scalar(select(func.count()).select_from(Backtest))
    for extra, field in [
        ({"exits": {"stop_loss_pct": -5}}, "exits.stop_loss_pct"),
        ({"exits": {"take_profit_pct": 0}}, "exits.take_profit_pct"),
        ({"exits": {"trailing_stop_pct": 100}}, "exits.trailing_stop_pct"),
        ({"exits": {"stop_loss_pct": "five"}}, "exits.stop_loss_pct"),
        # An unknown key is named in the message of the object that holds it.
        ({"exits": {"stop_pct": 5}}, "exits.stop_pct"),
        ({"exits": [5]}, "exits"),
        ({"periods_per_year": 0}, "periods_per_year"),
        ({"periods_per_year": 2.5}, "periods_per_year"),
    ]:
        resp = await client.post("/api/v1/backtests", json={**base, **extra}, headers=user["headers"])
        assert resp.status_code == 400, (extra, resp.text)
        problem = resp.json()
        assert problem["errors"][0]["field"] == field, (extra, problem)
        if "stop_pct" in extra.get("exits", {}):
            assert "stop_pct" in problem["errors"][0]["message"], problem
    async with db_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Backtest)) == before


async def test_cli_runs_with_exits_and_periods_per_year(markets, settings):
    symbol, rows = markets["daily"]
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    env = {**os.environ, "DATABASE_URL": settings.database_url, "LOG_LEVEL": "WARNING"}
    args = [tradedesk, "backtest", "run", "--strategy", "sma_cross", "--symbol", symbol, "--json"]
    args += ["--params", "fast=5,slow=20", "--initial-cash", "100000", "--commission", "0.0005"]
    args += ["--slippage-bps", "2", "--stop-loss-pct", "3", "--trailing-stop-pct", "6"]
    done = await asyncio.to_thread(subprocess.run, args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = direct(rows, exits=Exits(stop_loss_pct=3, trailing_stop_pct=6))
    assert out["input_hash"] == expected.input_hash
    assert out["metrics"]["sharpe"] == expected.metrics["sharpe"]
    assert out["metrics"]["periods_per_year"] == 365
    given = await asyncio.to_thread(
        subprocess.run, [*args, "--periods-per-year", "252"], env=env, capture_output=True, text=True
    )
    assert json.loads(given.stdout)["metrics"]["periods_per_year"] == 252
    bad = await asyncio.to_thread(
        subprocess.run, [*args, "--take-profit-pct", "-1"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "take_profit_pct" in bad.stderr
