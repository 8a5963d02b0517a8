"""Order operations (issue 17, operations part): notional and reduce-only orders, replace in place,
cancel-all, closing positions, the client_order_id lookup (docs/TRADING.md)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.domain.markets import services as market_services
from app.domain.trading import bulk, replace
from tests.integration.helpers import (
    D,
    account,
    events,
    make_account,
    make_market,
    order,
    place,
    positions,
    set_price,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

TAKER = D("0.001")


async def setup(client, admin_headers, make_user, *, price="100", cash="100000", allow_short=False, **market):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price=price, **market)
    acct = await make_account(client, trader["headers"], cash=cash, allow_short=allow_short)
    return trader["headers"], symbol, acct


async def all_orders(client, h, acct) -> list[dict]:
    resp = await client.get(f"/api/v1/accounts/{acct}/orders?limit=500", headers=h)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def field_of(resp) -> list[str]:
    return [e["field"] for e in resp.json().get("errors") or []]


# ------------------------------------------------------------------------------------------------ notional


async def test_notional_market_order_is_sized_by_the_last_price_floored_to_the_lot(
    client, admin_headers, make_user
):
    h, sym, acct = await setup(client, admin_headers, make_user, price="33.33", lot="0.001", min_qty="0.001")
    body = {"symbol": sym, "side": "buy", "type": "market", "notional": "1000"}
    checked = await client.post(f"/api/v1/accounts/{acct}/orders/validate", json=body, headers=h)
    assert checked.status_code == 200, checked.text
    assert D(checked.json()["estimated_cost"]) == D("30.003") * D("33.33")
    o = await place(client, h, acct, symbol=sym, side="buy", type="market", notional="1000")
    # 1000 / 33.33 = 30.0030003... -> 30.003 lots of 0.001, exactly
    assert D(o["quantity"]) == D("30.003") and D(o["filled_quantity"]) == D("30.003")
    assert D(o["notional"]) == 1000 and o["status"] == "filled"
    assert D(o["avg_fill_price"]) == D("33.33") and D(o["fees"]) == D("30.003") * D("33.33") * TAKER
    stored = await order(client, h, acct, o["id"])
    assert D(stored["notional"]) == 1000 and D(stored["quantity"]) == D("30.003")
    # A replay of the same client_order_id compares the notional, not the sized quantity.
    body = {"symbol": sym, "side": "buy", "type": "market", "notional": "50", "client_order_id": "n-1"}
    first = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    await set_price(client, admin_headers, sym, "40")
    again = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]


async def test_notional_rejections_name_the_field_and_write_nothing(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, price="100", lot="1", min_qty="2")
    url = f"/api/v1/accounts/{acct}/orders"
    cases = [
        ({"type": "limit", "limit_price": "99", "notional": "1000"}, "notional"),  # market orders only
        ({"type": "market", "quantity": "5", "notional": "1000"}, "notional"),  # not both
        ({"type": "market", "notional": "150"}, "notional"),  # 1 lot < min_quantity 2
        ({"type": "market", "notional": "99.99"}, "notional"),  # 0 lots
    ]
    for extra, field in cases:
        resp = await client.post(url, json={"symbol": sym, "side": "buy", **extra}, headers=h)
        assert resp.status_code == 422, (extra, resp.text)
        assert field_of(resp) == [field], resp.json()
    resp = await client.post(url, json={"symbol": sym, "side": "buy", "type": "market"}, headers=h)
    assert resp.status_code == 400 and "quantity" in field_of(resp)
    # the account checks of the quantity a notional makes name the field the body gave
    too_much = await client.post(
        url, json={"symbol": sym, "side": "buy", "type": "market", "notional": "200000"}, headers=h
    )
    assert too_much.status_code == 422 and field_of(too_much) == ["notional"], too_much.text
    assert too_much.json()["type"].endswith("/insufficient-buying-power")
    no_long = await client.post(
        url, json={"symbol": sym, "side": "sell", "type": "market", "notional": "500"}, headers=h
    )
    assert no_long.status_code == 422 and field_of(no_long) == ["notional"], no_long.text
    assert await all_orders(client, h, acct) == []
    assert D((await account(client, h, acct))["cash"]) == 100000
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    reverse = await client.post(
        url,
        json={"symbol": sym, "side": "sell", "type": "market", "notional": "1000", "reduce_only": True},
        headers=h,
    )
    assert reverse.status_code == 422 and field_of(reverse) == ["notional"], reverse.text
    assert reverse.json()["type"].endswith("/insufficient-position")  # (a long-only account: 10 > 5)
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)
    reverse = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "buy", "type": "market", "notional": "1000", "reduce_only": True},
        headers=h,
    )
    assert reverse.status_code == 422 and field_of(reverse) == ["notional"], reverse.text
    assert reverse.json()["type"].endswith("/reduce-only")


async def test_a_min_notional_refusal_says_which_price_valued_the_order(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, price="100", min_notional="50")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    wide = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "sell", "type": "trailing_stop", "quantity": "1",
              "trail_price": "99.99"},
        headers=h,
    )
    assert wide.status_code == 422, wide.text
    assert wide.json()["detail"] == "notional 0.01 (1 at its stop price, 0.01) is below min_notional 50"


async def test_nested_body_errors_name_the_nested_field(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    base = {"symbol": sym, "side": "buy", "type": "limit", "limit_price": "95", "quantity": "1",
            "order_class": "bracket", "stop_loss": {"stop_price": "90"}}
    for take_profit, field in (
        ({"limit_price": "-1"}, "take_profit.limit_price"),
        ({"limit_price": "1E+30"}, "take_profit.limit_price"),
        ({"limit_prize": "1"}, "take_profit.limit_prize"),
        ({}, "take_profit.limit_price"),
    ):
        resp = await client.post(
            f"/api/v1/accounts/{acct}/orders", json={**base, "take_profit": take_profit}, headers=h
        )
        assert resp.status_code == 400 and field_of(resp) == [field], resp.text
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", json={**base, "quantity": "-1"}, headers=h)
    assert resp.status_code == 400 and field_of(resp) == ["quantity"], resp.text
    assert await all_orders(client, h, acct) == []


# --------------------------------------------------------------------------------------------- reduce-only


async def test_reduce_only_may_only_shrink_the_position(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    url = f"/api/v1/accounts/{acct}/orders"
    flat = await client.post(
        url,
        json={"symbol": sym, "side": "sell", "type": "market", "quantity": "1", "reduce_only": True},
        headers=h,
    )
    assert flat.status_code == 422 and field_of(flat) == ["side"], flat.text
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    grow = await client.post(
        url,
        json={
            "symbol": sym,
            "side": "buy",
            "type": "limit",
            "quantity": "1",
            "limit_price": "90",
            "reduce_only": True,
        },
        headers=h,
    )
    assert grow.status_code == 422 and field_of(grow) == ["side"], grow.text
    reverse = await client.post(
        url,
        json={"symbol": sym, "side": "sell", "type": "market", "quantity": "11", "reduce_only": True},
        headers=h,
    )
    assert reverse.status_code == 422 and field_of(reverse) == ["quantity"], reverse.text
    first = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="sell",
        type="limit",
        quantity=6,
        limit_price="150",
        reduce_only=True,
    )
    assert first["reduce_only"] is True and first["status"] == "accepted"
    # 6 already open on reduce-only sells: 5 more would reverse the long of 10, 4 closes it exactly.
    over = await client.post(
        url,
        json={
            "symbol": sym,
            "side": "sell",
            "type": "limit",
            "quantity": "5",
            "limit_price": "150",
            "reduce_only": True,
        },
        headers=h,
    )
    assert over.status_code == 422 and field_of(over) == ["quantity"], over.text
    second = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="sell",
        type="limit",
        quantity=4,
        limit_price="150",
        reduce_only=True,
    )
    # An ordinary sell shrinks the long to 5 meanwhile; at 150 the reduce-only sells close it and stop there.
    await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)
    await set_price(client, admin_headers, sym, "150")
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    a, b = await order(client, h, acct, first["id"]), await order(client, h, acct, second["id"])
    assert (a["status"], D(a["filled_quantity"])) == ("canceled", 5)
    assert (b["status"], D(b["filled_quantity"])) == ("canceled", 0)


async def test_a_reduce_only_account_cannot_flip_its_position_through_several_resting_orders(
    client, admin_headers, make_user
):
    # The trading state accepts only orders that shrink the position without flipping it: the side's
    # other open orders count, whatever their own flag (each of two sells of 60 fits a long 90, both do not).
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="90")
    rm = await make_user("risk_manager")
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state", json={"state": "reduce_only", "reason": "test"},
        headers=rm["headers"],
    )
    assert resp.status_code == 200, resp.text
    url = f"/api/v1/accounts/{acct}/orders"
    sell = {"symbol": sym, "side": "sell", "type": "limit", "limit_price": "110", "time_in_force": "gtc"}
    first = await client.post(url, json={**sell, "quantity": "60"}, headers=h)
    assert first.status_code == 201 and first.json()["status"] == "accepted", first.text
    second = await client.post(url, json={**sell, "quantity": "60"}, headers=h)
    assert second.status_code == 422, second.text
    problem = second.json()
    assert problem["type"].endswith("/reduce-only") and problem["errors"][0]["field"] == "quantity"
    assert "open orders of a reduce_only account" in problem["detail"]
    fits = await client.post(url, json={**sell, "quantity": "30"}, headers=h)
    assert fits.status_code == 201, fits.text
    buy = {**sell, "side": "buy", "limit_price": "90", "quantity": "1"}
    grow = await client.post(url, json=buy, headers=h)
    assert grow.status_code == 422 and grow.json()["type"].endswith("/reduce-only"), grow.text
    await set_price(client, admin_headers, sym, "110")
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0


async def test_reduce_only_counts_the_two_exits_of_a_group_once(client, admin_headers, make_user, db_engine):
    """An OCO's take-profit and stop-loss legs (the stop-loss leg linked to the take-profit leg) share one
    quantity: against a long of 10, legs of 6 leave room for 4 more reduce-only, not for none."""
    from sqlalchemy import text

    # (a short-enabled account: the long-only sellable rule is not what this test is about)
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    tp, sl = uuid.uuid4(), uuid.uuid4()
    insert = text(
        "INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, limit_price,"
        " stop_price, status, order_class, parent_id, leg, reduce_only, created_at, updated_at)"
        " VALUES (:id, :acct, :sym, 'sell', :type, 'gtc', 6, :limit, :stop, 'accepted', 'oco', :parent, :leg,"
        " true, now(), now())"
    )
    async with db_engine.begin() as conn:
        await conn.execute(
            insert,
            {
                "id": tp,
                "acct": uuid.UUID(acct),
                "sym": sym,
                "type": "limit",
                "limit": 150,
                "stop": None,
                "parent": None,
                "leg": "take_profit",
            },
        )
        await conn.execute(
            insert,
            {
                "id": sl,
                "acct": uuid.UUID(acct),
                "sym": sym,
                "type": "stop",
                "limit": None,
                "stop": 80,
                "parent": tp,
                "leg": "stop_loss",
            },
        )
    url = f"/api/v1/accounts/{acct}/orders"
    body = {"symbol": sym, "side": "sell", "type": "limit", "limit_price": "160", "reduce_only": True}
    over = await client.post(url, json={**body, "quantity": "5"}, headers=h)
    assert over.status_code == 422 and field_of(over) == ["quantity"], over.text
    assert (await client.post(url, json={**body, "quantity": "4"}, headers=h)).status_code == 201


# ------------------------------------------------------------------------------------------------- replace


async def patch(client, h, acct, order_id, **body):
    return await client.patch(f"/api/v1/accounts/{acct}/orders/{order_id}", json=body, headers=h)


async def test_replace_changes_the_order_in_place_with_one_replaced_event(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95")
    resp = await patch(client, h, acct, o["id"], quantity="20", limit_price="90")
    assert resp.status_code == 200, resp.text
    new = resp.json()
    assert new["id"] == o["id"] and new["version"] == 2 and new["status"] == "accepted"
    assert D(new["quantity"]) == 20 and D(new["limit_price"]) == 90
    # The reservation is the new order's only: 20 x 90 plus the worst fee, the old one released.
    assert D((await account(client, h, acct))["reserved_cash"]) == D("1800") + D("1800") * TAKER
    evs = (await client.get(f"/api/v1/accounts/{acct}/orders/{o['id']}/events", headers=h)).json()["items"]
    assert [(e["type"], e["status_from"], e["status_to"]) for e in evs] == [
        ("created", None, "new"),
        ("accepted", "new", "accepted"),
        ("replaced", "accepted", "accepted"),
    ]
    assert evs[-1]["data"] == {
        "version": 2,
        "old": {"quantity": "10", "limit_price": "95"},
        "new": {"quantity": "20", "limit_price": "90"},
        "priority": "lost",
    }
    # The stream log carries it with its seq and the order after it.
    resp = await client.get(f"/api/v1/accounts/{acct}/activities", headers=h)
    assert resp.status_code == 200, resp.text
    log = resp.json()["items"]
    assert [i["event"] for i in log] == ["new", "accepted", "replaced"]
    assert log[2]["seq"] == log[1]["seq"] + 1 and log[2]["order"]["version"] == 2
    assert D(log[2]["order"]["quantity"]) == 20
    await set_price(client, admin_headers, sym, "90")
    filled = await order(client, h, acct, o["id"])
    assert (
        filled["status"] == "filled"
        and D(filled["filled_quantity"]) == 20
        and D(filled["avg_fill_price"]) == 90
    )


async def test_lowering_quantity_keeps_time_priority_and_a_price_change_loses_it(
    client, admin_headers, make_user
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    a = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="95")
    b = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="95")
    assert (await patch(client, h, acct, a["id"], quantity="4")).json()["version"] == 2
    await set_price(client, admin_headers, sym, "95", volume="4")  # only the first in line fills
    assert (await order(client, h, acct, a["id"]))["status"] == "filled"
    assert D((await order(client, h, acct, b["id"]))["filled_quantity"]) == 0

    await set_price(client, admin_headers, sym, "100")
    c = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="95")
    d = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="95")
    # c moves away and back: the same price as d again, but behind it now (and behind b).
    assert (await patch(client, h, acct, c["id"], limit_price="94")).status_code == 200
    resp = await patch(client, h, acct, c["id"], limit_price="95")
    assert resp.status_code == 200 and resp.json()["version"] == 3
    await set_price(client, admin_headers, sym, "95", volume="10")
    assert (await order(client, h, acct, b["id"]))["status"] == "filled"
    assert (await order(client, h, acct, d["id"]))["status"] == "filled"
    assert D((await order(client, h, acct, c["id"]))["filled_quantity"]) == 0


async def test_replace_rejections(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    lim = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95")
    stop = await place(client, h, acct, symbol=sym, side="buy", type="stop", quantity=1, stop_price="110")
    cases = [
        (lim, {"stop_price": "96"}, 422, "stop_price"),
        (lim, {"trail_price": "1"}, 422, "trail_price"),
        (stop, {"limit_price": "111"}, 422, "limit_price"),
        (lim, {"limit_price": "95.001"}, 422, "limit_price"),  # off the tick
        (lim, {"limit_price": "101"}, 422, "limit_price"),  # marketable at the last price: would execute
        (stop, {"stop_price": "99"}, 422, "stop_price"),  # the last price already reaches it
        (lim, {"quantity": "2.5"}, 422, "quantity"),  # off the lot
        (lim, {"quantity": "100000"}, 422, "quantity"),  # buying power
        (lim, {"time_in_force": "ioc"}, 422, "time_in_force"),
        (lim, {"colour": "red"}, 400, "colour"),
        (lim, {}, 422, "body"),
        (lim, {"quantity": "-1"}, 422, "quantity"),
    ]
    for target, body, status, field in cases:
        resp = await patch(client, h, acct, target["id"], **body)
        assert resp.status_code == status, (body, resp.text)
        assert field in field_of(resp), (body, resp.json())
    # Below the filled quantity: 422; a final order: 409; another account's order: 404.
    await set_price(client, admin_headers, sym, "95", volume="6")
    resp = await patch(client, h, acct, lim["id"], quantity="5")
    assert resp.status_code == 422 and field_of(resp) == ["quantity"], resp.text
    resp = await patch(client, h, acct, lim["id"], quantity="6")
    assert resp.status_code == 422 and field_of(resp) == ["quantity"], resp.text
    assert (await client.delete(f"/api/v1/accounts/{acct}/orders/{lim['id']}", headers=h)).status_code == 200
    resp = await patch(client, h, acct, lim["id"], quantity="8")
    assert resp.status_code == 409, resp.text
    other = await make_user("trader")
    resp = await patch(client, other["headers"], acct, stop["id"], quantity="2")
    assert resp.status_code == 404
    unchanged = await order(client, h, acct, stop["id"])
    assert unchanged["version"] == 1 and D(unchanged["stop_price"]) == 110
    assert [e[0] for e in await events(client, h, acct, stop["id"])] == ["created", "accepted"]


async def test_reduce_only_state_lets_a_replace_lower_a_quantity_and_nothing_else(
    client, admin_headers, make_user
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="90")
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state",
        json={"state": "reduce_only", "reason": "t"},
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.text
    url = f"/api/v1/accounts/{acct}/orders/{o['id']}"
    for body in ({"limit_price": "91"}, {"quantity": "6"}, {"quantity": "4", "limit_price": "89"}):
        refused = await client.patch(url, json=body, headers=h)
        assert refused.status_code == 422 and refused.json()["type"].endswith("/reduce-only"), refused.text
    lowered = await client.patch(url, json={"quantity": "4"}, headers=h)
    assert lowered.status_code == 200, lowered.text
    assert D(lowered.json()["quantity"]) == 4 and lowered.json()["version"] == 2
    assert D((await account(client, h, acct))["reserved_cash"]) == D("360.36")  # 4 x 90 + the 0.1 % fee


async def test_replace_breaching_a_risk_limit_changes_nothing(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        json={"limit_type": "max_order_quantity", "value": "10"},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=8, limit_price="95")
    before = await account(client, h, acct)
    resp = await patch(client, h, acct, o["id"], quantity="12")
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["type"].endswith("/risk-limit-breached") and body["limit_type"] == "max_order_quantity"
    assert D(body["would_be"]) == 12
    after = await order(client, h, acct, o["id"])
    assert after["version"] == 1 and D(after["quantity"]) == 8 and after["updated_at"] == o["updated_at"]
    assert [e[0] for e in await events(client, h, acct, o["id"])] == ["created", "accepted"]
    assert (await account(client, h, acct))["reserved_cash"] == before["reserved_cash"]
    violations = (await client.get(f"/api/v1/accounts/{acct}/risk/violations", headers=admin_headers)).json()[
        "items"
    ]
    assert [v["limit_type"] for v in violations] == ["max_order_quantity"]
    # Within the limit it goes through (the order is checked as itself, not on top of itself).
    assert (await patch(client, h, acct, o["id"], quantity="10")).status_code == 200


def _price_update(client, sym: str, price: str, volume: str | None = None):
    """A real price update (the matcher) on a connection of its own, on the app's loop."""

    async def run() -> None:
        async with client.app.state.engine.connect() as conn:
            await market_services.set_price(conn, sym, D(price), None, None if volume is None else D(volume))

    return run


