"""POST /api/v1/risk/stress on real PostgreSQL: hand-computed portfolios, historical windows, access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.helpers import make_account, make_market, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "/api/v1/risk/stress"


async def _desk(client, admin_headers, make_user):
    """A trader's account: cash 98,800, long 10 X at 100 and 4 Y at 50 (equity 100,000)."""
    trader = await make_user("trader")
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    y = await make_market(client, admin_headers, price="50", taker="0", maker="0")
    acct = await make_account(client, trader["headers"], cash="100000")
    await place(
        client,
        trader["headers"],
        acct,
        symbol=x,
        side="buy",
        type="market",
        quantity="10",
        time_in_force="gtc",
    )
    await place(
        client,
        trader["headers"],
        acct,
        symbol=y,
        side="buy",
        type="market",
        quantity="4",
        time_in_force="gtc",
    )
    return trader, x, y, acct


async def _stress(client, headers, body, expect=200):
    resp = await client.post(URL, json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


async def test_shock_scenarios_against_hand_computed_figures(client, admin_headers, make_user):
    trader, x, y, acct = await _desk(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        json={"limit_type": "max_gross_exposure", "value": "1100"},
        headers=rm["headers"],
    )
    assert resp.status_code == 201, resp.text
    limit_id = resp.json()["id"]
    body = {
        "scenarios": [
            {"name": "crash", "shocks": {x: -0.10, "*": -0.05}},
            {"name": "rally", "shocks": {x: 0.10}},
        ]
    }
    out = await _stress(client, trader["headers"], body)
    crash, rally = out["results"]
    assert crash["scenario"] == "crash" and crash["kind"] == "shocks"
    assert crash["shocks"] == {x: -0.10, y: -0.05}
    [a] = crash["accounts"]  # without `accounts`: the trader's own, and only those
    assert a["account_id"] == acct
    # X: 10 * 100 * -10% = -100; Y: 4 * 50 * -5% = -10
    assert a["equity"] == "100000" or a["equity"].startswith("100000.")
    assert a["pnl"] == "-110.00000000" and a["equity_after"].startswith("99890")
    assert crash["firm_pnl"] == "-110.00000000" and crash["groups"] == [] and crash["missing_history"] == []
    assert a["breaches"] == []  # gross after: 900 + 190 = 1090 <= 1100
    [b] = rally["accounts"]
    assert b["pnl"] == "100.00000000"
    assert b["breaches"] == [
        {
            "limit_id": limit_id,
            "limit_type": "max_gross_exposure",
            "symbol": None,
            "limit_value": "1100",
            "would_be": "1300.00000000",
        }  # 1100 + 200
    ]
    # a risk manager may name the account; the same figures
    named = await _stress(client, rm["headers"], {**body, "accounts": [acct]})
    assert named["results"][0]["accounts"] == crash["accounts"]


async def test_historical_window_uses_stored_daily_closes(client, admin_headers, make_user):
    trader, x, y, acct = await _desk(client, admin_headers, make_user)
    day = datetime(2026, 3, 2, tzinfo=UTC)
    candles = [
        {
            "ts": (day + timedelta(days=i)).isoformat(),
            "open": c,
            "high": c,
            "low": c,
            "close": c,
            "volume": "1",
        }
        for i, c in enumerate(["80", "90", "100"])
    ]
    resp = await client.post(
        f"/api/v1/instruments/{x}/candles",
        json={"timeframe": "1d", "candles": candles},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    window = {"start": (day + timedelta(hours=12)).isoformat(), "end": (day + timedelta(days=2)).isoformat()}
    out = await _stress(client, trader["headers"], {"scenarios": [{"name": "march", "historical": window}]})
    [res] = out["results"]
    # X: the close at or before start is 80, at or before end 100: +25%; Y has no candles: not moved
    assert res["kind"] == "historical" and res["shocks"] == {x: 0.25, y: 0.0}
    assert res["missing_history"] == [y]
    assert res["accounts"][0]["pnl"] == "250.00000000"


async def test_access_and_validation(client, admin_headers, make_user):
    trader, x, _, acct = await _desk(client, admin_headers, make_user)
    other = await make_user("trader")
    crash = [{"name": "crash", "shocks": {"*": -0.2}}]
    # another trader's account does not exist for them
    resp = await client.post(URL, json={"scenarios": crash, "accounts": [acct]}, headers=other["headers"])
    assert resp.status_code == 404 and resp.json()["errors"][0]["field"] == "accounts"
    assert (await _stress(client, other["headers"], {"scenarios": crash}))["results"][0]["accounts"] == []
    bad = [
        ({"scenarios": [{"name": "a", "shocks": {"NOSUCH": -0.1}}]}, 422, "scenarios[0].shocks.NOSUCH"),
        # every shock out of range is named, with its scenario
        ({"scenarios": [crash[0], {"name": "a", "shocks": {x: -1.5}}]}, 422, f"scenarios[1].shocks.{x}"),
        ({"scenarios": [{"name": "a", "shocks": {"*": 101}}]}, 422, "scenarios[0].shocks.*"),
        ({"scenarios": [{"name": "a", "shocks": {x: 5e3, "NOSUCH": 0}}]}, 422, "scenarios[0].shocks.NOSUCH"),
        ({"scenarios": [{"name": "a"}]}, 400, "scenarios"),
        (
            {
                "scenarios": [
                    {
                        "name": "a",
                        "shocks": {x: 0.1},
                        "historical": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
                    }
                ]
            },
            400,
            "scenarios",
        ),
        (
            {
                "scenarios": [
                    {
                        "name": "a",
                        "historical": {"start": "2026-01-03T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
                    }
                ]
            },
            400,
            "scenarios",
        ),
        ({"scenarios": crash + crash}, 422, "scenarios"),
        ({"scenarios": []}, 400, "scenarios"),
        ({"scenarios": crash, "accounts": ["nope"]}, 400, "accounts"),
        ({"scenarios": crash, "colour": "red"}, 400, "colour"),
    ]
    for body, status, field in bad:
        resp = await client.post(URL, json=body, headers=trader["headers"])
        assert resp.status_code == status, (body, resp.text)
        problem = resp.json()
        assert problem["status"] == status and problem["title"] and problem["type"]
        assert any(e["field"].startswith(field) for e in problem["errors"]), (body, problem)
    assert (await client.post(URL, json={"scenarios": crash})).status_code == 401
