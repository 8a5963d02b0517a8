"""Contingent orders and trailing stops against scripted price paths: exact Decimal fills, fees,
statuses and events (docs/TRADING.md "Contingent orders")."""

from __future__ import annotations

import pytest

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
MAKER = D("0.0005")


async def setup(client, admin_headers, make_user, *, price="100", cash="100000", allow_short=False, **market):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price=price, **market)
    acct = await make_account(client, trader["headers"], cash=cash, allow_short=allow_short)
    return trader["headers"], symbol, acct


async def nested(client, h, acct, order_id) -> dict:
    resp = await client.get(f"/api/v1/accounts/{acct}/orders/{order_id}?nested=true", headers=h)
    assert resp.status_code == 200, resp.text
    return resp.json()


def legs_by_name(o: dict) -> dict[str, dict]:
    return {leg["leg"]: leg for leg in o["legs"]}


async def test_bracket_entry_rests_legs_held_then_take_profit_cancels_stop(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=10,
        limit_price="95",
        order_class="bracket",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "90"},
    )
    assert o["status"] == "accepted" and o["order_class"] == "bracket"
    legs = legs_by_name(o)
    tp, sl = legs["take_profit"], legs["stop_loss"]
    assert tp["status"] == sl["status"] == "held" and tp["side"] == sl["side"] == "sell"
    assert (
        tp["type"] == "limit"
        and D(tp["limit_price"]) == 110
        and sl["type"] == "stop"
        and D(sl["stop_price"]) == 90
    )
    assert tp["parent_id"] == sl["parent_id"] == o["id"] and tp["reduce_only"] and D(tp["quantity"]) == 10
    assert await events(client, h, acct, tp["id"]) == [("created", None, "new"), ("held", "new", "held")]
    # a price between the legs' prices but above the entry: nothing happens (held legs never act)
    await set_price(
        client, admin_headers, sym, "89"
    )  # entry fills at 95 (maker); legs activate, act next price
    entry = await nested(client, h, acct, o["id"])
    assert entry["status"] == "filled" and D(entry["avg_fill_price"]) == 95
    legs = legs_by_name(entry)
    assert legs["take_profit"]["status"] == "accepted" and legs["stop_loss"]["status"] == "accepted"
    assert (await events(client, h, acct, legs["stop_loss"]["id"]))[-1] == ("activated", "held", "accepted")
    await set_price(client, admin_headers, sym, "111")  # take-profit fills at 110 (maker), stop canceled
    entry = await nested(client, h, acct, o["id"])
    legs = legs_by_name(entry)
    assert legs["take_profit"]["status"] == "filled" and D(legs["take_profit"]["avg_fill_price"]) == 110
    assert legs["stop_loss"]["status"] == "canceled" and D(legs["stop_loss"]["quantity"]) == 0
    assert D(legs["take_profit"]["fees"]) == D("1100") * MAKER
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["quantity"]) == 0 and D(pos["realized_pnl"]) == 150
    a = await account(client, h, acct)
    assert D(a["cash"]) == D("100000") - 950 - D("950") * MAKER + 1100 - D("1100") * MAKER
    assert D(a["reserved_cash"]) == 0


