"""Saved stress scenarios: CRUD, access, running one by id, and the daily job's summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.domain.risk.scenario_service import run_daily
from tests.integration.test_risk_stress import _desk

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "/api/v1/risk/scenarios"


async def _create(client, headers, body, expect=201):
    resp = await client.post(URL, json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


async def test_saved_scenario_crud_and_access(client, admin_headers, make_user):
    rm = await make_user("risk_manager")
    trader = await make_user("trader")
    _, x, _, _ = await _desk(client, admin_headers, make_user)
    name = f"crash {x}"
    saved = await _create(client, rm["headers"], {"name": name, "shocks": {x: -0.1, "*": -0.05}})
    assert saved["kind"] == "shocks" and saved["shocks"] == {x: -0.1, "*": -0.05}
    assert saved["historical"] is None and saved["daily"] is True and saved["last_run"] is None
    assert saved["created_by"] == rm["id"]

    # Changing is for risk managers; reading and listing for everyone.
    await _create(client, trader["headers"], {"name": f"t {x}", "shocks": {"*": -0.1}}, expect=403)
    resp = await client.get(f"{URL}/{saved['id']}", headers=trader["headers"])
    assert resp.status_code == 200 and resp.json()["name"] == name
    resp = await client.get(URL, params={"limit": 200}, headers=trader["headers"])
    assert saved["id"] in [s["id"] for s in resp.json()["items"]]
    resp = await client.patch(f"{URL}/{saved['id']}", json={"daily": False}, headers=trader["headers"])
    assert resp.status_code == 403
    resp = await client.delete(f"{URL}/{saved['id']}", headers=trader["headers"])
    assert resp.status_code == 403

    # Bad input: the stress request's rules, field by field; nothing is written.
    await _create(client, rm["headers"], {"name": name, "shocks": {"*": -0.1}}, expect=409)
    bad = await _create(client, rm["headers"], {"name": f"u {x}", "shocks": {"NOSUCH": -0.1}}, expect=422)
    assert [e["field"] for e in bad["errors"]] == ["shocks.NOSUCH"]
    bad = await _create(client, rm["headers"], {"name": f"v {x}"}, expect=422)
    assert [e["field"] for e in bad["errors"]] == ["shocks", "historical"]
    body = {"name": f"w {x}", "shocks": {x: -1.5, "*": 0.1, "NOSUCH": 0.2}}
    bad = await _create(client, rm["headers"], body, expect=422)
    assert [e["field"] for e in bad["errors"]] == [f"shocks.{x}", "shocks.NOSUCH"]
    start = datetime(2026, 3, 20, tzinfo=UTC)
    window = {"start": start.isoformat(), "end": (start - timedelta(days=1)).isoformat()}
    await _create(client, rm["headers"], {"name": f"y {x}", "historical": window}, expect=400)
    resp = await client.get(URL, params={"limit": 200}, headers=rm["headers"])
    assert not [s for s in resp.json()["items"] if s["name"] in (f"u {x}", f"v {x}", f"w {x}", f"y {x}")]

    # A change of definition replaces shocks with a window (or back); a rename keeps names unique.
    window = {"start": (start - timedelta(days=10)).isoformat(), "end": start.isoformat()}
    resp = await client.patch(
        f"{URL}/{saved['id']}", json={"historical": window, "daily": False}, headers=rm["headers"]
    )
    assert resp.status_code == 200, resp.text
    changed = resp.json()
    assert changed["kind"] == "historical" and changed["shocks"] is None and changed["daily"] is False
    assert datetime.fromisoformat(changed["historical"]["end"]) == start
    other = await _create(client, rm["headers"], {"name": f"other {x}", "shocks": {"*": 0.01}})
    resp = await client.patch(f"{URL}/{other['id']}", json={"name": name}, headers=rm["headers"])
    assert resp.status_code == 409
    resp = await client.patch(f"{URL}/{other['id']}", json={"shocks": {"*": 0.1}, "historical": window},
                              headers=rm["headers"])
    assert resp.status_code == 422
    for nothing in ({}, {"name": None, "daily": None}):
        resp = await client.patch(f"{URL}/{other['id']}", json=nothing, headers=rm["headers"])
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body", resp.text
    resp = await client.patch(f"{URL}/{other['id']}", json={"shocks": {"*": -2}}, headers=rm["headers"])
    assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == ["shocks.*"]
    assert (await client.get(f"{URL}/{other['id']}", headers=rm["headers"])).json()["shocks"] == {"*": 0.01}

    resp = await client.delete(f"{URL}/{saved['id']}", headers=rm["headers"])
    assert resp.status_code == 204
    for method in ("get", "delete"):
        resp = await getattr(client, method)(f"{URL}/{saved['id']}", headers=rm["headers"])
        assert resp.status_code == 404
    resp = await client.post(f"{URL}/{saved['id']}/run", headers=rm["headers"])
    assert resp.status_code == 404


async def test_running_a_saved_scenario_is_the_stress_test_with_it(client, admin_headers, make_user):
    trader, x, y, acct = await _desk(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    scenario = {"name": f"crash {x}", "shocks": {x: -0.1, "*": -0.05}}
    saved = await _create(client, rm["headers"], scenario)

    resp = await client.post(f"{URL}/{saved['id']}/run", headers=trader["headers"])
    assert resp.status_code == 200, resp.text
    result = resp.json()["results"]
    assert len(result) == 1 and result[0]["scenario"] == scenario["name"]
    # 10 X at 100 down 10% and 4 Y at 50 down 5%: -100 - 10 (the trader's one account)
    assert [(a["account_id"], a["pnl"], a["equity_after"]) for a in result[0]["accounts"]] == [
        (acct, "-110.00000000", "99890.00000000")
    ]
    direct = await client.post(
        "/api/v1/risk/stress", json={"scenarios": [scenario], "accounts": [acct]}, headers=trader["headers"]
    )
    run = f"{URL}/{saved['id']}/run"
    named = await client.post(run, json={"accounts": [acct]}, headers=trader["headers"])
    assert named.json()["results"] == direct.json()["results"]

    stranger = await make_user("trader")
    resp = await client.post(run, json={"accounts": [acct]}, headers=stranger["headers"])
    assert resp.status_code == 404  # another trader's account, as everywhere


async def test_the_daily_job_keeps_each_daily_scenarios_firm_summary(
    client, admin_headers, make_user, db_engine
):
    _, x, _, acct = await _desk(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        json={"limit_type": "max_gross_exposure", "value": "1100"},
        headers=rm["headers"],
    )
    assert resp.status_code == 201, resp.text
    daily = await _create(client, rm["headers"], {"name": f"up {x}", "shocks": {x: 0.2}})
    manual = await _create(
        client, rm["headers"], {"name": f"manual {x}", "shocks": {"*": -0.5}, "daily": False}
    )

    async with db_engine.connect() as conn:
        counts = await run_daily(conn)
    assert counts["scenarios"] >= 1 and counts["accounts"] >= 1

    firm = await client.post(
        "/api/v1/risk/stress", json={"scenarios": [{"name": "up", "shocks": {x: 0.2}}]}, headers=rm["headers"]
    )
    expected = firm.json()["results"][0]
    got = (await client.get(f"{URL}/{daily['id']}", headers=rm["headers"])).json()["last_run"]
    assert got is not None
    assert (got["accounts"], got["firm_pnl"], got["firm_equity"], got["firm_equity_after"]) == (
        len(expected["accounts"]),
        expected["firm_pnl"],
        expected["firm_equity"],
        expected["firm_equity_after"],
    )
    breaching = [a for a in expected["accounts"] if a["breaches"]]
    assert got["accounts_breaching"] == len(breaching) >= 1  # 10 X at 120 + 4 Y at 50 = 1,400 > 1,100
    assert got["breaches"] == sum(len(a["breaches"]) for a in breaching)
    assert (await client.get(f"{URL}/{manual['id']}", headers=rm["headers"])).json()["last_run"] is None
    trader_view = await client.get(f"{URL}/{daily['id']}", headers=(await make_user("trader"))["headers"])
    assert trader_view.json()["last_run"] is None  # firm figures are for risk managers
