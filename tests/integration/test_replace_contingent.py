"""Replacing trailing stops, exit legs and bracket entries (docs/TRADING.md "Replace"): a new trail moves
the stop now, an exit leg's group counts once in the reduce-only sum, and an entry's new price keeps its
exits on the right side of it."""

from __future__ import annotations

import pytest

from tests.integration.helpers import D, make_account, make_market, order, place, positions, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _long(client, admin_headers, make_user, *, held: int = 10, allow_short: bool = False):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, allow_short=allow_short)
    if held:
        await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=held)
    return h, sym, acct


async def test_a_new_trail_price_moves_the_stop_from_the_hwm_and_the_stop_then_triggers(
    client, admin_headers, make_user
):
    h, sym, acct = await _long(client, admin_headers, make_user)
    trail = await place(client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=5, trail_price="5")
    assert D(trail["hwm"]) == 100 and D(trail["stop_price"]) == 95
    url = f"/api/v1/accounts/{acct}/orders/{trail['id']}"
    resp = await client.patch(url, json={"trail_price": "1"}, headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert D(body["trail_price"]) == 1 and D(body["stop_price"]) == 99 and body["version"] == 2
    assert D((await order(client, h, acct, trail["id"]))["stop_price"]) == 99
    await set_price(client, admin_headers, sym, "99.50")  # above the new stop: nothing
    assert (await order(client, h, acct, trail["id"]))["status"] == "accepted"
    await set_price(client, admin_headers, sym, "98.90")  # through 99: triggers and sells (the old stop was 95)
    done = await order(client, h, acct, trail["id"])
    assert done["status"] == "filled" and D(done["filled_quantity"]) == 5, done
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 5


async def test_a_new_trail_percent_moves_the_stop_and_one_the_last_price_reaches_is_refused(
    client, admin_headers, make_user
):
    h, sym, acct = await _long(client, admin_headers, make_user)
    trail = await place(
        client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=5, trail_percent="10"
    )
    assert D(trail["stop_price"]) == 90
    url = f"/api/v1/accounts/{acct}/orders/{trail['id']}"
    resp = await client.patch(url, json={"trail_percent": "0.5"}, headers=h)
    assert resp.status_code == 200 and D(resp.json()["stop_price"]) == D("99.50"), resp.text
    await set_price(client, admin_headers, sym, "99.60")  # below the hwm (100), above the stop
    # 0.2 % of the hwm 100 puts the stop at 99.80, which 99.60 has already passed: it would trigger at once.
    refused = await client.patch(url, json={"trail_percent": "0.2"}, headers=h)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"].endswith("replace-would-execute") and problem["errors"][0]["field"] == "trail_percent"
    too_wide = await client.patch(url, json={"trail_percent": "100"}, headers=h)
    assert too_wide.status_code == 422 and too_wide.json()["errors"][0]["field"] == "trail_percent"
    kept = await order(client, h, acct, trail["id"])
    assert D(kept["trail_percent"]) == D("0.5") and D(kept["stop_price"]) == D("99.50") and kept["version"] == 2


@pytest.mark.parametrize("order_class", ["bracket", "oco"])
async def test_the_stop_loss_leg_of_a_group_moves_without_counting_its_take_profit_twice(
    client, admin_headers, make_user, order_class
):
    # Long 5 through the group (a filled bracket entry, or a position the OCO closes): its two exits share
    # those 5. Moving the stop-loss leaves out the whole group from the other reduce-only orders.
    held = 0 if order_class == "bracket" else 5
    h, sym, acct = await _long(client, admin_headers, make_user, held=held, allow_short=True)
    legs = {"take_profit": {"limit_price": "105"}, "stop_loss": {"stop_price": "95"}}
    if order_class == "bracket":
        group = await place(
            client, h, acct, symbol=sym, side="buy", type="market", quantity=5, order_class="bracket", **legs
        )
    else:
        group = await place(
            client, h, acct, symbol=sym, side="sell", type="limit", quantity=5, order_class="oco", **legs
        )
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders?limit=50&nested=true", headers=h)).json()
    members = [o for o in listed["items"] if o["id"] == group["id"]][0]
    every = [members, *(members["legs"] or [])]
    sl = next(o for o in every if o["leg"] == "stop_loss")
    assert sl["status"] == "accepted", sl
    url = f"/api/v1/accounts/{acct}/orders/{sl['id']}"
    resp = await client.patch(url, json={"stop_price": "97"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert D(resp.json()["stop_price"]) == 97 and resp.json()["version"] == 2
    # The group still may not sell more than the position: a reduce-only sell of 1 more is refused.
    more = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "sell", "type": "limit", "quantity": "1", "limit_price": "130",
              "reduce_only": True},
        headers=h,
    )
    assert more.status_code == 422 and more.json()["type"].endswith("reduce-only"), more.text


async def test_an_entry_moved_past_its_exits_is_refused_and_nothing_changes(client, admin_headers, make_user):
    h, sym, acct = await _long(client, admin_headers, make_user, held=0)
    entry = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="99",
        order_class="bracket", take_profit={"limit_price": "105"}, stop_loss={"stop_price": "95"},
    )
    url = f"/api/v1/accounts/{acct}/orders/{entry['id']}"
    below_stop = await client.patch(url, json={"limit_price": "94"}, headers=h)
    assert below_stop.status_code == 422, below_stop.text
    assert below_stop.json()["errors"][0]["field"] == "stop_loss.stop_price"
    above_target = await client.patch(url, json={"limit_price": "99.99"}, headers=h)
    assert above_target.status_code == 200, above_target.text  # still between 95 and 105
    await set_price(client, admin_headers, sym, "110")  # (so that a buy limit at 106 does not execute)
    past_target = await client.patch(url, json={"limit_price": "106"}, headers=h)
    assert past_target.status_code == 422, past_target.text
    assert past_target.json()["errors"][0]["field"] == "take_profit.limit_price"
    kept = await order(client, h, acct, entry["id"])
    assert D(kept["limit_price"]) == D("99.99") and kept["version"] == 2