async def test_trailing_sell_stop_follows_the_high_and_fills_as_market(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    o = await place(
        client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=10, trail_price="2"
    )
    assert o["status"] == "accepted" and D(o["hwm"]) == 100 and D(o["stop_price"]) == 98
    await set_price(client, admin_headers, sym, "105")
    o2 = await order(client, h, acct, o["id"])
    assert D(o2["hwm"]) == 105 and D(o2["stop_price"]) == 103 and o2["status"] == "accepted"
    await set_price(client, admin_headers, sym, "104")  # not in our favour: nothing moves
    o2 = await order(client, h, acct, o["id"])
    assert D(o2["hwm"]) == 105 and D(o2["stop_price"]) == 103
    await set_price(client, admin_headers, sym, "102.50")  # through the stop: triggers, fills as market
    o2 = await order(client, h, acct, o["id"])
    assert o2["status"] == "filled" and D(o2["avg_fill_price"]) == D("102.50")
    assert D(o2["fees"]) == D("1025") * TAKER
    assert [e[0] for e in await events(client, h, acct, o["id"])] == [
        "created",
        "accepted",
        "triggered",
        "filled",
    ]


async def test_halt_cancels_open_orders_and_held_legs_in_one_transaction(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    rest = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=3, limit_price="90")
    br = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=2,
        limit_price="95",
        order_class="bracket",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "90"},
    )
    trail = await place(
        client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=5, trail_percent="5"
    )
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state",
        json={"state": "halted", "reason": "kill"},
        headers=rm["headers"],
    )
    assert resp.status_code == 200, resp.text
    ids = {rest["id"], br["id"], trail["id"], *(leg["id"] for leg in br["legs"])}
    assert set(resp.json()["canceled_orders"]) == ids
    for oid in ids:
        o = await order(client, h, acct, oid)
        assert o["status"] == "canceled" and o["reject_reason"] is None
        assert (await events(client, h, acct, oid))[-1][0] == "canceled"
    a = await account(client, h, acct)
    assert D(a["reserved_cash"]) == 0 and a["trading_state"] == "halted"


async def test_a_halt_whose_every_attempt_misses_a_new_order_still_cancels_it(
    client, admin_headers, make_user, monkeypatch
):
    # Orders committing between the halt's reads and its account lock on every attempt (here: one
    # attempt, and an order placed in that window): the halt commits with the orders it locked, then
    # cancels the one it missed. Before, the last attempt committed and left it open, holding cash.
    import uuid

    from app.domain.identity.schemas import Principal
    from app.domain.trading import killswitch
    from app.domain.trading.schemas import OrderCreate
    from app.domain.trading.services import place_order

    h, sym, acct = await setup(client, admin_headers, make_user)
    trader_id = (await client.get("/api/v1/auth/whoami", headers=h)).json()["user_id"]
    first = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    missed: list[str] = []
    read = killswitch.lock_open_orders

    async def read_then_place(conn, account_id):
        locked = await read(conn, account_id)
        if not missed:  # an order of another connection commits after the read, before the account lock
            principal = Principal(user_id=uuid.UUID(trader_id), role="trader", key_id=uuid.uuid4(),
                                  email="t@example.com")
            async with conn.engine.connect() as other:
                order, _ = await place_order(other, principal, account_id, OrderCreate(
                    symbol=sym, side="buy", type="limit", quantity=D(1), limit_price=D("91")))
            missed.append(str(order.id))
        return locked

    monkeypatch.setattr(killswitch, "ATTEMPTS", 1)
    monkeypatch.setattr(killswitch, "lock_open_orders", read_then_place)
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state", json={"state": "halted", "reason": "kill"},
        headers=(await make_user("risk_manager"))["headers"],
    )
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["canceled_orders"]) == {first["id"], *missed} and len(missed) == 1
    for oid in (first["id"], *missed):
        assert (await order(client, h, acct, oid))["status"] == "canceled"
    a = await account(client, h, acct)
    assert a["trading_state"] == "halted" and D(a["reserved_cash"]) == 0


async def test_halted_account_orders_never_fill_when_not_canceled(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    other = await make_account(client, h)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    stop = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="sell",
        type="stop_limit",
        quantity=5,
        stop_price="95",
        limit_price="94",
    )
    buy = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    theirs = await place(client, h, other, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state",
        json={"state": "halted", "reason": "look", "cancel_open_orders": False},
        headers=rm["headers"],
    )
    assert resp.status_code == 200 and resp.json()["canceled_orders"] == []
    for price in ("94.50", "89", "94"):  # through the stop, through the buy limit, back into the stop-limit
        await set_price(client, admin_headers, sym, price)
    for oid in (stop["id"], buy["id"]):
        o = await order(client, h, acct, oid)
        assert o["status"] == "accepted" and D(o["filled_quantity"]) == 0
        assert [e[0] for e in await events(client, h, acct, oid)] == ["created", "accepted"]
    assert (await order(client, h, other, theirs["id"]))["status"] == "filled"  # other accounts fill
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 5