async def test_replace_racing_a_fill_never_leaves_filled_above_quantity(
    client, admin_headers, make_user, monkeypatch
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    # 1) The fill commits just before the replace takes its locks: the replace sees it and refuses.
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95")
    lookup = replace.load_instrument
    done: list[bool] = []

    async def fill_first(conn, symbol):
        if not done:
            done.append(True)
            await _price_update(client, sym, "95", "5")()
        return await lookup(conn, symbol)

    monkeypatch.setattr(replace, "load_instrument", fill_first)
    resp = await patch(client, h, acct, o["id"], quantity="3")
    assert resp.status_code == 422 and field_of(resp) == ["quantity"], resp.text
    got = await order(client, h, acct, o["id"])
    assert D(got["filled_quantity"]) == 5 and D(got["quantity"]) == 10 and got["version"] == 1
    monkeypatch.setattr(replace, "load_instrument", lookup)

    # 2) The price update arrives while the replace holds its locks: it waits, then fills the new quantity.
    await set_price(client, admin_headers, sym, "100")
    o2 = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="96")
    write = replace._write
    pending: list[asyncio.Task] = []

    async def fill_during(*args, **kwargs):
        state = await write(*args, **kwargs)
        pending.append(asyncio.create_task(_price_update(client, sym, "96")()))
        await asyncio.sleep(0.3)  # the update is waiting for the instrument row now
        return state

    monkeypatch.setattr(replace, "_write", fill_during)
    resp = await patch(client, h, acct, o2["id"], quantity="4")
    assert resp.status_code == 200, resp.text
    monkeypatch.setattr(replace, "_write", write)

    for _ in range(50):  # the update runs on the app's loop, after the replace committed
        got = await order(client, h, acct, o2["id"])
        if got["status"] == "filled":
            break
        await asyncio.sleep(0.1)
    assert got["status"] == "filled" and D(got["filled_quantity"]) == 4 and D(got["quantity"]) == 4
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 9
    assert D((await account(client, h, acct))["reserved_cash"]) == D("95") * 5 * (
        1 + TAKER
    )  # the first order's rest