async def test_a_sell_trail_at_or_above_its_hwm_is_refused_naming_the_trail(client, admin_headers, make_user):
    """As at placement (where the hwm is the last price): a sell's stop must stay above zero."""
    h, sym, acct = await _long(client, admin_headers, make_user, held=500)
    trail = await place(client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=500, trail_price="3")
    url = f"/api/v1/accounts/{acct}/orders/{trail['id']}"
    for value in ("100", "200"):
        resp = await client.patch(url, json={"trail_price": value}, headers=h)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "trail_price", resp.text
    kept = await order(client, h, acct, trail["id"])
    assert (D(kept["trail_price"]), D(kept["stop_price"]), kept["version"]) == (3, 97, 1)


async def test_the_time_in_force_of_a_group_order_cannot_change(client, admin_headers, make_user):
    """A group's legs take the entry's time_in_force (and expiry) at placement: changing one order of the
    group would leave gtc exits behind a day entry (or day exits behind a gtc one)."""
    h, sym, acct = await _long(client, admin_headers, make_user, held=0)
    entry = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="90",
        order_class="bracket", take_profit={"limit_price": "120"}, stop_loss={"stop_price": "80"},
    )
    for target in (entry, *entry["legs"]):
        resp = await client.patch(
            f"/api/v1/accounts/{acct}/orders/{target['id']}", json={"time_in_force": "day"}, headers=h
        )
        assert resp.status_code in (409, 422), resp.text
        if target is entry:
            assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "time_in_force", resp.text
    after = await order(client, h, acct, entry["id"])
    assert (after["time_in_force"], after["expires_at"], after["version"]) == ("gtc", None, 1)
    resp = await client.patch(  # naming its own time_in_force is no change
        f"/api/v1/accounts/{acct}/orders/{entry['id']}", json={"time_in_force": "gtc", "limit_price": "91"}, headers=h
    )
    assert resp.status_code == 200, resp.text


async def test_a_stop_limit_stop_loss_keeps_its_limit_through_its_stop(client, admin_headers, make_user):
    # The rule placement applies (contingent.check_sides): a long's stop-loss sells, so its limit may not
    # go above its stop, where it would rest above the market once triggered.
    h, sym, acct = await _long(client, admin_headers, make_user, held=0, allow_short=True)
    legs = {"take_profit": {"limit_price": "105"}, "stop_loss": {"stop_price": "95", "limit_price": "94"}}
    group = await place(
        client, h, acct, symbol=sym, side="buy", type="market", quantity=5, order_class="bracket", **legs
    )
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders?limit=50&nested=true", headers=h)).json()
    members = [o for o in listed["items"] if o["id"] == group["id"]][0]
    sl = next(o for o in members["legs"] if o["leg"] == "stop_loss")
    url = f"/api/v1/accounts/{acct}/orders/{sl['id']}"
    for change, field in (({"limit_price": "96"}, "limit_price"), ({"stop_price": "93"}, "stop_price")):
        resp = await client.patch(url, json=change, headers=h)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, resp.text
    resp = await client.patch(url, json={"stop_price": "96", "limit_price": "95.50"}, headers=h)
    assert resp.status_code == 200 and resp.json()["version"] == 2, resp.text