async def test_partial_entry_fills_protect_exactly_the_filled_quantity(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=10,
        limit_price="95",
        order_class="bracket",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "90"},
    )
    await set_price(client, admin_headers, sym, "95", volume="4")  # entry fills 4 of 10
    entry = await nested(client, h, acct, o["id"])
    assert entry["status"] == "partially_filled" and D(entry["filled_quantity"]) == 4
    legs = legs_by_name(entry)
    assert legs["take_profit"]["status"] == legs["stop_loss"]["status"] == "accepted"
    tp_events = await client.get(
        f"/api/v1/accounts/{acct}/orders/{legs['take_profit']['id']}/events", headers=h
    )
    activated = tp_events.json()["items"][-1]
    assert activated["type"] == "activated" and activated["data"] == {"quantity": "4", "active_quantity": "4"}
    await set_price(client, admin_headers, sym, "111")  # the take-profit may sell only the 4 bought
    entry = await nested(client, h, acct, o["id"])
    legs = legs_by_name(entry)
    tp, sl = legs["take_profit"], legs["stop_loss"]
    assert (
        D(tp["filled_quantity"]) == 4
        and tp["status"] == "partially_filled"
        and D(tp["avg_fill_price"]) == 110
    )
    assert D(sl["quantity"]) == 6 and sl["status"] == "accepted"  # one updates the other
    assert [e[0] for e in await events(client, h, acct, sl["id"])][-1] == "reduced"
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    await set_price(client, admin_headers, sym, "95", volume="2")  # entry fills 2 more: legs protect 2
    await set_price(client, admin_headers, sym, "89")  # the rest of the entry fills at 95; the stop sells 2
    entry = await nested(client, h, acct, o["id"])
    legs = legs_by_name(entry)
    tp, sl = legs["take_profit"], legs["stop_loss"]
    assert entry["status"] == "filled"
    assert D(sl["filled_quantity"]) == 2 and D(sl["avg_fill_price"]) == 89 and D(tp["quantity"]) == 8
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 4  # the last 4 bought at 89: next price
    await set_price(client, admin_headers, sym, "88")
    entry = await nested(client, h, acct, o["id"])
    legs = legs_by_name(entry)
    tp, sl = legs["take_profit"], legs["stop_loss"]
    assert sl["status"] == "filled" and D(sl["filled_quantity"]) == 6 and D(sl["quantity"]) == 6
    # the stop-loss's full fill cancels the take-profit, which keeps the 4 it sold (one event, not a
    # `reduced` that ends it: a bot waiting for `fill` or `canceled` sees the leg end)
    assert tp["status"] == "canceled" and D(tp["quantity"]) == 4 and D(tp["filled_quantity"]) == 4
    tp_events = await client.get(f"/api/v1/accounts/{acct}/orders/{tp['id']}/events", headers=h)
    last = tp_events.json()["items"][-1]
    assert (last["type"], last["status_from"], last["status_to"]) == (
        "canceled", "partially_filled", "canceled"
    )
    assert last["data"] == {"quantity_from": "8", "quantity_to": "4", "order_id": sl["id"]}
    assert last["reason"] == "the stop_loss leg filled 4: nothing left to exit in its group"
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    fills = (await client.get(f"/api/v1/accounts/{acct}/fills", headers=h)).json()["items"]
    sold = sum(D(f["quantity"]) for f in fills if f["side"] == "sell")
    assert sold == 10