async def test_replaces_and_price_updates_from_two_processes_keep_every_invariant(
    client, admin_headers, make_user, live, db_engine
):
    """Replaces through one API process while another feeds volume-limited prices that fill the same
    orders: every order ends with filled <= quantity, the reservations match the open orders, and the
    account reconciles with its fills."""
    import random

    from app.domain.trading.reconcile import reconcile_account

    proc_a, proc_b = live
    h, sym, acct = await setup(client, admin_headers, make_user)
    ids = []
    for _ in range(4):
        o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95")
        ids.append(o["id"])
    rng = random.Random(17)
    statuses: list[int] = []

    async def replaces() -> None:
        for i in range(32):
            body = {"quantity": str(rng.randint(1, 14))}
            resp = await proc_a.patch(f"/api/v1/accounts/{acct}/orders/{ids[i % 4]}", json=body, headers=h)
            assert resp.status_code in (200, 409, 422), resp.text
            statuses.append(resp.status_code)

    async def prices() -> None:
        for i in range(32):
            body = {"price": "95" if i % 2 == 0 else "100", "volume": "2"}
            resp = await proc_b.post(f"/api/v1/instruments/{sym}/price", json=body, headers=admin_headers)
            assert resp.status_code == 200, resp.text

    await asyncio.gather(replaces(), prices())
    assert 200 in statuses
    expected_reserved = total_filled = D(0)
    for oid in ids:
        o = await order(client, h, acct, oid)
        filled, qty = D(o["filled_quantity"]), D(o["quantity"])
        total_filled += filled
        assert filled <= qty, o
        assert (o["status"] == "filled") == (filled == qty), o
        if o["status"] in ("accepted", "partially_filled"):
            expected_reserved += (qty - filled) * 95 * (1 + TAKER)
    assert total_filled > 0
    assert D((await account(client, h, acct))["reserved_cash"]) == expected_reserved
    async with db_engine.connect() as conn:
        drift = await reconcile_account(conn, uuid.UUID(acct))
    assert drift.ok, drift.problems


