"""Risk groups on real PostgreSQL: the tree under the firm, membership, group limits, the overview,
portfolio VaR with components, and stress results per group."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import select

from app.domain.accounts.models import Account
from tests.integration.helpers import D, make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")

G = "/api/v1/risk/groups"


async def _post(client, url, body, headers, expect=201):
    resp = await client.post(url, json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def firm(client, make_user):
    """The firm group (one per database): created here, or the one an earlier module created."""
    rm = await make_user("risk_manager")
    resp = await client.post(
        G, json={"name": f"Firm {uuid.uuid4().hex[:6]}", "is_firm": True}, headers=rm["headers"]
    )
    if resp.status_code == 201:
        return resp.json()
    assert resp.status_code == 409, resp.text
    gid = resp.json()["group_id"]
    return (await client.get(f"{G}/{gid}", headers=rm["headers"])).json()


async def test_groups_membership_limits_overview_var_and_stress(
    client, admin_headers, make_user, firm, db_engine
):
    rm = await make_user("risk_manager")
    rh = rm["headers"]
    trader = await make_user("trader")
    th = trader["headers"]
    desk_a = await _post(client, G, {"name": f"Desk A {uuid.uuid4().hex[:6]}"}, rh)
    desk_b = await _post(client, G, {"name": f"Desk B {uuid.uuid4().hex[:6]}"}, rh)
    assert desk_a["parent_id"] == firm["id"] and desk_a["is_firm"] is False  # under the firm by default
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    y = await make_market(client, admin_headers, price="50", taker="0", maker="0")
    a1 = await make_account(client, th)
    a2 = await make_account(client, th)
    b1 = await make_account(client, th)
    for acct, group in ((a1, desk_a), (a2, desk_a), (b1, desk_b)):
        resp = await client.put(
            f"/api/v1/accounts/{acct}/risk/group", json={"group_id": group["id"]}, headers=rh
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["group_limited"] is False
    await place(client, th, a1, symbol=x, side="buy", type="market", quantity="10", time_in_force="gtc")
    await place(client, th, a2, symbol=x, side="buy", type="market", quantity="5", time_in_force="gtc")
    await place(client, th, b1, symbol=y, side="buy", type="market", quantity="3", time_in_force="gtc")

    limit = await _post(
        client, f"{G}/{desk_a['id']}/limits", {"limit_type": "max_gross_exposure", "value": "2000"}, rh
    )
    async with db_engine.connect() as conn:
        flags = dict(
            (
                await conn.execute(
                    select(Account.id, Account.group_limited).where(Account.id.in_([a1, a2, b1]))
                )
            ).all()
        )
    assert {str(k): v for k, v in flags.items()} == {a1: True, a2: True, b1: False}

    # the overview: group totals over the members, each group limit measured
    ov = (await client.get("/api/v1/risk/overview", headers=rh)).json()
    groups = {g["id"]: g for g in ov["groups"]}
    ga, gb, gf = groups[desk_a["id"]], groups[desk_b["id"]], groups[firm["id"]]
    assert ga["totals"]["accounts"] == 2 and D(ga["totals"]["gross_exposure"]) == 1500
    assert D(ga["totals"]["net_exposure"]) == 1500 and D(ga["totals"]["equity"]) == 200000
    assert gb["totals"]["accounts"] == 1 and D(gb["totals"]["gross_exposure"]) == 150
    assert gf["totals"]["accounts"] >= 3  # the desks' accounts, and any other desk's
    [usage] = ga["limits"]
    assert usage["limit_id"] == limit["id"] and D(usage["used"]) == 1500 and usage["utilisation"] == 0.75
    assert ov["firm"]["accounts"] >= 3 and isinstance(ov["open_alerts"], int)

    # portfolio VaR of desk A with a component per account, adding up to the total
    day = datetime(2026, 2, 2, tzinfo=UTC)
    closes = ["90", "95", "93", "97", "100"]
    candles = [
        {
            "ts": (day + timedelta(days=i)).isoformat(),
            "open": c,
            "high": c,
            "low": c,
            "close": c,
            "volume": "1",
        }
        for i, c in enumerate(closes)
    ]
    await _post(
        client, f"/api/v1/instruments/{x}/candles", {"timeframe": "1d", "candles": candles}, admin_headers
    )
    var = (await client.get("/api/v1/risk/var", params={"group_id": desk_a["id"]}, headers=rh)).json()
    c = np.array([float(v) for v in closes])
    r = c[1:] / c[:-1] - 1
    sigma = 1500 * float(np.std(r, ddof=1))
    expected = 1.6448536269514722 * sigma - 1500 * float(r.mean())
    assert var["accounts"] == 2 and var["observations"] == 4
    assert float(var["var_95_amount"]) == pytest.approx(expected, abs=1e-6)
    parts = {p["account_id"]: float(p["var_95_amount"]) for p in var["components"]}
    assert parts[a1] == pytest.approx(expected * 10 / 15, abs=1e-6) and parts[a2] == pytest.approx(
        expected * 5 / 15, abs=1e-6
    )

    # stress by group: desk A's accounts, with the desk's (and the firm's) sums
    out = (
        await client.post(
            "/api/v1/risk/stress",
            json={"scenarios": [{"name": "x-10", "shocks": {x: -0.1}}], "groups": [desk_a["id"]]},
            headers=rh,
        )
    ).json()
    [res] = out["results"]
    assert sorted(a["account_id"] for a in res["accounts"]) == sorted([a1, a2])
    by_group = {g["group_id"]: g for g in res["groups"]}
    assert D(by_group[desk_a["id"]]["pnl"]) == -150 and by_group[desk_a["id"]]["accounts"] == 2
    assert D(by_group[firm["id"]]["pnl"]) == -150 and desk_b["id"] not in by_group

    # a last price away from the last close: today's exposures (15 at 120), the closes' returns
    await set_price(client, admin_headers, x, "120")
    var = (await client.get("/api/v1/risk/var", params={"group_id": desk_a["id"]}, headers=rh)).json()
    moved = 1.6448536269514722 * 1800 * float(np.std(r, ddof=1)) - 1800 * float(r.mean())
    assert float(var["var_95_amount"]) == pytest.approx(moved, abs=1e-6)

    # deleting the limit clears the flag; taking an account out of its group too
    assert (await client.delete(f"{G}/{desk_a['id']}/limits/{limit['id']}", headers=rh)).status_code == 204
    async with db_engine.connect() as conn:
        assert not any(
            (await conn.execute(select(Account.group_limited).where(Account.id.in_([a1, a2])))).scalars()
        )
    resp = await client.put(f"/api/v1/accounts/{a1}/risk/group", json={"group_id": None}, headers=rh)
    assert resp.json() == {"account_id": a1, "group_id": None, "group_limited": False}


async def test_group_roles_and_validation(client, admin_headers, make_user, firm):
    rm = await make_user("risk_manager")
    rh = rm["headers"]
    trader = await make_user("trader")
    th = trader["headers"]
    acct = await make_account(client, th)
    desk = await _post(client, G, {"name": f"Desk V {uuid.uuid4().hex[:6]}"}, rh)
    # traders see no groups; another trader's account is 404, one's own is 403
    assert (await client.get(G, headers=th)).status_code == 403
    assert (await client.get("/api/v1/risk/overview", headers=th)).status_code == 403
    assert (await client.post(G, json={"name": "mine"}, headers=th)).status_code == 403
    assert (
        await client.put(f"/api/v1/accounts/{acct}/risk/group", json={"group_id": desk["id"]}, headers=th)
    ).status_code == 403
    other = await make_user("trader")
    assert (
        await client.put(
            f"/api/v1/accounts/{acct}/risk/group", json={"group_id": desk["id"]}, headers=other["headers"]
        )
    ).status_code == 404
    stress = {"scenarios": [{"name": "s", "shocks": {"*": -0.1}}], "groups": [desk["id"]]}
    assert (await client.post("/api/v1/risk/stress", json=stress, headers=th)).status_code == 403
    bad_stress = {**stress, "groups": [str(uuid.uuid4())]}
    resp = await client.post("/api/v1/risk/stress", json=bad_stress, headers=rh)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "groups"
    # duplicates and a second firm are conflicts; bad definitions are 422 naming the field
    assert (await client.post(G, json={"name": desk["name"]}, headers=rh)).status_code == 409
    assert (
        await client.post(G, json={"name": "another firm", "is_firm": True}, headers=rh)
    ).status_code == 409
    bad = [
        (G, {"name": "orphan", "parent_id": str(uuid.uuid4())}, "parent_id"),
        (f"{G}/{desk['id']}/limits", {"limit_type": "max_leverage", "value": "2"}, "limit_type"),
        (
            f"{G}/{desk['id']}/limits",
            {"limit_type": "max_gross_exposure", "value": "2", "symbol": "X"},
            "symbol",
        ),
        (f"{G}/{desk['id']}/limits", {"limit_type": "max_open_orders", "value": "2.5"}, "value"),
        (
            f"{G}/{desk['id']}/limits",
            {"limit_type": "max_net_position", "value": "2", "symbol": "NOSUCH"},
            "symbol",
        ),
    ]
    for url, body, field in bad:
        resp = await client.post(url, json=body, headers=rh)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["errors"][0]["field"] == field
    for blank in ("", "   "):  # a name must show something
        resp = await client.post(G, json={"name": blank}, headers=rh)
        assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "name", resp.text
    resp = await client.put(
        f"/api/v1/accounts/{acct}/risk/group", json={"group_id": str(uuid.uuid4())}, headers=rh
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "group_id"
    assert (await client.get(f"{G}/{uuid.uuid4()}", headers=rh)).status_code == 404
    assert (
        await client.post(
            f"{G}/{uuid.uuid4()}/limits", json={"limit_type": "max_open_orders", "value": "2"}, headers=rh
        )
    ).status_code == 404
    # PATCH changes a limit
    lim = await _post(client, f"{G}/{desk['id']}/limits", {"limit_type": "max_open_orders", "value": "5"}, rh)
    resp = await client.patch(
        f"{G}/{desk['id']}/limits/{lim['id']}", json={"value": "7", "enabled": False}, headers=rh
    )
    assert resp.status_code == 200 and resp.json()["value"] == "7" and resp.json()["enabled"] is False
    changed = resp.json()
    resp = await client.patch(f"{G}/{desk['id']}/limits/{lim['id']}", json={}, headers=rh)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body", resp.text
    listed = (await client.get(f"{G}/{desk['id']}/limits", headers=rh)).json()["items"]
    assert listed == [changed]  # (updated_at included: nothing was written)
    # paginated like every list, newest first
    more = [
        await _post(client, f"{G}/{desk['id']}/limits", {"limit_type": "max_gross_exposure", "value": v}, rh)
        for v in ("100", "200")
    ]
    page = (await client.get(f"{G}/{desk['id']}/limits", params={"limit": 2}, headers=rh)).json()
    assert [x["id"] for x in page["items"]] == [more[1]["id"], more[0]["id"]] and page["next_cursor"]
    rest = await client.get(
        f"{G}/{desk['id']}/limits", params={"limit": 2, "cursor": page["next_cursor"]}, headers=rh
    )
    assert [x["id"] for x in rest.json()["items"]] == [lim["id"]] and rest.json()["next_cursor"] is None


async def test_a_group_is_renamed_and_an_empty_one_removed_with_its_limits(
    client, admin_headers, make_user, firm, db_engine
):
    rm = await make_user("risk_manager")
    rh = rm["headers"]
    trader = await make_user("trader")
    acct = await make_account(client, trader["headers"])
    desk = await _post(client, G, {"name": f"Desk R {uuid.uuid4().hex[:6]}"}, rh)
    sub = await _post(client, G, {"name": f"Sub R {uuid.uuid4().hex[:6]}", "parent_id": desk["id"]}, rh)
    other = await _post(client, G, {"name": f"Desk O {uuid.uuid4().hex[:6]}"}, rh)
    limit = await _post(
        client, f"{G}/{sub['id']}/limits", {"limit_type": "max_gross_exposure", "value": "1000"}, rh
    )
    # Rename: 200 with the new name; a taken name 409; nothing to change 422; a trader 403; unknown 404.
    new_name = f"Desk R2 {uuid.uuid4().hex[:6]}"
    resp = await client.patch(f"{G}/{desk['id']}", json={"name": new_name}, headers=rh)
    assert resp.status_code == 200 and resp.json()["name"] == new_name and resp.json()["id"] == desk["id"]
    taken = await client.patch(f"{G}/{desk['id']}", json={"name": other["name"]}, headers=rh)
    assert taken.status_code == 409
    assert (await client.patch(f"{G}/{desk['id']}", json={}, headers=rh)).status_code == 422
    assert (
        await client.patch(f"{G}/{desk['id']}", json={"name": "x"}, headers=trader["headers"])
    ).status_code == 403
    assert (await client.patch(f"{G}/{uuid.uuid4()}", json={"name": "x"}, headers=rh)).status_code == 404
    # Removal: only a group without accounts and sub-groups (409 naming what is left), its limits with it.
    await client.put(f"/api/v1/accounts/{acct}/risk/group", json={"group_id": sub["id"]}, headers=rh)
    busy = await client.delete(f"{G}/{sub['id']}", headers=rh)
    assert busy.status_code == 409 and busy.json()["accounts"] == 1, busy.text
    parent = await client.delete(f"{G}/{desk['id']}", headers=rh)
    assert parent.status_code == 409 and parent.json()["groups"] == 1, parent.text
    await client.put(f"/api/v1/accounts/{acct}/risk/group", json={"group_id": None}, headers=rh)
    assert (await client.delete(f"{G}/{sub['id']}", headers=trader["headers"])).status_code == 403
    assert (await client.delete(f"{G}/{sub['id']}", headers=rh)).status_code == 204
    assert (await client.get(f"{G}/{sub['id']}", headers=rh)).status_code == 404
    async with db_engine.connect() as conn:
        from sqlalchemy import text as sql

        count = sql("SELECT count(*) FROM risk_group_limits WHERE id = :i")
        assert await conn.scalar(count, {"i": limit["id"]}) == 0
    assert (await client.delete(f"{G}/{desk['id']}", headers=rh)).status_code == 204
    assert (await client.delete(f"{G}/{desk['id']}", headers=rh)).status_code == 404