async def test_canceling_a_partly_filled_entry_keeps_legs_for_the_fill(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=10,
        limit_price="95",
        order_class="oto",
        stop_loss={"stop_price": "90", "limit_price": "89.50"},
    )
    assert [leg["type"] for leg in o["legs"]] == ["stop_limit"]
    await set_price(client, admin_headers, sym, "95", volume="3")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{o['id']}", headers=h)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    leg = (await nested(client, h, acct, o["id"]))["legs"][0]
    assert leg["status"] == "accepted" and D(leg["quantity"]) == 3
    assert D((await account(client, h, acct))["reserved_cash"]) == 0
    await set_price(client, admin_headers, sym, "89.90")  # triggers; 89.90 is within its limit: sells at once
    leg = await order(client, h, acct, leg["id"])
    assert leg["status"] == "filled" and D(leg["avg_fill_price"]) == D("89.90")
    assert D(leg["fees"]) == D("269.70") * TAKER
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0


async def test_canceling_an_unfilled_entry_cancels_held_legs_and_a_leg_cancels_its_group(
    client, admin_headers, make_user
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=5,
        limit_price="95",
        order_class="bracket",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "90"},
    )
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{o['id']}", headers=h)
    assert resp.status_code == 200
    legs = (await nested(client, h, acct, o["id"]))["legs"]
    assert {leg["status"] for leg in legs} == {"canceled"}
    assert (await events(client, h, acct, legs[0]["id"]))[-1] == ("canceled", "held", "canceled")
    o2 = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=5,
        limit_price="95",
        order_class="bracket",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "90"},
    )
    sl = legs_by_name(o2)["stop_loss"]
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{sl['id']}", headers=h)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    group = await nested(client, h, acct, o2["id"])
    assert group["status"] == "canceled" and {leg["status"] for leg in group["legs"]} == {"canceled"}
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{sl['id']}", headers=h)
    assert resp.status_code == 409
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


async def test_oco_closes_a_position_once_and_counts_once_against_it(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=20)
    groups = []
    for _ in range(2):
        groups.append(
            await place(
                client,
                h,
                acct,
                symbol=sym,
                side="sell",
                type="limit",
                quantity=10,
                order_class="oco",
                take_profit={"limit_price": "105"},
                stop_loss={"stop_price": "95"},
            )
        )
    tp = groups[0]
    assert tp["leg"] == "take_profit" and tp["reduce_only"] and D(tp["limit_price"]) == 105
    sl = tp["legs"][0]
    assert sl["leg"] == "stop_loss" and sl["parent_id"] == tp["id"] and sl["status"] == "accepted"
    # both groups' legs together are 40 to sell of a long 20: each group counts once, so nothing is left
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        headers=h,
        json={"symbol": sym, "side": "sell", "type": "market", "quantity": "1"},
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "quantity"
    await set_price(client, admin_headers, sym, "94")  # both stops trigger and sell at 94 (taker)
    for g in groups:
        group = await nested(client, h, acct, g["id"])
        assert group["status"] == "canceled" and group["legs"][0]["status"] == "filled"
        assert D(group["legs"][0]["avg_fill_price"]) == 94
        assert D(group["legs"][0]["fees"]) == D("940") * TAKER
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0


async def test_short_bracket_and_buy_trailing_stop_mirror(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    o = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="sell",
        type="market",
        quantity=4,
        order_class="bracket",
        take_profit={"limit_price": "90"},
        stop_loss={"stop_price": "104"},
    )
    assert o["status"] == "filled" and D(o["avg_fill_price"]) == 100
    legs = legs_by_name(o)
    assert {leg["side"] for leg in legs.values()} == {"buy"} and {leg["status"] for leg in legs.values()} == {
        "accepted"
    }
    trail = await place(
        client, h, acct, symbol=sym, side="buy", type="trailing_stop", quantity=1, trail_percent="1.5"
    )
    assert D(trail["hwm"]) == 100 and D(trail["stop_price"]) == D("101.50")
    await set_price(client, admin_headers, sym, "97.03")  # hwm 97.03, stop ceil(98.48545) = 98.49
    t = await order(client, h, acct, trail["id"])
    assert D(t["hwm"]) == D("97.03") and D(t["stop_price"]) == D("98.49")
    await set_price(client, admin_headers, sym, "98.49")  # reaches the stop: fills as market
    t = await order(client, h, acct, trail["id"])
    assert t["status"] == "filled" and D(t["avg_fill_price"]) == D("98.49")
    # The short is now 3 (the trailing buy closed 1): the stop-loss leg is reduce-only and buys 3 of its 4,
    # never reversing the position; the take-profit shrinks by as much and both keep the last 1 open.
    await set_price(client, admin_headers, sym, "104")
    group = await nested(client, h, acct, o["id"])
    legs = legs_by_name(group)
    sl, tp = legs["stop_loss"], legs["take_profit"]
    assert (
        sl["status"] == "partially_filled"
        and D(sl["filled_quantity"]) == 3
        and D(sl["avg_fill_price"]) == 104
    )
    assert tp["status"] == "accepted" and D(tp["quantity"]) == 1
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
    await set_price(client, admin_headers, sym, "105")  # nothing left to close: nothing fills
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0