# -------------------------------------------------------------------------------------------- cancel-all


async def test_cancel_all_with_a_symbol_filter_and_the_failed_list(
    client, admin_headers, make_user, monkeypatch
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    other_sym = await make_market(client, admin_headers, price="50")
    a = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    b = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="80")
    c = await place(client, h, acct, symbol=other_sym, side="buy", type="limit", quantity=1, limit_price="40")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbol={sym}", headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"canceled": [a["id"], b["id"]], "failed": []}
    assert (await order(client, h, acct, c["id"]))["status"] == "accepted"
    assert [e[0] for e in await events(client, h, acct, a["id"])][-1] == "canceled"
    # A symbol no instrument has (a typo) cancels nothing and says so, rather than an empty success.
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbol=NOSUCH{sym}", headers=h)
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "symbol" and resp.json()["type"].endswith("/unknown-symbol")
    assert (await order(client, h, acct, c["id"]))["status"] == "accepted"

    # An order filled between the listing and its cancel is reported, and the others still canceled.
    d = await place(client, h, acct, symbol=other_sym, side="buy", type="limit", quantity=1, limit_price="30")
    listing = bulk._cancelable_ids

    async def fill_after_listing(*args, **kwargs):
        ids = await listing(*args, **kwargs)
        await _price_update(client, other_sym, "40")()  # fills c (limit 40), not d (limit 30)
        return ids

    monkeypatch.setattr(bulk, "_cancelable_ids", fill_after_listing)
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"canceled": [d["id"]], "failed": [{"id": c["id"], "reason": "already filled"}]}
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


