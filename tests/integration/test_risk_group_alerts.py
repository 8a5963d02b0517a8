"""Alerts on group limits (app/domain/risk/group_alerts.py): raised once per crossing of a limit's warning
line or of the limit by the check after a price and by the scheduled sweep, listed and acknowledged by
risk managers, counted in the overview."""

from __future__ import annotations

import uuid

import pytest

from app.domain.risk import group_alerts
from app.domain.risk.post_trade import group_checks_settled
from app.domain.risk.tasks import monitor_all_job
from tests.integration import helpers
from tests.integration.helpers import D, make_account, make_market, make_risk_group, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

G = "/api/v1/risk/groups"


async def _desk(client, admin_headers, make_user, value="1000", warn="80", limit_type="max_gross_exposure"):
    """Two accounts of one trader in a group with one limit; a market at 100 without fees."""
    rm, trader = await make_user("risk_manager"), await make_user("trader")
    x = await make_market(client, admin_headers, price="100", taker="0")
    a, b = [await make_account(client, trader["headers"]) for _ in range(2)]
    group = await make_risk_group(
        client, rm["headers"], [a, b], [{"limit_type": limit_type, "value": value, "warn_at_pct": warn}]
    )
    return rm["headers"], trader["headers"], x, a, b, group


async def set_price(client, admin_headers, symbol: str, price: str) -> dict:
    """A price, once the group checks it set off in the background have run."""
    moved = await helpers.set_price(client, admin_headers, symbol, price)
    await group_checks_settled()
    return moved


async def _alerts(client, rh, group_id: str, **params) -> list[dict]:
    resp = await client.get(f"{G}/{group_id}/alerts", params=params, headers=rh)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def _level(client, rh, group: dict) -> str | None:
    resp = await client.get(f"{G}/{group['id']}/limits", headers=rh)
    assert resp.status_code == 200, resp.text
    (limit,) = resp.json()["items"]
    return limit["alert_level"]


async def test_prices_that_move_a_groups_sums_raise_one_alert_per_crossing(client, admin_headers, make_user):
    rh, th, x, a, b, group = await _desk(client, admin_headers, make_user)
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="4")
    await place(client, th, b, symbol=x, side="buy", type="market", quantity="3")  # gross 700: 70 %
    assert await _alerts(client, rh, group["id"]) == []
    steps = [  # (price, gross, the alerts raised by it)
        ("120", 840, ["warning"]),  # 84 %: up through the warning line
        ("121", 847, []),  # still above it: nothing new
        ("150", 1050, ["critical"]),  # through the limit
        ("151", 1057, []),
        ("130", 910, []),  # back between the lines: stays critical, no alert
        ("100", 700, []),  # below the warning line: re-armed, nothing raised
        ("125", 875, ["warning"]),  # up again: a new warning
    ]
    seen = 0
    levels = []
    for price, gross, raised in steps:
        await set_price(client, admin_headers, x, price)
        alerts = await _alerts(client, rh, group["id"])
        assert [al["severity"] for al in alerts[: len(alerts) - seen]] == raised, price
        seen = len(alerts)
        levels.append(await _level(client, rh, group))
        if raised:
            assert alerts[0]["utilisation"] == pytest.approx(gross / 1000)
            assert alerts[0]["limit_id"] == group["limits"][0]["id"] and alerts[0]["group_id"] == group["id"]
            assert f"{gross / 10:.2f}%" in alerts[0]["message"] and alerts[0]["message"].startswith("group ")
    assert levels == ["warning", "warning", "critical", "critical", "critical", None, "warning"]
    every = await _alerts(client, rh, group["id"])
    assert [al["severity"] for al in every] == ["warning", "critical", "warning"]
    critical = await _alerts(client, rh, group["id"], severity="critical")
    assert [al["severity"] for al in critical] == ["critical"]


async def test_a_fill_at_a_price_that_takes_the_group_past_its_limit_is_alerted(
    client, admin_headers, make_user
):
    """Two members' resting buys, each within the limit at placement, fill together at a price: the group
    passes its gross limit by fills alone (docs/RISK.md), and the check after that price says so."""
    rh, th, x, a, b, group = await _desk(client, admin_headers, make_user)
    for acct in (a, b):
        await place(client, th, acct, symbol=x, side="buy", type="limit", quantity="6", limit_price="95")
    assert await _alerts(client, rh, group["id"]) == []
    fills = await set_price(client, admin_headers, x, "95")
    assert fills["fills"] == 2
    (alert,) = await _alerts(client, rh, group["id"])
    assert alert["severity"] == "critical" and D(str(alert["utilisation"])) == D("1.14")  # 12 at 95


