"""Order operations on contingent orders and trailing stops: each combination answers a deliberate
status (never a 500) and leaves the group consistent."""

from __future__ import annotations

import pytest

from tests.integration.helpers import D, make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _setup(client, admin_headers, make_user):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, trader["headers"], cash="100000")
    return trader["headers"], symbol, acct


async def test_replace_on_group_members_and_trailing_stops(client, admin_headers, make_user):
    h, sym, acct = await _setup(client, admin_headers, make_user)
    entry = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95",
                        order_class="bracket", take_profit={"limit_price": "110"}, stop_loss={"stop_price": "90"})
    legs = {leg["leg"]: leg for leg in entry["legs"]}
    base = f"/api/v1/accounts/{acct}/orders"
    # a held leg is replaced only once its entry's fill activates it
    held = await client.patch(f"{base}/{legs['take_profit']['id']}", headers=h, json={"limit_price": "112"})
    assert held.status_code == 409 and held.json()["order_status"] == "held", held.text
    assert "held leg" in held.json()["detail"]
    # the entry's quantity is refused (its legs follow it), naming the field; nothing changes
    entry_qty = await client.patch(f"{base}/{entry['id']}", headers=h, json={"quantity": "12"})
    assert entry_qty.status_code == 422 and entry_qty.json()["errors"][0]["field"] == "quantity", entry_qty.text
    unchanged = (await client.get(f"{base}/{entry['id']}", headers=h)).json()
    assert (D(unchanged["quantity"]), unchanged["version"]) == (10, 1)
    # a trailing stop changes its trail amount, not its kind
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    trail = await place(client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=5, trail_price="2")
    ok = await client.patch(f"{base}/{trail['id']}", headers=h, json={"trail_price": "3"})
    assert ok.status_code == 200, ok.text
    assert D(ok.json()["trail_price"]) == 3 and ok.json()["version"] == 2
    kind = await client.patch(f"{base}/{trail['id']}", headers=h, json={"trail_percent": "1"})
    assert kind.status_code == 422, kind.text
    await set_price(client, admin_headers, sym, "104")  # the hwm moves: the stop follows the new trail
    after = (await client.get(f"{base}/{trail['id']}", headers=h)).json()
    assert D(after["hwm"]) == 104 and D(after["stop_price"]) == 101


async def test_closing_a_position_its_oco_exits_protect(client, admin_headers, make_user):
    h, sym, acct = await _setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    oco = await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity=10, order_class="oco",
                      take_profit={"limit_price": "120"}, stop_loss={"stop_price": "80"})
    base = f"/api/v1/accounts/{acct}"
    # the exits already cover the whole position: a reduce-only close would over-close it
    refused = await client.delete(f"{base}/positions/{sym}", headers=h)
    assert refused.status_code == 422, refused.text
    closed = await client.delete(f"{base}/positions?cancel_orders=true", headers=h)
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert [D(o["quantity"]) for o in body["orders"]] == [10] and body["failed"] == []
    group = (await client.get(f"{base}/orders/{oco['id']}?nested=true", headers=h)).json()
    assert group["status"] == "canceled" and {leg["status"] for leg in group["legs"]} == {"canceled"}
    positions = (await client.get(f"{base}/positions", headers=h)).json()["items"]
    assert all(D(p["quantity"]) == 0 for p in positions)