# ----------------------------------------------------------------------------------------- close positions


async def test_close_position_by_quantity_percentage_and_in_full(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    url = f"/api/v1/accounts/{acct}/positions/{sym}"
    resp = await client.delete(f"{url}?quantity=3", headers=h)
    assert resp.status_code == 201, resp.text
    o = resp.json()
    assert (o["side"], o["type"], o["reduce_only"], o["status"], D(o["quantity"])) == (
        "sell",
        "market",
        True,
        "filled",
        3,
    )
    resp = await client.delete(f"{url}?percentage=50", headers=h)  # 50% of 7 = 3.5 -> 3 lots
    assert resp.status_code == 201 and D(resp.json()["quantity"]) == 3, resp.text
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 4
    for query, field in (
        ("percentage=10", "percentage"),
        ("quantity=5", "quantity"),
        ("percentage=101", "percentage"),
        ("quantity=1&percentage=10", "percentage"),
        ("quantity=0", "quantity"),
        # text Python's Decimal() takes and the documented pattern does not: refused, nothing sold
        ("quantity=1_0", "quantity"),
        ("quantity=%202", "quantity"),
        ("percentage=%EF%BC%95", "percentage"),  # a full-width 5
        ("percentage=1e-400", "percentage"),  # more than 18 places
    ):
        resp = await client.delete(f"{url}?{query}", headers=h)
        assert resp.status_code == 422 and field_of(resp) == [field], (query, resp.text)
    resp = await client.delete(f"{url}?quantity=1e400", headers=h)
    assert resp.status_code == 400 and field_of(resp) == ["quantity"], resp.text
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 4
    resp = await client.delete(url, headers=h)
    assert resp.status_code == 201 and D(resp.json()["quantity"]) == 4, resp.text
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    assert (await client.delete(url, headers=h)).status_code == 404


@pytest.mark.parametrize("sold_meanwhile, expected", [("2", 3), ("5", None)])
async def test_a_close_sizes_on_the_position_left_after_its_cancels(
    client, admin_headers, make_user, monkeypatch, sold_meanwhile, expected
):
    # `cancel_orders=true`: the exits are canceled first, and a fill may shrink the position between the
    # close's read and its order (here: a sale on another connection right after the cancels). The close
    # takes what is left (or answers 404 once nothing is); before, it was sized on the first read and
    # refused (422), leaving the position without its canceled exits.
    from app.domain.trading.schemas import OrderCreate
    from app.domain.trading.services import place_order

    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5, order_class="bracket",
                take_profit={"limit_price": "105"}, stop_loss={"stop_price": "98"})
    cancel = bulk.cancel_all

    async def cancel_then_sell(conn, principal, account_id, symbol):
        out = await cancel(conn, principal, account_id, symbol)
        async with conn.engine.connect() as other:
            await place_order(other, principal, account_id, OrderCreate(
                symbol=symbol, side="sell", type="market", quantity=D(sold_meanwhile)))
        return out

    monkeypatch.setattr(bulk, "cancel_all", cancel_then_sell)
    resp = await client.delete(f"/api/v1/accounts/{acct}/positions/{sym}?cancel_orders=true", headers=h)
    if expected is None:
        assert resp.status_code == 404, resp.text
    else:
        assert resp.status_code == 201 and D(resp.json()["quantity"]) == expected, resp.text
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    assert {o["status"] for o in await all_orders(client, h, acct)} <= {"filled", "canceled"}


