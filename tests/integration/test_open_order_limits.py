"""`max_open_orders` (an account's limit and a group's) counts open orders and held legs, and an order
counts as every order it places: an OCO two (its order and its stop-loss leg), a bracket three (its
entry and both exit legs, held until the entry fills and then open with no check of their own), an OTO
two; a replace none. So neither a contingent order at placement nor its legs' activation later can take
the count past the limit."""

from __future__ import annotations

import pytest

from tests.integration.helpers import D, make_account, make_market, make_risk_group, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")

G = "/api/v1/risk/groups"


def _resting(symbol: str, price: str = "50") -> dict:
    return {"symbol": symbol, "side": "buy", "type": "limit", "quantity": "1", "limit_price": price}


def _bracket(symbol: str) -> dict:
    return {
        "symbol": symbol,
        "side": "buy",
        "type": "limit",
        "quantity": "10",
        "limit_price": "90",
        "order_class": "bracket",
        "take_profit": {"limit_price": "120"},
        "stop_loss": {"stop_price": "80"},
    }


def _oco(symbol: str) -> dict:
    return {
        "symbol": symbol,
        "side": "sell",
        "type": "limit",
        "quantity": "10",
        "limit_price": "120",
        "order_class": "oco",
        "take_profit": {"limit_price": "120"},
        "stop_loss": {"stop_price": "80"},
    }


async def _account_limit(client, rh, acct: str, value: str) -> dict:
    resp = await client.post(
        f"/api/v1/accounts/{acct}/risk/limits",
        json={"limit_type": "max_open_orders", "value": value},
        headers=rh,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def _group_limit(client, rh, accounts: list[str], value: str) -> dict:
    limit = {"limit_type": "max_open_orders", "value": value}
    return (await make_risk_group(client, rh, accounts, [limit], name="Desk O"))["limits"][0]


def _refused(resp, limit: dict, would_be: int) -> None:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert (body["limit_type"], body["limit_id"], D(body["would_be"])) == (
        "max_open_orders",
        limit["id"],
        would_be,
    )


async def _open_count(client, th, acct: str) -> int:
    items = (await client.get(f"/api/v1/accounts/{acct}/orders?limit=100", headers=th)).json()["items"]
    return sum(o["status"] in ("new", "held", "accepted", "partially_filled") for o in items)


@pytest.mark.parametrize("scope", ["account", "group"])
async def test_an_oco_counts_as_its_two_orders(client, admin_headers, make_user, scope):
    rh, th = (await make_user("risk_manager"))["headers"], (await make_user("trader"))["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = await make_account(client, th), await make_account(client, th)
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="10")
    limit = await (
        _account_limit(client, rh, a, "2") if scope == "account" else _group_limit(client, rh, [a, b], "2")
    )
    await place(client, th, a if scope == "account" else b, **_resting(x))  # one open order
    resp = await client.post(f"/api/v1/accounts/{a}/orders", json=_oco(x), headers=th)
    _refused(resp, limit, 3)
    assert await _open_count(client, th, a) == (0 if scope == "group" else 1)  # nothing written
    resp = await client.patch(
        f"{G}/{limit['group_id']}/limits/{limit['id']}"
        if scope == "group"
        else f"/api/v1/accounts/{a}/risk/limits/{limit['id']}",
        json={"value": "3"},
        headers=rh,
    )
    assert resp.status_code == 200, resp.text
    await place(client, th, a, **_oco(x))


@pytest.mark.parametrize("scope", ["account", "group"])
async def test_a_bracket_counts_its_held_legs_so_their_activation_stays_within_the_limit(
    client, admin_headers, make_user, scope
):
    rh, th = (await make_user("risk_manager"))["headers"], (await make_user("trader"))["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = await make_account(client, th), await make_account(client, th)
    limit = await (
        _account_limit(client, rh, a, "3") if scope == "account" else _group_limit(client, rh, [a, b], "3")
    )
    other = a if scope == "account" else b
    await place(client, th, other, **_resting(x))
    resp = await client.post(f"/api/v1/accounts/{a}/orders", json=_bracket(x), headers=th)
    _refused(resp, limit, 4)  # 1 open + the entry and its two held legs
    order_id = (await client.get(f"/api/v1/accounts/{other}/orders", headers=th)).json()["items"][0]["id"]
    assert (await client.delete(f"/api/v1/accounts/{other}/orders/{order_id}", headers=th)).status_code == 200
    entry = await place(client, th, a, **_bracket(x))  # 0 + 3
    assert await _open_count(client, th, a) == 3
    # The held legs already count: no other order fits, and the entry's fill (the legs go live) stays at 3
    # (before, a desk at its limit saw the count pass it when a bracket's entry filled).
    _refused(await client.post(f"/api/v1/accounts/{other}/orders", json=_resting(x), headers=th), limit, 4)
    await set_price(client, admin_headers, x, "90")
    legs = (await client.get(f"/api/v1/accounts/{a}/orders/{entry['id']}?nested=true", headers=th)).json()
    assert legs["status"] == "filled" and {leg["status"] for leg in legs["legs"]} == {"accepted"}
    assert await _open_count(client, th, a) == 2
    await place(client, th, other, **_resting(x))  # back to 3: fits


@pytest.mark.parametrize("scope", ["account", "group"])
async def test_a_replace_at_the_limit_adds_no_order(client, admin_headers, make_user, scope):
    rh, th = (await make_user("risk_manager"))["headers"], (await make_user("trader"))["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    a, b = await make_account(client, th), await make_account(client, th)
    limit = await (
        _account_limit(client, rh, a, "2") if scope == "account" else _group_limit(client, rh, [a, b], "2")
    )
    first = await place(client, th, a, **_resting(x))
    await place(client, th, a if scope == "account" else b, **_resting(x, "40"))
    resp = await client.patch(
        f"/api/v1/accounts/{a}/orders/{first['id']}", json={"limit_price": "45"}, headers=th
    )
    assert resp.status_code == 200 and resp.json()["limit_price"] == "45", resp.text
    _refused(await client.post(f"/api/v1/accounts/{a}/orders", json=_resting(x), headers=th), limit, 3)
