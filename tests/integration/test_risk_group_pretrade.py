"""Group limits at order placement on real PostgreSQL: the breach body and violation, validate, and 32
accounts of one group placing concurrently through two API processes never exceeding a group limit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import msgspec
import pytest

from tests.integration.helpers import D, make_account, make_market, make_risk_group, positions

pytestmark = pytest.mark.asyncio(loop_scope="session")

G = "/api/v1/risk/groups"


async def _group(client, rh, accounts: list[str], limit: dict) -> dict:
    group = await make_risk_group(client, rh, accounts, [limit], name="Desk P")
    return {**group, "limit": group["limits"][0]}


def _order(symbol: str, quantity: str = "1", side: str = "buy") -> dict:
    return {"symbol": symbol, "side": side, "type": "market", "quantity": quantity, "time_in_force": "gtc"}


async def test_group_limit_breach_is_a_422_with_a_violation(client, admin_headers, make_user):
    rm = await make_user("risk_manager")
    trader = await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b, outside = [await make_account(client, th) for _ in range(3)]
    group = await _group(client, rm["headers"], [a, b], {"limit_type": "max_gross_exposure", "value": "1500"})
    url = "/api/v1/accounts/{}/orders"
    assert (await client.post(url.format(a), json=_order(x, "10"), headers=th)).status_code == 201
    # b's 6 would take the group to 1,600: over, although b alone holds nothing
    dry = await client.post(url.format(b) + "/validate", json=_order(x, "6"), headers=th)
    assert dry.status_code == 422 and dry.json()["limit_type"] == "max_gross_exposure"
    resp = await client.post(url.format(b), json=_order(x, "6"), headers=th)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["type"].endswith("/risk-limit-breached")
    assert (
        body["limit_id"] == group["limit"]["id"]
        and body["limit_value"] == "1500"
        and D(body["would_be"]) == 1600
    )
    assert "group" in body["detail"]
    assert (
        await client.post(url.format(b), json=_order(x, "5"), headers=th)
    ).status_code == 201  # exactly 1500
    # an account outside the group is not limited by it
    assert (await client.post(url.format(outside), json=_order(x, "50"), headers=th)).status_code == 201
    # a reducing order passes a limit the group is at
    assert (await client.post(url.format(a), json=_order(x, "3", "sell"), headers=th)).status_code == 201
    violations = (
        await client.get(f"/api/v1/accounts/{b}/risk/violations", params={"phase": "pre_trade"}, headers=th)
    ).json()["items"]
    assert [v["limit_id"] for v in violations] == [group["limit"]["id"]] * 2  # the dry run's and the order's


async def test_32_accounts_of_one_group_across_two_api_processes_never_exceed_it(
    client, live, admin_headers, make_user
):
    """96 orders of 1 from 32 accounts of one group, through two API processes (granian): exactly the 40
    that fit a group net-position limit of 40 are accepted, and the accounts hold 40 together."""
    rm = await make_user("risk_manager")
    trader = await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    accounts = [await make_account(client, th) for _ in range(32)]
    await _group(
        client, rm["headers"], accounts, {"limit_type": "max_net_position", "value": "40", "symbol": x}
    )
    jobs = [
        live[i % 2].post(f"/api/v1/accounts/{acct}/orders", json=_order(x), headers=th)
        for i, acct in enumerate(accounts * 3)
    ]
    codes = [r.status_code for r in await asyncio.gather(*jobs)]
    # Every order of the group queues on its lock; on a busy machine some wait past the pool timeout and
    # answer 503 (nothing written). The limit is what matters: it is reached and never exceeded.
    assert codes.count(201) == 40 and set(codes) <= {201, 422, 503}, (codes.count(201), set(codes))
    assert codes.count(422) + codes.count(503) == 56
    held = [D((await positions(client, th, acct)).get(x, {"quantity": "0"})["quantity"]) for acct in accounts]
    assert sum(held) == 40


async def test_group_orders_are_optimistic_and_fall_back_to_the_lock_when_the_group_moved(
    client, admin_headers, make_user, monkeypatch, database_url
):
    """A group order is decided on its read of the group's sums and written only if the group's version
    is unchanged: an order of another account of the group committed in between (here: placed while the
    first one decides) makes its write apply nothing, and it is decided again under the group's lock, on
    sums that include that order."""
    from app.domain.identity.schemas import Principal
    from app.domain.risk import group_pretrade
    from app.domain.trading import placement
    from app.domain.trading.kept import PlacementCaches
    from app.domain.trading.schemas import OrderCreate
    from app.lib.metrics import PLACEMENT_RETRIES

    rm = await make_user("risk_manager")
    trader = await make_user("trader")
    th = trader["headers"]
    principal = Principal(
        user_id=uuid.UUID(trader["id"]), role="trader", key_id=uuid.uuid4(), email=trader["email"]
    )
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = [await make_account(client, th) for _ in range(2)]
    group = await _group(client, rm["headers"], [a, b], {"limit_type": "max_gross_exposure", "value": "1500"})
    url = "/api/v1/accounts/{}/orders"

    locked, racing_done = [], []
    real_locked, real_breach = placement._place_locked, group_pretrade.breach

    async def counting_locked(*args, **kwargs):
        locked.append(kwargs.get("grouped"))
        return await real_locked(*args, **kwargs)

    async def racing_breach(apg, book, order, found=None):
        hit = await real_breach(apg, book, order, found)
        if str(book.id) == b and found is not None and not racing_done:
            racing_done.append(True)  # a's order commits while b's decides on sums without it
            other = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
            try:  # as if from another process: caches of its own
                placed, created = await placement.place_order(
                    other, principal, uuid.UUID(a), msgspec.convert(_order(x, "5"), OrderCreate, strict=False),
                    caches=PlacementCaches(),
                )
            finally:
                await other.close()
            assert created and placed.status == "filled"
        return hit

    monkeypatch.setattr(placement, "_place_locked", counting_locked)
    # Without a race: no lock, one round of the guard (the group's version moves once per order).
    for quantity in ("2", "3"):
        assert (await client.post(url.format(a), json=_order(x, quantity), headers=th)).status_code == 201
    assert locked == []
    monkeypatch.setattr(group_pretrade, "breach", racing_breach)
    group_races = PLACEMENT_RETRIES.labels(changed="group")
    before = group_races._value.get()
    # b's 6 passes on the sums it read (500 + 600 <= 1500) but not on the sums after a's 5 (1000 + 600).
    resp = await client.post(url.format(b), json=_order(x, "6"), headers=th)
    assert racing_done and resp.status_code == 422, resp.text
    assert resp.json()["limit_id"] == group["limit"]["id"] and D(resp.json()["would_be"]) == 1600
    assert group_races._value.get() == before + 1 and locked == [True]
    held = [D((await positions(client, th, acct)).get(x, {"quantity": "0"})["quantity"]) for acct in (a, b)]
    assert held == [10, 0]


async def test_open_orders_and_daily_loss_sum_over_sub_groups(client, admin_headers, make_user):
    """The open-order count and the daily loss of a group take in the accounts of its sub-groups; a limit
    of a parent applies to an account of a child."""
    from tests.integration.helpers import set_price

    rm = await make_user("risk_manager")
    rh = rm["headers"]
    trader = await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = [await make_account(client, th) for _ in range(2)]
    c = await make_account(client, th, allow_short=True)
    url = "/api/v1/accounts/{}/orders"
    parent = await _group(client, rh, [b], {"limit_type": "max_open_orders", "value": "2"})
    resp = await client.post(
        G, json={"name": f"Desk C {uuid.uuid4().hex[:8]}", "parent_id": parent["id"]}, headers=rh
    )
    child = resp.json()
    for acct in (a, c):
        resp = await client.put(
            f"/api/v1/accounts/{acct}/risk/group", json={"group_id": child["id"]}, headers=rh
        )
        assert resp.json()["group_limited"] is True
    resp = await client.post(
        f"{G}/{child['id']}/limits", json={"limit_type": "max_daily_loss", "value": "50"}, headers=rh
    )
    assert resp.status_code == 201, resp.text
    resting = {
        "symbol": x,
        "side": "buy",
        "type": "limit",
        "limit_price": "50",
        "quantity": "1",
        "time_in_force": "gtc",
    }
    assert (await client.post(url.format(a), json=resting, headers=th)).status_code == 201
    assert (await client.post(url.format(b), json=resting, headers=th)).status_code == 201
    resp = await client.post(url.format(c), json=resting, headers=th)  # the third open order of the parent
    assert resp.status_code == 422 and resp.json()["limit_type"] == "max_open_orders", resp.text
    assert resp.json()["limit_id"] == parent["limit"]["id"] and D(resp.json()["would_be"]) == 3
    # c buys 10 at 100 (market orders fill at once, but still count against the limit: cancel one first)
    order_id = (await client.get(url.format(b), headers=th)).json()["items"][0]["id"]
    assert (await client.delete(f"{url.format(b)}/{order_id}", headers=th)).status_code == 200
    assert (await client.post(url.format(c), json=_order(x, "10"), headers=th)).status_code == 201
    await set_price(client, admin_headers, x, "94")  # c: -60 today, the child's daily loss limit is 50
    resp = await client.post(url.format(a), json=_order(x, "1"), headers=th)  # grows a's position: stopped
    assert resp.status_code == 422 and resp.json()["limit_type"] == "max_daily_loss", resp.text
    assert D(resp.json()["would_be"]) == 60
    assert (await client.post(url.format(c), json=_order(x, "4", "sell"), headers=th)).status_code == 201
    # Selling c's remaining long of 6 into a short of 1 is new risk under the group's stop; closing it
    # is not.
    resp = await client.post(url.format(c), json=_order(x, "7", "sell"), headers=th)
    assert resp.status_code == 422 and resp.json()["limit_type"] == "max_daily_loss", resp.text
    assert (await client.post(url.format(c), json=_order(x, "6", "sell"), headers=th)).status_code == 201


async def test_every_change_a_group_decision_rests_on_moves_the_group_version(
    client, admin_headers, make_user, db_engine
):
    """The optimistic group guard is sound only if whatever changes a group's sums or limits moves its
    version: orders (optimistic and locked paths), limit changes, and membership changes (the old and the
    new group and their ancestors). A rejected order moves nothing."""
    from sqlalchemy import text

    async def versions(*groups: dict) -> list[int]:
        async with db_engine.connect() as conn:
            rows = dict(
                (
                    await conn.execute(
                        text("SELECT id::text, version FROM risk_groups WHERE id::text = ANY(:ids)"),
                        {"ids": [g["id"] for g in groups]},
                    )
                ).all()
            )
        return [rows[g["id"]] for g in groups]

    rm = await make_user("risk_manager")
    rh = rm["headers"]
    trader = await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = [await make_account(client, th) for _ in range(2)]
    url = "/api/v1/accounts/{}/orders"
    parent = await _group(client, rh, [], {"limit_type": "max_gross_exposure", "value": "5000"})
    resp = await client.post(
        G, json={"name": f"Desk V {uuid.uuid4().hex[:8]}", "parent_id": parent["id"]}, headers=rh
    )
    child = resp.json()
    other = await _group(client, rh, [], {"limit_type": "max_open_orders", "value": "10"})
    before = await versions(parent, child, other)
    resp = await client.put(f"/api/v1/accounts/{a}/risk/group", json={"group_id": child["id"]}, headers=rh)
    assert resp.json()["group_limited"] is True
    after_join = await versions(parent, child, other)
    # the new group and its ancestors
    assert [y - x_ for x_, y in zip(before, after_join, strict=True)] == [1, 1, 0]
    assert (
        await client.post(url.format(a), json=_order(x, "10"), headers=th)
    ).status_code == 201  # optimistic
    after_order = await versions(parent, child, other)
    # the limited groups only
    assert [y - x_ for x_, y in zip(after_join, after_order, strict=True)] == [1, 0, 0]
    bracket = {
        **_order(x, "1"),
        "type": "limit",
        "limit_price": "95",
        "order_class": "bracket",
        "take_profit": {"limit_price": "110"},
        "stop_loss": {"stop_price": "90"},
    }
    assert (await client.post(url.format(a), json=bracket, headers=th)).status_code == 201  # locked path
    after_bracket = await versions(parent, child, other)
    assert [y - x_ for x_, y in zip(after_order, after_bracket, strict=True)] == [1, 0, 0]
    resp = await client.post(url.format(a), json=_order(x, "50"), headers=th)  # 6,000 > 5,000
    assert resp.status_code == 422
    assert await versions(parent, child, other) == after_bracket
    resp = await client.patch(
        f"{G}/{parent['id']}/limits/{parent['limit']['id']}", json={"value": "6000"}, headers=rh
    )
    assert resp.status_code == 200, resp.text
    after_limit = await versions(parent, child, other)
    assert [y - x_ for x_, y in zip(after_bracket, after_limit, strict=True)] == [1, 0, 0]
    resp = await client.put(f"/api/v1/accounts/{a}/risk/group", json={"group_id": other["id"]}, headers=rh)
    assert resp.status_code == 200
    after_move = await versions(parent, child, other)
    # the old chain and the new group
    assert [y - x_ for x_, y in zip(after_limit, after_move, strict=True)] == [1, 1, 1]
    resp = await client.put(f"/api/v1/accounts/{b}/risk/group", json={"group_id": None}, headers=rh)
    assert resp.status_code == 200 and await versions(parent, child, other) == after_move  # b had none