BRACKET = {"order_class": "bracket", "take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "90"}}


async def test_a_marketable_limit_entry_checks_its_exits_against_the_last_price(
    client, admin_headers, make_user
):
    """A buy limit at 105 with the last price at 100 fills at 100 at once: its exits are checked against
    100 (a take-profit at 104 is fine, a stop-loss at 102 would be through the market), and a later
    price above the fill does not stop it out."""
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", limit_price="105", quantity=10,
        order_class="bracket", take_profit={"limit_price": "104"}, stop_loss={"stop_price": "99"},
    )
    group = await nested(client, h, acct, o["id"])
    legs = legs_by_name(group)
    assert group["status"] == "filled" and D(group["avg_fill_price"]) == 100
    assert legs["take_profit"]["status"] == legs["stop_loss"]["status"] == "accepted"
    await set_price(client, admin_headers, sym, "100.5")
    legs = legs_by_name(await nested(client, h, acct, o["id"]))
    assert legs["stop_loss"]["status"] == "accepted" and D(legs["stop_loss"]["filled_quantity"]) == 0
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders", headers=h,
        json={
            "symbol": sym, "side": "buy", "type": "limit", "limit_price": "105", "quantity": "1",
            "order_class": "bracket", "take_profit": {"limit_price": "106"},
            "stop_loss": {"stop_price": "102"},
        },
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "stop_loss.stop_price"
    assert "the last price (the entry's limit 105 is marketable)" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"type": "limit", "limit_price": "95", **BRACKET, "take_profit": {"limit_price": "94"}},
            "take_profit.limit_price",
        ),
        (
            {"type": "limit", "limit_price": "95", **BRACKET, "stop_loss": {"stop_price": "96"}},
            "stop_loss.stop_price",
        ),
        ({"type": "market", **BRACKET, "take_profit": {"limit_price": "99"}}, "take_profit.limit_price"),
        (
            {"type": "limit", "limit_price": "95", **BRACKET, "take_profit": {"limit_price": "110.005"}},
            "take_profit.limit_price",
        ),
        ({"type": "limit", "limit_price": "95", **BRACKET, "time_in_force": "ioc"}, "time_in_force"),
        ({"type": "limit", "limit_price": "95", **BRACKET, "time_in_force": "fok"}, "time_in_force"),
        (
            {
                "type": "limit",
                "limit_price": "95",
                "order_class": "bracket",
                "take_profit": {"limit_price": "110"},
            },
            "stop_loss",
        ),
        (
            {
                "type": "limit",
                "limit_price": "95",
                "order_class": "oto",
                **{k: BRACKET[k] for k in ("take_profit", "stop_loss")},
            },
            "take_profit",
        ),
        ({"type": "limit", "limit_price": "95", "take_profit": {"limit_price": "110"}}, "take_profit"),
        (
            {"type": "trailing_stop", "trail_price": "1", "trail_percent": "1", "side": "sell"},
            "trail_percent",
        ),
        ({"type": "trailing_stop", "side": "sell"}, "trail_price"),
        ({"type": "trailing_stop", "side": "sell", "trail_price": "1", "stop_price": "99"}, "stop_price"),
        ({"type": "trailing_stop", "side": "sell", "trail_price": "100"}, "trail_price"),
        ({"type": "trailing_stop", "side": "sell", "trail_price": "0.005"}, "trail_price"),
        ({"type": "limit", "limit_price": "95", "trail_price": "1"}, "trail_price"),
        ({"type": "stop", "stop_price": "105", "trail_percent": "1"}, "trail_percent"),
        (
            {
                "type": "market",
                "side": "sell",
                "order_class": "oco",
                "take_profit": {"limit_price": "105"},
                "stop_loss": {"stop_price": "95"},
            },
            "type",
        ),
        (
            {
                "type": "limit",
                "side": "sell",
                "order_class": "oco",
                "take_profit": {"limit_price": "99"},
                "stop_loss": {"stop_price": "95"},
            },
            "take_profit.limit_price",
        ),
        (
            {
                "type": "limit",
                "side": "sell",
                "order_class": "oco",
                "take_profit": {"limit_price": "105"},
                "stop_loss": {"stop_price": "95"},
                "limit_price": "104",
            },
            "limit_price",
        ),
        # a marketable limit entry fills at the last price (100): a stop-loss between that and its limit
        # is already through the market
        (
            {"type": "limit", "limit_price": "105", **BRACKET, "stop_loss": {"stop_price": "102"}},
            "stop_loss.stop_price",
        ),
        # a stop-limit stop-loss whose limit is beyond its stop would rest on the far side of the market
        (
            {"type": "limit", "limit_price": "95", **BRACKET,
             "stop_loss": {"stop_price": "90", "limit_price": "91"}},
            "stop_loss.limit_price",
        ),
        (
            {
                "type": "limit",
                "side": "sell",
                "order_class": "oco",
                "take_profit": {"limit_price": "105"},
                "stop_loss": {"stop_price": "95", "limit_price": "95.5"},
            },
            "stop_loss.limit_price",
        ),
    ],
)
async def test_bad_contingent_input_is_422_naming_the_field_and_writes_nothing(
    client, admin_headers, make_user, body, field
):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    before = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    body = {"symbol": sym, "side": "buy", "quantity": "5", **body}
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["errors"][0]["field"] == field and problem["status"] == 422 and problem["detail"]
    after = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    assert after == before
    validate = await client.post(f"/api/v1/accounts/{acct}/orders/validate", json=body, headers=h)
    assert validate.status_code == 422 and validate.json()["errors"][0]["field"] == field