async def test_the_sweep_raises_what_no_price_did_and_never_twice(
    client, admin_headers, make_user, db_engine
):
    rh, th, x, a, b, group = await _desk(client, admin_headers, make_user, value="10000")
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="8")  # 800 of 10,000
    limit = group["limits"][0]
    resp = await client.patch(f"{G}/{group['id']}/limits/{limit['id']}", json={"value": "900"}, headers=rh)
    assert resp.status_code == 200, resp.text  # 89 %: crossed by the change, not by a price
    assert await _alerts(client, rh, group["id"]) == []
    counts = await monitor_all_job({"engine": db_engine})
    assert counts["complete"] and counts["group_alerts"] >= 1
    (alert,) = await _alerts(client, rh, group["id"])
    assert alert["severity"] == "warning"
    await monitor_all_job({"engine": db_engine})
    async with db_engine.connect() as conn:
        assert await group_alerts.check_groups(conn, [uuid.UUID(group["id"])]) == 0
    assert len(await _alerts(client, rh, group["id"])) == 1
    # Switched off, the limit starts afresh: switched on again, the next check raises the crossing anew.
    for enabled in (False, True):
        resp = await client.patch(
            f"{G}/{group['id']}/limits/{limit['id']}", json={"enabled": enabled}, headers=rh
        )
        assert resp.status_code == 200 and resp.json()["alert_level"] is None, resp.text
    async with db_engine.connect() as conn:
        assert await group_alerts.check_groups(conn, [uuid.UUID(group["id"])]) == 1


async def test_group_alerts_are_a_risk_managers_to_list_and_acknowledge(client, admin_headers, make_user):
    rh, th, x, a, b, group = await _desk(client, admin_headers, make_user, limit_type="max_net_position")
    resp = await client.patch(
        f"{G}/{group['id']}/limits/{group['limits'][0]['id']}", json={"value": "10"}, headers=rh
    )
    assert resp.status_code == 200, resp.text
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="9")
    await set_price(client, admin_headers, x, "101")  # 9 of 10: 90 %
    (alert,) = await _alerts(client, rh, group["id"], acknowledged="false")
    assert alert["limit_type"] == "max_net_position" and alert["severity"] == "warning"
    overview = (await client.get("/api/v1/risk/overview", headers=rh)).json()
    assert overview["open_group_alerts"] >= 1
    assert alert["id"] in [al["id"] for al in overview["recent_group_alerts"]]
    path = f"{G}/{group['id']}/alerts/{alert['id']}/acknowledge"
    assert (await client.post(path, headers=th)).status_code == 403
    assert (await client.get(f"{G}/{group['id']}/alerts", headers=th)).status_code == 403
    done = await client.post(path, headers=rh)
    assert done.status_code == 200 and done.json()["acknowledged_at"] is not None, done.text
    again = await client.post(path, headers=rh)
    assert again.status_code == 409 and again.json()["acknowledged_at"], again.text
    missing = await client.post(f"{G}/{group['id']}/alerts/{uuid.uuid4()}/acknowledge", headers=rh)
    assert missing.status_code == 404, missing.text
    assert (await client.get(f"{G}/{uuid.uuid4()}/alerts", headers=rh)).status_code == 404
    assert await _alerts(client, rh, group["id"], acknowledged="false") == []
    assert [al["id"] for al in await _alerts(client, rh, group["id"], acknowledged="true")] == [alert["id"]]
    bad = await client.get(f"{G}/{group['id']}/alerts", params={"severity": "loud"}, headers=rh)
    assert bad.status_code == 400, bad.text


async def test_a_groups_daily_loss_is_measured_from_the_days_first_snapshot(
    client, admin_headers, make_user, db_engine
):
    from app.domain.risk.tasks import snapshot_equity_job

    rh, th, x, a, b, group = await _desk(
        client, admin_headers, make_user, value="100", limit_type="max_daily_loss"
    )
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="6")
    await place(client, th, b, symbol=x, side="buy", type="market", quantity="4")
    await snapshot_equity_job({"engine": db_engine})  # the day's opening equity: 10 at 100
    await set_price(client, admin_headers, x, "95")  # -50 of 100: below the warning line
    assert await _alerts(client, rh, group["id"]) == []
    await set_price(client, admin_headers, x, "88")  # -120
    (alert,) = await _alerts(client, rh, group["id"])
    assert alert["severity"] == "critical" and D(str(alert["utilisation"])) == D("1.2")


async def test_group_checks_after_prices_coalesce_and_stop_cleanly(
    client, admin_headers, make_user, db_engine
):
    """Symbols priced while a group check runs are checked together by the next run (one task at a time);
    stopping cancels the run and forgets what was pending."""
    from app.domain.risk import post_trade

    rh, th, x, a, b, group = await _desk(client, admin_headers, make_user)
    y = await make_market(client, admin_headers, price="100", taker="0")
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="5")
    await place(client, th, b, symbol=y, side="buy", type="market", quantity="4")  # 900: 90 %
    post_trade.schedule_group_check(db_engine, x)
    first = post_trade._GroupChecks.task
    post_trade.schedule_group_check(db_engine, y)
    assert post_trade._GroupChecks.task is first  # one run at a time: y waits for the next pass
    await group_checks_settled()
    assert not post_trade._GroupChecks.pending
    (alert,) = await _alerts(client, rh, group["id"])
    assert alert["severity"] == "warning"
    post_trade.schedule_group_check(db_engine, x)
    await post_trade.stop_group_checks()
    assert post_trade._GroupChecks.task.done() and not post_trade._GroupChecks.pending


async def test_a_failing_group_check_leaves_the_sweeps_account_results(db_engine, monkeypatch):
    """The accounts are checked and reported; the groups' failure is logged and reported beside them, and
    the next run checks the groups again."""

    async def broken(conn, group_ids=None):
        raise RuntimeError("group sums unavailable")

    monkeypatch.setattr(group_alerts, "check_groups", broken)
    counts = await monitor_all_job({"engine": db_engine})
    assert counts["complete"] and counts["group_alerts_failed"] is True and "group_alerts" not in counts