async def test_close_all_positions(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    sym2 = await make_market(client, admin_headers, price="20", lot="0.5", min_qty="0.5")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    await place(client, h, acct, symbol=sym2, side="sell", type="market", quantity="7.5")
    # A reduce-only sell already open on sym: a full close on top of it would reverse the long.
    blocker = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="sell",
        type="limit",
        quantity=2,
        limit_price="150",
        reduce_only=True,
    )
    resp = await client.delete(f"/api/v1/accounts/{acct}/positions", headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(o["symbol"], o["side"], D(o["quantity"])) for o in body["orders"]] == [(sym2, "buy", D("7.5"))]
    assert [f["symbol"] for f in body["failed"]] == [sym] and "reverse" in body["failed"][0]["reason"]
    resp = await client.delete(f"/api/v1/accounts/{acct}/positions?cancel_orders=true", headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(o["symbol"], o["side"], D(o["quantity"])) for o in body["orders"]] == [(sym, "sell", D(10))]
    assert body["failed"] == []
    assert (await order(client, h, acct, blocker["id"]))["status"] == "canceled"
    assert all(D(p["quantity"]) == 0 for p in (await positions(client, h, acct)).values())


# ------------------------------------------------------------------------------------- client_order_id lookup


async def test_lookup_by_client_order_id(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=1,
        limit_price="90",
        client_order_id="bot-7",
    )
    resp = await client.get(f"/api/v1/accounts/{acct}/orders?client_order_id=bot-7", headers=h)
    assert resp.status_code == 200 and resp.json()["id"] == o["id"], resp.text
    resp = await client.get(f"/api/v1/accounts/{acct}/orders?client_order_id=bot-8", headers=h)
    assert resp.status_code == 404, resp.text
    other = await make_user("trader")
    resp = await client.get(f"/api/v1/accounts/{acct}/orders?client_order_id=bot-7", headers=other["headers"])
    assert resp.status_code == 404
    resp = await client.get(
        f"/api/v1/accounts/{acct}/orders?client_order_id=bot-7&status=accepted", headers=h
    )
    assert resp.status_code == 400 and field_of(resp) == ["client_order_id"]


