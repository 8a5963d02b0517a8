"""Performance analytics: the stateless endpoint against hand-computed numbers, and an account's history."""

from __future__ import annotations

import math
import statistics
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert

from app.domain.accounts.models import EquitySnapshot
from tests.integration.helpers import make_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

R = [0.01, -0.02, 0.03, 0.0, 0.015]
URL = "/api/v1/analytics/performance"


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), written out by hand."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def by_hand(r: list[float], p: int = 252, rf: float = 0.0) -> dict[str, float]:
    n = len(r)
    growth = math.prod(1 + x for x in r)
    rf_p = (1 + rf) ** (1 / p) - 1
    a = [x - rf_p for x in r]
    wealth, peak, worst_dd = 1.0, 1.0, 0.0
    for x in r:
        wealth *= 1 + x
        peak = max(peak, wealth)
        worst_dd = min(worst_dd, wealth / peak - 1)
    cagr = growth ** (p / n) - 1
    s = sorted(r)
    cut95, cut99 = percentile(s, 0.05), percentile(s, 0.01)
    mean = sum(r) / n
    m2 = sum((x - mean) ** 2 for x in r) / n
    m3 = sum((x - mean) ** 3 for x in r) / n
    m4 = sum((x - mean) ** 4 for x in r) / n
    return {
        "periods": n,
        "total_return": growth - 1,
        "cagr": cagr,
        "annual_volatility": statistics.stdev(r) * math.sqrt(p),
        "sharpe": statistics.mean(a) / statistics.stdev(a) * math.sqrt(p),
        "sortino": statistics.mean(a) * math.sqrt(p) / math.sqrt(sum(min(x, 0) ** 2 for x in a) / n),
        "max_drawdown": worst_dd,
        "calmar": cagr / abs(worst_dd),
        "var_95": -cut95,
        "cvar_95": -statistics.mean([x for x in r if x <= cut95]),
        "var_99": -cut99,
        "cvar_99": -statistics.mean([x for x in r if x <= cut99]),
        "skew": m3 / m2**1.5,
        "kurtosis": m4 / m2**2 - 3,
        "best_period": max(r),
        "worst_period": min(r),
    }


def assert_close(got: dict, expected: dict, rel: float = 1e-9, abs_: float = 1e-15) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=rel, abs=abs_), key


