"""Contingent orders and trailing stops against scripted price paths: exact Decimal fills, fees,
statuses and events (docs/TRADING.md "Contingent orders")."""

from __future__ import annotations

import pytest

from tests.integration.helpers import D, account, events, make_account, make_market, order, place, positions, set_price

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
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95",
                    order_class="bracket", take_profit={"limit_price": "110"}, stop_loss={"stop_price": "90"})
    assert o["status"] == "accepted" and o["order_class"] == "bracket"
    legs = legs_by_name(o)
    tp, sl = legs["take_profit"], legs["stop_loss"]
    assert tp["status"] == sl["status"] == "held" and tp["side"] == sl["side"] == "sell"
    assert tp["type"] == "limit" and D(tp["limit_price"]) == 110 and sl["type"] == "stop" and D(sl["stop_price"]) == 90
    assert tp["parent_id"] == sl["parent_id"] == o["id"] and tp["reduce_only"] and D(tp["quantity"]) == 10
    assert await events(client, h, acct, tp["id"]) == [("created", None, "new"), ("held", "new", "held")]
    # a price between the legs' prices but above the entry: nothing happens (held legs never act)
    await set_price(client, admin_headers, sym, "89")  # entry fills at 95 (maker); legs activate, act next price
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
    o = await place(client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=10, trail_price="2")
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
    assert [e[0] for e in await events(client, h, acct, o["id"])] == ["created", "accepted", "triggered", "filled"]


async def test_halt_cancels_open_orders_and_held_legs_in_one_transaction(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    rest = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=3, limit_price="90")
    br = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=2, limit_price="95",
                     order_class="bracket", take_profit={"limit_price": "110"}, stop_loss={"stop_price": "90"})
    trail = await place(client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=5, trail_percent="5")
    resp = await client.put(f"/api/v1/accounts/{acct}/trading-state", json={"state": "halted", "reason": "kill"},
                            headers=rm["headers"])
    assert resp.status_code == 200, resp.text
    ids = {rest["id"], br["id"], trail["id"], *(leg["id"] for leg in br["legs"])}
    assert set(resp.json()["canceled_orders"]) == ids
    for oid in ids:
        o = await order(client, h, acct, oid)
        assert o["status"] == "canceled" and o["reject_reason"] is None
        assert (await events(client, h, acct, oid))[-1][0] == "canceled"
    a = await account(client, h, acct)
    assert D(a["reserved_cash"]) == 0 and a["trading_state"] == "halted"


async def test_halted_account_orders_never_fill_when_not_canceled(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    other = await make_account(client, h)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    stop = await place(client, h, acct, symbol=sym, side="sell", type="stop_limit", quantity=5, stop_price="95",
                       limit_price="94")
    buy = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    theirs = await place(client, h, other, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    resp = await client.put(f"/api/v1/accounts/{acct}/trading-state",
                            json={"state": "halted", "reason": "look", "cancel_open_orders": False},
                            headers=rm["headers"])
    assert resp.status_code == 200 and resp.json()["canceled_orders"] == []
    for price in ("94.50", "89", "94"):  # through the stop, through the buy limit, back into the stop-limit
        await set_price(client, admin_headers, sym, price)
    for oid in (stop["id"], buy["id"]):
        o = await order(client, h, acct, oid)
        assert o["status"] == "accepted" and D(o["filled_quantity"]) == 0
        assert [e[0] for e in await events(client, h, acct, oid)] == ["created", "accepted"]
    assert (await order(client, h, other, theirs["id"]))["status"] == "filled"  # other accounts fill
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 5