# ------------------------------------------------------------------------------- unknown query parameters


async def test_every_list_endpoint_rejects_an_unknown_query_parameter(client, admin_headers):
    doc = (await client.get("/schema/openapi.json")).json()
    samples = {"string": "X", "integer": "1"}
    checked = []
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        if op is None or not path.startswith("/api/"):
            continue
        url = path
        for p in op.get("parameters", []):
            if p["in"] == "path":
                schema = p.get("schema", {})
                value = (
                    str(uuid.uuid4())
                    if schema.get("format") == "uuid"
                    else samples.get(schema.get("type"), "X")
                )
                url = url.replace("{" + p["name"] + "}", value)
        resp = await client.get(f"{url}?no_such_param=1", headers=admin_headers)
        assert resp.status_code == 400, (path, resp.status_code, resp.text)
        body = resp.json()
        assert (
            body["status"] == 400
            and {"field": "no_such_param", "message": "unknown query parameter"} in body["errors"]
        )
        checked.append(path)
    assert "/api/v1/accounts/{account_id}/orders" in checked and len(checked) > 20, checked
    # Declared parameters still pass.
    resp = await client.get("/api/v1/accounts?limit=5", headers=admin_headers)
    assert resp.status_code == 200, resp.text


async def test_every_action_rejects_an_unknown_query_parameter_before_acting(
    client, admin_headers, make_user
):
    # Every POST, PUT, PATCH and DELETE of the API: a misspelt parameter is a 400 naming it, before the
    # handler runs (a cancel-all with `?symbl=` would otherwise cancel every symbol's orders).
    doc = (await client.get("/schema/openapi.json")).json()
    checked = []
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method in ("post", "put", "patch", "delete"):
            op = ops.get(method)
            if op is None:
                continue
            url = path
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    fmt = p.get("schema", {}).get("format")
                    url = url.replace("{" + p["name"] + "}", str(uuid.uuid4()) if fmt == "uuid" else "X")
            resp = await client.request(method.upper(), f"{url}?no_such_param=1", headers=admin_headers)
            assert resp.status_code == 400, (method, path, resp.status_code, resp.text)
            assert {"field": "no_such_param", "message": "unknown query parameter"} in resp.json()["errors"]
            checked.append((method, path))
    assert ("delete", "/api/v1/accounts/{account_id}/orders") in checked and len(checked) > 30, checked
    # The reviewer's case, end to end: a misspelt symbol filter cancels nothing; the declared one works.
    h, symbol, acct = await setup(client, admin_headers, make_user)
    other = await make_market(client, admin_headers, price="100")
    for sym in (symbol, other):
        await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity="1", limit_price="90")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbl={symbol}", headers=h)
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "symbl", resp.text
    assert sorted(o["status"] for o in await all_orders(client, h, acct)) == ["accepted", "accepted"]
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbol={symbol}", headers=h)
    assert resp.status_code == 200 and len(resp.json()["canceled"]) == 1, resp.text