async def test_returns_match_hand_computed_metrics(client, make_user):
    user = await make_user()
    resp = await client.post(URL, json={"returns": R}, headers=user["headers"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_close(body, by_hand(R))
    # The first loss is a drawdown from the starting wealth, recovered one period later.
    assert body["max_drawdown"] == pytest.approx(-0.02) and body["max_drawdown_duration"] == 1
    assert body["var_95"] == pytest.approx(0.016) and body["cvar_95"] == pytest.approx(0.02)

    resp = await client.post(
        URL, json={"returns": R, "periods_per_year": 12, "risk_free_rate": 0.05}, headers=user["headers"]
    )
    assert resp.status_code == 200
    assert_close(resp.json(), by_hand(R, 12, 0.05))


async def test_equity_gives_the_same_metrics_as_its_returns(client, make_user):
    user = await make_user()
    equity = [100.0]
    for x in R:
        equity.append(equity[-1] * (1 + x))
    resp = await client.post(URL, json={"equity": equity}, headers=user["headers"])
    assert resp.status_code == 200, resp.text
    assert_close(resp.json(), by_hand(R), rel=1e-9)


async def test_edge_cases_are_nulls_not_errors(client, make_user):
    user = await make_user()
    one = (await client.post(URL, json={"equity": [100.0]}, headers=user["headers"])).json()
    assert one["periods"] == 0 and all(v is None for k, v in one.items() if k != "periods")

    single = (await client.post(URL, json={"returns": [0.01]}, headers=user["headers"])).json()
    assert single["total_return"] == pytest.approx(0.01) and single["sharpe"] is None
    assert single["annual_volatility"] is None and single["var_95"] is None

    flat = (await client.post(URL, json={"returns": [0.001] * 20}, headers=user["headers"])).json()
    assert flat["sharpe"] is None and flat["annual_volatility"] == 0.0 and flat["sortino"] is None
    assert flat["max_drawdown"] == 0.0 and flat["calmar"] is None

    constant_equity = (await client.post(URL, json={"equity": [50.0] * 10}, headers=user["headers"])).json()
    assert constant_equity["total_return"] == 0.0 and constant_equity["sharpe"] is None

    empty = (await client.post(URL, json={"returns": []}, headers=user["headers"])).json()
    assert empty["periods"] == 0 and empty["total_return"] is None

    # Overflowing inputs produce nulls; the body is valid JSON without NaN or Infinity.
    resp = await client.post(URL, json={"returns": [1e300, 1e300, -0.5, 1e308]}, headers=user["headers"])
    assert resp.status_code == 200
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    body = resp.json()
    assert body["total_return"] is None and body["best_period"] == 1e308


async def test_invalid_input_is_rejected(client, make_user):
    user = await make_user()
    for payload, field in [
        ({"equity": [1.0, 2.0], "returns": [0.1]}, "returns"),
        ({}, "equity"),
        ({"periods_per_year": 12}, "equity"),
        ({"equity": [100.0, 0.0, 50.0]}, "equity"),
        ({"equity": [100.0, -1.0]}, "equity"),
        ({"returns": [0.1, -1.5]}, "returns"),
    ]:
        resp = await client.post(URL, json=payload, headers=user["headers"])
        assert resp.status_code == 422, (payload, resp.text)
        assert field in [e["field"] for e in resp.json()["errors"]], (payload, resp.json())
    for payload in (
        {"returns": [0.1], "periods_per_year": 0},
        {"returns": ["x"]},
        {"returns": [0.1], "bogus": 1},
    ):
        resp = await client.post(URL, json=payload, headers=user["headers"])
        assert resp.status_code in (400, 422), (payload, resp.text)
    resp = await client.post(
        URL,
        content=b'{"returns": [1e400, 0.1]}',
        headers={**user["headers"], "Content-Type": "application/json"},
    )
    assert resp.status_code in (400, 422) and "Infinity" not in resp.text
    assert (await client.post(URL, json={"returns": R})).status_code == 401


async def test_input_length_is_capped_but_a_million_points_work(client, make_user):
    user = await make_user()
    big = b'{"returns": [' + b",".join([b"0.0001", b"-0.0001"] * 500_000) + b"]}"
    resp = await client.post(
        URL, content=big, headers={**user["headers"], "Content-Type": "application/json"}
    )
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["periods"] == 1_000_000
    too_big = b'{"returns": [' + b",".join([b"0"] * 1_000_001) + b"]}"
    resp = await client.post(
        URL, content=too_big, headers={**user["headers"], "Content-Type": "application/json"}
    )
    assert resp.status_code in (400, 413, 422), resp.text[:300]


async def _snapshots(db_engine, account_id: str, points: list[tuple[datetime, str]]) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(
            insert(EquitySnapshot),
            [
                {"account_id": uuid.UUID(account_id), "ts": ts, "equity": Decimal(v), "cash": Decimal(v)}
                for ts, v in points
            ],
        )


async def test_account_performance_uses_daily_equity_and_is_tenant_isolated(client, make_user, db_engine):
    owner = await make_user()
    account = await make_account(client, owner["headers"], cash="1000")
    today = datetime.now(UTC).date()
    daily = {5: "1000", 4: "1010", 3: "990", 2: "1020", 1: "1015"}
    points = []
    for days_ago, close in daily.items():
        day = datetime.combine(today - timedelta(days=days_ago), time(0), tzinfo=UTC)
        points.append((day + timedelta(hours=9), "999.5"))  # superseded by the day's last snapshot
        points.append((day + timedelta(hours=17), close))
    await _snapshots(db_engine, account, points)

    resp = await client.get(f"/api/v1/accounts/{account}/performance", headers=owner["headers"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # The first snapshot opens the series, then each day's last; today closes at the equity now (the
    # account holds only cash: its 1000).
    series = [999.5] + [float(daily[k]) for k in sorted(daily, reverse=True)] + [1000.0]
    returns = [b / a - 1 for a, b in zip(series, series[1:], strict=False)]
    assert body["points"] == 7 and body["frequency"] == "1d" and body["account_id"] == account
    # The series ends where it started: compounding by hand leaves ~1e-14 of rounding in the growth.
    assert_close(body, by_hand(returns), rel=1e-9, abs_=1e-12)

    raw = (
        await client.get(
            f"/api/v1/accounts/{account}/performance?frequency=raw&periods_per_year=365",
            headers=owner["headers"],
        )
    ).json()
    assert raw["points"] == 11 and raw["periods"] == 10 and raw["periods_per_year"] == 365

    stranger = await make_user()
    assert (
        await client.get(f"/api/v1/accounts/{account}/performance", headers=stranger["headers"])
    ).status_code == 404
    assert (
        await client.get(f"/api/v1/accounts/{uuid.uuid4()}/performance", headers=owner["headers"])
    ).status_code == 404
    risk = await make_user("risk_manager")
    assert (
        await client.get(f"/api/v1/accounts/{account}/performance", headers=risk["headers"])
    ).status_code == 200


async def test_new_account_performance_is_one_flat_period(client, make_user):
    owner = await make_user()
    account = await make_account(client, owner["headers"])
    body = (await client.get(f"/api/v1/accounts/{account}/performance", headers=owner["headers"])).json()
    # opening equity, then today's close valued now; one return is too few for volatility or Sharpe
    assert (
        body["points"] == 2
        and body["periods"] == 1
        and body["sharpe"] is None
        and body["total_return"] == 0.0
    )
    # with an `end`, only stored snapshots count: the creation snapshot alone is no period
    body = (
        await client.get(
            f"/api/v1/accounts/{account}/performance?end=2100-01-01T00:00:00Z", headers=owner["headers"]
        )
    ).json()
    assert body["points"] == 1 and body["periods"] == 0 and body["total_return"] is None