async def test_replayed_client_order_id_returns_the_group_once(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    body = {
        "symbol": sym,
        "side": "buy",
        "type": "limit",
        "quantity": "2",
        "limit_price": "95",
        "client_order_id": "br-1",
        **BRACKET,
    }
    first = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    again = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert {leg["id"] for leg in again.json()["legs"]} == {leg["id"] for leg in first.json()["legs"]}
    changed = await client.post(f"/api/v1/accounts/{acct}/orders", json={**body, "quantity": "3"}, headers=h)
    assert changed.status_code == 409
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders?nested=true", headers=h)).json()["items"]
    assert len(listed) == 3 and {len(o["legs"]) for o in listed} == {1, 2}


async def test_day_groups_expire_entry_first_legs_keep_the_fill_or_are_canceled(
    client, admin_headers, make_user, db_engine
):
    from datetime import timedelta

    from app.domain.trading.services import expire_day_orders
    from app.lib.db import utcnow

    h, sym, acct = await setup(client, admin_headers, make_user)
    unfilled = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=5,
        limit_price="95",
        time_in_force="day",
        **BRACKET,
    )
    partly = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=5,
        limit_price="96",
        time_in_force="day",
        **BRACKET,
    )
    assert {leg["time_in_force"] for leg in partly["legs"]} == {"day"}
    assert {leg["expires_at"] for leg in partly["legs"]} == {partly["expires_at"]}
    await set_price(client, admin_headers, sym, "96", volume="2")  # `partly` fills 2 of 5
    async with db_engine.connect() as conn:
        assert await expire_day_orders(conn, utcnow() + timedelta(days=8)) >= 2
    group = await nested(client, h, acct, unfilled["id"])
    assert group["status"] == "expired" and {leg["status"] for leg in group["legs"]} == {"canceled"}
    assert (await events(client, h, acct, group["legs"][0]["id"]))[-1] == ("canceled", "held", "canceled")
    group = await nested(client, h, acct, partly["id"])
    assert group["status"] == "expired" and D(group["filled_quantity"]) == 2
    for leg in group["legs"]:  # shrunk to the 2 filled (reduced), then expired with the session
        assert leg["status"] == "expired" and D(leg["quantity"]) == 2
        assert [e[0] for e in await events(client, h, acct, leg["id"])][-2:] == ["reduced", "expired"]
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