async def test_a_one_value_query_parameter_given_twice_is_a_400_and_cancels_nothing(client, admin_headers, make_user):
    h, symbol, acct = await setup(client, admin_headers, make_user)
    other = await make_market(client, admin_headers, price="100")
    for sym in (symbol, other):
        await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity="1", limit_price="90")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbol={symbol}&symbol={other}", headers=h)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"].endswith("/repeated-query-parameter")
    assert body["errors"] == [{"field": "symbol", "message": "takes one value"}]
    assert sorted(o["status"] for o in await all_orders(client, h, acct)) == ["accepted", "accepted"]
    resp = await client.get(f"/api/v1/accounts/{acct}/orders?limit=5&limit=6", headers=h)
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "limit", resp.text
    # Once each is fine.
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders?symbol={symbol}", headers=h)
    assert resp.status_code == 200, resp.text


async def test_event_data_carries_decimals_in_plain_notation(client, admin_headers, make_user):
    """The audit trail (`/orders/{id}/events`) as every answer: "0.00000002", never "2E-8" (a fill's price
    and quantity on a fine tick, a zero PnL at the fee scale, a replace's new quantity given as 1E+1)."""
    import re

    h, sym, acct = await setup(
        client, admin_headers, make_user, price="0.00000002", tick="0.00000001", lot="0.00000001",
        min_qty="0.00000001",
    )
    bought = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="0.00000003")
    resting = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity="12", limit_price="0.00000001"
    )
    resp = await client.patch(
        f"/api/v1/accounts/{acct}/orders/{resting['id']}", json={"quantity": "1E+1"}, headers=h
    )
    assert resp.status_code == 200, resp.text
    exponent = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+$")
    seen = []
    for placed in (bought, resting):
        resp = await client.get(f"/api/v1/accounts/{acct}/orders/{placed['id']}/events", headers=h)
        for event in resp.json()["items"]:
            data = event["data"] or {}
            flat = {**data, **data.get("new", {}), **data.get("old", {})}
            seen += [(event["type"], k, v) for k, v in flat.items() if exponent.match(str(v))]
            if event["type"] == "filled":
                assert (data["price"], data["quantity"]) == ("0.00000002", "0.00000003"), data
            if event["type"] == "replaced":
                assert data["new"]["quantity"] == "10", data
    assert seen == []
