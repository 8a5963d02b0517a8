"""Portfolio backtests through the API, on a real SAQ worker: every allocation form, the engine's
numbers, determinism and input hashing, positions, and 422s naming the field."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from app.domain.backtesting.engine import Bars, run_strategy
from app.domain.backtesting.models import Backtest
from app.domain.backtesting.portfolio_schemas import BacktestSubmission
from app.domain.backtesting.portfolio_service import load_portfolio_bars
from app.domain.backtesting.portfolio_tasks import simulate_spec
from app.domain.backtesting.schemas import MONEY_METRICS
from app.domain.backtesting.services import load_bars
from app.domain.markets.synthetic import generate_candles
from tests.integration import test_backtests
from tests.integration.helpers import make_market
from tests.integration.test_backtests import upload, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="session")
# An app with a real worker of its own (the module-scoped fixture of test_backtests.py).
worker_client = test_backtests.worker_client

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def market(client, admin_headers):
    """Three aligned symbols, one whose candles start later (misaligned), one without candles."""
    aligned = []
    for seed in (1, 2, 3):
        symbol = await make_market(client, admin_headers)
        await upload(client, admin_headers, symbol, generate_candles(bars=300, seed=seed, start=START), "1d")
        aligned.append(symbol)
    late = await make_market(client, admin_headers)
    later = datetime(2024, 2, 1, tzinfo=UTC)
    await upload(client, admin_headers, late, generate_candles(bars=300, seed=4, start=later), "1d")
    empty = await make_market(client, admin_headers)
    return {"aligned": aligned, "late": late, "empty": empty}


def body(symbols, allocation, **extra) -> dict:
    return {
        "symbols": symbols,
        "timeframe": "1d",
        "initial_cash": "100000",
        "commission": {"rate": "0.001", "minimum": "1"},
        "slippage_bps": "2",
        "allocation": allocation,
        **extra,
    }


async def run(client, headers, payload) -> dict:
    resp = await client.post("/api/v1/backtests", json=payload, headers=headers)
    assert resp.status_code == 202, resp.text
    created = resp.json()
    assert created["kind"] == "portfolio" and created["symbols"] == payload["symbols"]
    done, _ = await wait_for(client, headers, created["id"], limit_seconds=60)
    assert done["status"] == "completed", done
    return done


def weights(symbols, values):
    return dict(zip(symbols, values, strict=True))


async def test_target_weights_run_on_a_worker_and_match_the_engine(
    worker_client, market, make_user, db_engine
):
    user = await make_user("trader")
    syms = market["aligned"]
    payload = body(
        syms,
        {"type": "target_weights", "weights": weights(syms, [0.5, 0.3, 0.2]), "rebalance": "monthly"},
        benchmark=syms[0],
        exits={"stop_loss_pct": 8},
    )
    done = await run(worker_client, user["headers"], payload)
    metrics = done["metrics"]
    assert {"alpha", "beta", "tracking_error", "information_ratio"} <= set(metrics)
    assert metrics["periods_per_year"] == 365  # synthetic daily candles include weekends

    # The worker's numbers are the engine's on the same bars.
    async with db_engine.connect() as conn:
        row = await conn.scalar(select(Backtest.params).where(Backtest.id == uuid.UUID(done["id"])))
    bars, direct = await simulate_spec(db_engine, row)
    for key, value in direct.metrics.items():
        got = metrics[key]
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            assert got is None, key
        elif key in MONEY_METRICS:  # money is reported to 1e-8 (docs/DECISIONS.md, plain decimals)
            assert float(got) == pytest.approx(value, abs=1e-8), key
        else:
            assert got == value, key
    assert done["input_hash"] == direct.input_hash

    # Same request again: same hash, same metrics.
    again = await run(worker_client, user["headers"], payload)
    assert again["input_hash"] == done["input_hash"] and again["metrics"] == done["metrics"]

    trades = (
        await worker_client.get(
            f"/api/v1/backtests/{done['id']}/trades?sort=asc&limit=500", headers=user["headers"]
        )
    ).json()
    assert trades["total"] == len(direct.trades) and trades["items"][0]["symbol"] in syms
    equity = (
        await worker_client.get(f"/api/v1/backtests/{done['id']}/equity", headers=user["headers"])
    ).json()
    assert equity["bars"] == bars.n
    resp = await worker_client.get(
        f"/api/v1/backtests/{done['id']}/positions?max_points=50", headers=user["headers"]
    )
    assert resp.status_code == 200, resp.text
    positions = resp.json()
    assert positions["symbols"] == syms and 2 < positions["points"] <= 50
    assert [float(q) for q in positions["items"][0]["quantities"].values()] == [0.0] * 3
    assert any(q != "0" for q in positions["items"][-1]["quantities"].values()) or trades["total"]
    report = await worker_client.get(f"/api/v1/backtests/{done['id']}/report", headers=user["headers"])
    assert report.status_code == 200 and "<svg" in report.text


async def test_a_date_range_runs_on_the_bars_inside_it(worker_client, market, make_user):
    """`start` and `end` reach the worker as the stored request's ISO text (a run given either failed
    there with an SQL type error)."""
    user = await make_user("trader")
    syms = market["aligned"][:2]
    allocation = {"type": "target_weights", "weights": weights(syms, [0.5, 0.5]), "rebalance": "monthly"}
    payload = body(syms, allocation, start="2024-03-01T00:00:00Z", end="2024-05-31T00:00:00+00:00")
    done = await run(worker_client, user["headers"], payload)
    equity = (
        await worker_client.get(f"/api/v1/backtests/{done['id']}/equity", headers=user["headers"])
    ).json()
    assert equity["bars"] == 92  # daily candles 2024-03-01 .. 2024-05-31, both ends included
    assert equity["items"][0]["ts"].startswith("2024-03-01")
    assert equity["items"][-1]["ts"].startswith("2024-05-31")
    later = body(syms, allocation, start="2024-10-01T00:00:00Z")
    only_start = await run(worker_client, user["headers"], later)
    assert only_start["metrics"]["total_return"] != done["metrics"]["total_return"]


async def test_decimals_given_in_exponent_form_are_echoed_plain(client, market, make_user):
    user = await make_user("trader")
    syms = market["aligned"][:2]
    allocation = {"type": "target_weights", "weights": weights(syms, [0.5, 0.5]), "rebalance": "monthly"}
    payload = body(syms, allocation)
    payload["initial_cash"] = "1E+5"
    payload["commission"] = {"rate": "1E-4", "fixed": "1e0", "minimum": "0.5"}
    resp = await client.post("/api/v1/backtests", json=payload, headers=user["headers"])
    assert resp.status_code == 202, resp.text
    # Field by field: a search of the whole text for "e0" also finds it in the random ids.
    run = resp.json()
    assert (run["initial_cash"], run["commission"]) == ("100000", "0.0001"), resp.text
    assert run["params"]["initial_cash"] == "100000"
    assert run["params"]["commission"] == {"rate": "0.0001", "fixed": "1", "minimum": "0.5"}


async def test_schedule_signals_and_rules_forms_complete(worker_client, market, make_user):
    user = await make_user("trader")
    syms = market["aligned"]
    forms = [
        {
            "type": "target_weights",
            "schedule": [
                {"ts": "2024-01-01T00:00:00Z", "weights": weights(syms, [0.3, 0.3, 0.3])},
                {"ts": "2024-04-01T00:00:00Z", "weights": {syms[0]: 0.9}},
            ],
        },
        {
            "type": "signals",
            "strategy": "sma_cross",
            "params": {"fast": 5, "slow": 20},
            "sizing": "equal_weight",
        },
        {"type": "signals", "strategy": "rsi_reversion", "sizing": "percent_equity", "percent": 20},
        {
            "type": "rules",
            "entry": "crosses_above(sma(close, 5), sma(close, 20)) and rsi(close, 14) < 70",
            "exit": "crosses_below(sma(close, 5), sma(close, 20))",
            "sizing": "equal_weight",
        },
    ]
    for allocation in forms:
        done = await run(
            worker_client, user["headers"], body(syms, allocation, exits={"trailing_stop_pct": 10})
        )
        assert done["strategy"] == allocation["type"] and done["metrics"]["final_equity"]


async def test_positions_of_a_single_backtest_is_422(worker_client, make_user):
    user = await make_user("trader")
    resp = await worker_client.get(f"/api/v1/backtests/{uuid.uuid4()}/positions", headers=user["headers"])
    assert resp.status_code == 404


async def test_bad_portfolios_are_422_naming_the_field_with_no_row(client, market, make_user, db_engine):
    user = await make_user("trader")
    syms = market["aligned"]
    fixed = {"type": "target_weights", "weights": weights(syms, [0.3, 0.3, 0.3]), "rebalance": "weekly"}
    first = {"type": "target_weights", "weights": {syms[0]: 0.5}, "rebalance": "weekly"}
    cases = [
        (body([syms[0], "NOPE-XYZ"], first), "symbols[1]", "Unknown instrument"),
        (body(syms, fixed, benchmark="NOPE-XYZ"), "benchmark", "Unknown instrument"),
        (body([*syms, market["late"]], first), "symbols[3]", "do not line up"),
        (body([*syms, market["empty"]], first), "symbols[3]", "fewer than two"),
        (body(syms, fixed, start="2030-01-01T00:00:00Z"), "symbols[0]", "fewer than two"),
        (
            body(syms, {**fixed, "weights": weights(syms, [0.5, 0.4, 0.3])}),
            "allocation.weights",
            "above the leverage",
        ),
        (
            body(syms, {**fixed, "weights": weights(syms, [-0.2, 0.4, 0.3])}),
            f"allocation.weights.{syms[0]}",
            "allow_short",
        ),
        (
            body(syms, {**fixed, "weights": {"OTHER": 0.2}}),
            "allocation.weights.OTHER",
            "not in `symbols`",
        ),
        (
            body(syms, {**fixed, "weights": {syms[0]: 0.2, syms[1]: 11}}),
            f"allocation.weights.{syms[1]}",
            "outside [-10, 10]",
        ),
        (
            body(syms, {"type": "rules", "entry": "close > sma(close, 10) and foo", "exit": "close < 1"}),
            "allocation.entry",
            "at position 27",
        ),
        (body(syms, {"type": "signals", "strategy": "nope"}), "allocation.strategy", "unknown strategy"),
        (
            body(syms, {"type": "signals", "strategy": "sma_cross", "params": {"fast": 50, "slow": 10}}),
            "allocation.params.fast",
            "less than",
        ),
    ]
    async with db_engine.connect() as conn:
        before = await conn.scalar(select(func.count()).select_from(Backtest))
    for payload, field, words in cases:
        resp = await client.post("/api/v1/backtests", json=payload, headers=user["headers"])
        assert resp.status_code == 422, (field, resp.text)
        problem = resp.json()
        assert problem["errors"][0]["field"] == field, (field, problem)
        assert words in problem["detail"], (words, problem)
        if field == "allocation.entry":
            assert problem["position"] == 27
    # Shorting and leverage make the refused weights acceptable (accepted: 202 with the session queue).
    ok = body(syms, {**fixed, "weights": weights(syms, [-0.2, 0.6, 0.6])}, allow_short=True, leverage=1.5)
    assert (await client.post("/api/v1/backtests", json=ok, headers=user["headers"])).status_code == 202
    async with db_engine.connect() as conn:
        after = await conn.scalar(select(func.count()).select_from(Backtest))
    assert after == before + 1


async def test_malformed_portfolios_are_400_naming_the_field(client, market, make_user):
    user = await make_user("trader")
    syms = market["aligned"]
    fixed = {"type": "target_weights", "weights": {syms[0]: 1.0}, "rebalance": "monthly"}
    single = {"strategy": "sma_cross", "symbol": syms[0], "timeframe": "1d", "initial_cash": "1000"}
    for payload, field in [
        ({**body(syms, fixed), "colour": "red"}, "colour"),
        (body(syms, {"type": "momentum"}), "allocation.type"),
        (body(syms, {"type": "target_weights", "weights": {syms[0]: 1.0}}), "allocation.rebalance"),
        (
            body(syms, {"type": "signals", "strategy": "sma_cross", "sizing": "percent_equity"}),
            "allocation.percent",
        ),
        (body([syms[0], syms[0]], fixed), "symbols"),
        (body(syms, fixed, exits={"stop_loss_pct": 150}), "exits.stop_loss_pct"),
        # A field of the one-instrument form in a portfolio body, and the other way round.
        (body(syms, fixed, strategy="sma_cross"), "strategy"),
        (body(syms, fixed, params={"fast": 5}), "params"),
        ({k: v for k, v in body(syms, fixed).items() if k != "symbols"}, "symbols"),
        ({**single, "allow_short": True}, "allow_short"),
        ({k: v for k, v in single.items() if k != "strategy"}, "strategy"),
        ({**single, "commission": {"rate": "0.001"}}, "commission"),
        ({**single, "initial_cash": "0"}, "initial_cash"),
    ]:
        resp = await client.post("/api/v1/backtests", json=payload, headers=user["headers"])
        assert resp.status_code == 400, (field, resp.text)
        assert resp.json()["errors"][0]["field"] == field, resp.text


async def test_the_submission_body_is_documented_field_by_field(client):
    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/api/v1/backtests"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/BacktestSubmission"
    schemas = document["components"]["schemas"]
    submission = schemas["BacktestSubmission"]
    assert submission["additionalProperties"] is False
    assert set(submission["properties"]) == set(BacktestSubmission.__struct_fields__)
    assert sorted(submission["required"]) == ["initial_cash", "timeframe"]
    assert submission["oneOf"] == [{"required": ["symbol"]}, {"required": ["symbols"]}]
    allocation = json.dumps(submission["properties"]["allocation"])
    for form in ("TargetWeights", "Signals", "Rules"):
        assert f"#/components/schemas/{form}" in allocation
        assert schemas[form]["properties"]["type"]["const"] in ("target_weights", "signals", "rules")
    assert set(schemas["TargetWeights"]["properties"]) == {"type", "weights", "rebalance", "schedule"}


async def test_aligned_loading_checks_every_timestamp(market, db_engine):
    syms = market["aligned"]
    async with db_engine.connect() as conn:
        bars = await load_portfolio_bars(conn, syms, "1d", None, None)
        assert bars.symbols == tuple(syms) and bars.n == 300
        with pytest.raises(ValueError, match="do not line up"):
            await load_portfolio_bars(conn, [*syms, market["late"]], "1d", None, None)


# ---------------------------------------------------------------------------------------------- walk-forward


async def wait_walkforward(client, headers, wf_id: str, limit_seconds: float = 90.0) -> dict:
    deadline = asyncio.get_running_loop().time() + limit_seconds
    while True:
        resp = await client.get(f"/api/v1/backtests/walkforward/{wf_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        if out["status"] != "running":
            return out
        assert asyncio.get_running_loop().time() < deadline, out
        await asyncio.sleep(0.05)


async def test_walkforward_picks_each_windows_best_and_stitches_out_of_sample(
    worker_client, market, make_user, db_engine
):
    user = await make_user("trader")
    symbol = market["aligned"][0]
    grid = {"fast": [5, 10], "slow": [20, 40]}
    payload = {
        "strategy": "sma_cross",
        "symbol": symbol,
        "timeframe": "1d",
        "initial_cash": "10000",
        "commission": "0.001",
        "grid": grid,
        "train_bars": 100,
        "test_bars": 50,
        "objective": "total_return",
    }
    resp = await worker_client.post("/api/v1/backtests/walkforward", json=payload, headers=user["headers"])
    assert resp.status_code == 202, resp.text
    assert resp.json()["windows_total"] == 4  # (300 - 150) / 50 + 1
    out = await wait_walkforward(worker_client, user["headers"], resp.json()["id"])
    assert out["status"] == "completed" and out["windows_done"] == 4, out

    async with db_engine.connect() as conn:
        bars = await load_bars(conn, symbol, "1d", None, None)
    combos = [{"fast": f, "slow": s, "allow_short": False} for f in (5, 10) for s in (20, 40)]

    def direct(a: int, b: int, params: dict, warmup: int = 0):
        sub = Bars(**{k: getattr(bars, k)[a:b] for k in ("ts", "open", "high", "low", "close", "volume")})
        return run_strategy(
            sub, "sma_cross", params, initial_cash=10_000.0, commission=0.001, periods_per_year=252,
            warmup=warmup,
        )

    level, stitched = 10_000.0, []
    for w in out["windows"]:
        a = w["index"] * 50
        scores = [direct(a, a + 100, c).metrics["total_return"] for c in combos]
        best = combos[int(np.argmax(scores))]
        assert w["params"] == best, (w["index"], scores)
        # out of sample: the 50 test bars traded, the signals warmed up over the 100 training bars
        test = direct(a, a + 150, best, warmup=100)
        assert len(test.equity) == 50
        assert w["out_of_sample"]["total_return"] == test.metrics["total_return"]
        stitched.extend((test.equity * (level / test.equity[0])).tolist())
        level = stitched[-1]
    assert float(out["equity"][0]["equity"]) == 10_000.0
    assert float(out["equity"][-1]["equity"]) == pytest.approx(level, rel=1e-12)
    assert out["metrics"]["total_return"] == pytest.approx(level / 10_000.0 - 1, rel=1e-9)
    # Annualised by the data's calendar, like the runs (daily bars with weekends).
    assert out["metrics"]["periods_per_year"] == 365
    assert len(out["equity"]) == len(stitched) == 200


async def test_portfolio_walkforward_and_bad_requests(worker_client, market, make_user):
    user = await make_user("trader")
    syms = market["aligned"]
    payload = {
        "allocation": {"type": "signals", "strategy": "sma_cross", "sizing": "equal_weight"},
        "symbols": syms,
        "timeframe": "1d",
        "initial_cash": "10000",
        "grid": {"fast": [5, 10], "slow": [30]},
        "train_bars": 120,
        "test_bars": 60,
    }
    resp = await worker_client.post("/api/v1/backtests/walkforward", json=payload, headers=user["headers"])
    assert resp.status_code == 202, resp.text
    out = await wait_walkforward(worker_client, user["headers"], resp.json()["id"])
    assert out["status"] == "completed" and out["windows_done"] == 3 and out["metrics"]["sharpe"] is not None
    other = await make_user("trader")
    resp = await worker_client.get(f"/api/v1/backtests/walkforward/{out['id']}", headers=other["headers"])
    assert resp.status_code == 404
    for change, field in [
        ({"train_bars": 280}, "train_bars"),
        ({"step_bars": 10}, "step_bars"),
        ({"grid": {"fast": [50], "slow": [30]}}, "grid.fast"),
        ({"allocation": {"type": "signals", "strategy": "nope"}}, "allocation.strategy"),
        ({"symbols": [*syms, market["late"]]}, "symbols[3]"),
    ]:
        resp = await worker_client.post(
            "/api/v1/backtests/walkforward", json={**payload, **change}, headers=user["headers"]
        )
        assert resp.status_code == 422, (change, resp.text)
        assert resp.json()["errors"][0]["field"] == field, resp.text