async def test_a_bracket_is_checked_as_its_entry_by_account_and_group_limits(
    client, admin_headers, make_user
):
    rm = await make_user("risk_manager")
    h, sym, acct = await setup(client, admin_headers, make_user, taker="0", maker="0")
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        headers=rm["headers"],
        json={"limit_type": "max_position_quantity", "value": "10"},
    )
    assert resp.status_code == 201, resp.text
    # entry 10 fills at once: exactly at the limit; its exits (reduce-only) add nothing
    o = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10, **BRACKET)
    assert o["status"] == "filled" and {leg["status"] for leg in o["legs"]} == {"accepted"}
    over = await place(
        client,
        h,
        acct,
        expect=422,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=1,
        limit_price="95",
        **BRACKET,
    )
    assert over["type"].endswith("/risk-limit-breached") and over["limit_type"] == "max_position_quantity"
    # the same on an account under a risk-group limit (the group path locks the group's rows first)
    other = await make_account(client, h)
    group = (await client.post("/api/v1/risk/groups", json={"name": "desk-c"}, headers=rm["headers"])).json()
    resp = await client.put(
        f"/api/v1/accounts/{other}/risk/group", json={"group_id": group["id"]}, headers=rm["headers"]
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"/api/v1/risk/groups/{group['id']}/limits",
        headers=rm["headers"],
        json={"limit_type": "max_gross_exposure", "value": "1000"},
    )
    assert resp.status_code == 201, resp.text
    ok = await place(client, h, other, symbol=sym, side="buy", type="market", quantity=10, **BRACKET)
    assert ok["status"] == "filled" and len(ok["legs"]) == 2
    breach = await place(
        client, h, other, expect=422, symbol=sym, side="buy", type="market", quantity=1, **BRACKET
    )
    assert breach["limit_type"] == "max_gross_exposure"
    listed = (await client.get(f"/api/v1/accounts/{other}/orders", headers=h)).json()["items"]
    assert len(listed) == 3  # the entry and its two legs; nothing of the refused bracket


async def test_cancel_all_cancels_a_bracket_as_a_group_and_lists_every_member(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95",
                    order_class="bracket", take_profit={"limit_price": "110"}, stop_loss={"stop_price": "90"})
    simple = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    members = {o["id"], *(leg["id"] for leg in o["legs"])}
    assert set(body["canceled"]) == members | {simple["id"]} and body["failed"] == []
    after = await nested(client, h, acct, o["id"])
    assert after["status"] == "canceled" and {leg["status"] for leg in after["legs"]} == {"canceled"}
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


async def test_notional_is_refused_on_a_contingent_order_and_nothing_is_written(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "buy", "type": "market", "notional": "1000", "order_class": "bracket",
        "take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "90"}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "notional"
    listed = await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert listed.json()["items"] == []


@pytest.mark.parametrize("held", [10, 0])
async def test_an_oco_must_face_a_position_it_may_at_most_close(client, admin_headers, make_user, held):
    """Both orders of an OCO are reduce-only exits: a buy OCO on a long (or any OCO on a flat account)
    could never fill and would only hold cash, so it is refused as a reduce-only buy is."""
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True)
    if held:
        await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=held)
    before = await account(client, h, acct)
    oco = {"symbol": sym, "side": "buy", "type": "limit", "quantity": "5", "time_in_force": "gtc",
           "order_class": "oco", "take_profit": {"limit_price": "90"}, "stop_loss": {"stop_price": "105"}}
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", json=oco, headers=h)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "side", resp.text
    assert (await account(client, h, acct))["buying_power"] == before["buying_power"]
    if held:  # the sell OCO that closes the long is fine
        sell = {**oco, "side": "sell", "take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "95"}}
        assert (await client.post(f"/api/v1/accounts/{acct}/orders", json=sell, headers=h)).status_code == 201


async def test_a_client_order_id_retry_is_a_replay_only_with_the_same_exits(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    url = f"/api/v1/accounts/{acct}/orders"
    bracket = {"symbol": sym, "side": "buy", "type": "limit", "quantity": "10", "limit_price": "95",
               "time_in_force": "gtc", "order_class": "bracket", "client_order_id": "b-1",
               "take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "90"}}
    first = await client.post(url, json=bracket, headers=h)
    assert first.status_code == 201, first.text
    again = await client.post(url, json=bracket, headers=h)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
    assert {leg["id"] for leg in again.json()["legs"]} == {leg["id"] for leg in first.json()["legs"]}
    for changed in ({"take_profit": {"limit_price": "111"}}, {"stop_loss": {"stop_price": "89"}},
                    {"stop_loss": {"stop_price": "90", "limit_price": "89"}}):
        resp = await client.post(url, json={**bracket, **changed}, headers=h)
        assert resp.status_code == 409, (changed, resp.text)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    oco = {"symbol": sym, "side": "sell", "type": "limit", "quantity": "5", "time_in_force": "gtc",
           "order_class": "oco", "client_order_id": "o-1",
           "take_profit": {"limit_price": "120"}, "stop_loss": {"stop_price": "80"}}
    assert (await client.post(url, json=oco, headers=h)).status_code == 201
    assert (await client.post(url, json=oco, headers=h)).status_code == 200
    resp = await client.post(url, json={**oco, "stop_loss": {"stop_price": "81"}}, headers=h)
    assert resp.status_code == 409, resp.text


async def test_a_price_volume_goes_to_what_fills_not_to_an_exit_capped_at_flat(
    client, admin_headers, make_user
):
    """A stop-loss leg of an OCO whose position another order closed triggers and fills nothing (it never
    reverses the position). First in time priority, it must not take the price's volume from a later
    order that can fill."""
    h, sym, flat = await setup(client, admin_headers, make_user, allow_short=True)
    await place(client, h, flat, symbol=sym, side="buy", type="market", quantity=10)
    oco = await place(client, h, flat, symbol=sym, side="sell", type="limit", quantity=10, order_class="oco",
                      take_profit={"limit_price": "110"}, stop_loss={"stop_price": "95"})
    await place(client, h, flat, symbol=sym, side="sell", type="market", quantity=10)  # flat again
    await set_price(client, admin_headers, sym, "94.5")  # the stop-loss triggers: nothing to sell
    stop_loss = legs_by_name(await nested(client, h, flat, oco["id"]))["stop_loss"]
    assert stop_loss["status"] == "accepted" and D(stop_loss["filled_quantity"]) == 0
    other = await make_account(client, h)
    buy = await place(client, h, other, symbol=sym, side="buy", type="limit", quantity=10, limit_price="94")
    assert (await set_price(client, admin_headers, sym, "94", volume="4"))["fills"] == 1
    bought = (await client.get(f"/api/v1/accounts/{other}/orders/{buy['id']}", headers=h)).json()
    assert bought["status"] == "partially_filled" and D(bought["filled_quantity"]) == 4
    assert D((await positions(client, h, flat)).get(sym, {"quantity": "0"})["quantity"]) == 0
