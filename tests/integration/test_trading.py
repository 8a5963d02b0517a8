"""Order types x time-in-force against scripted price paths; exact Decimal results (DOMAIN.md)."""

from __future__ import annotations

import uuid

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

# taker 0.001, maker 0.0005, no slippage unless stated
TAKER = D("0.001")
MAKER = D("0.0005")


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


async def setup(client, admin_headers, make_user, *, price="100", cash="100000", allow_short=False, **market):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price=price, **market)
    acct = await make_account(client, trader["headers"], cash=cash, allow_short=allow_short)
    return trader["headers"], symbol, acct


async def test_market_buy_fills_at_last_with_taker_fee(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)
    assert o["status"] == "filled" and D(o["filled_quantity"]) == 10 and D(o["avg_fill_price"]) == 100
    fee = D("1000") * TAKER
    assert D(o["fees"]) == fee
    a = await account(client, h, acct)
    assert D(a["cash"]) == D("100000") - 1000 - fee
    assert D(a["equity"]) == D(a["cash"]) + 1000
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["quantity"]) == 10 and D(pos["avg_entry_price"]) == 100
    assert await events(client, h, acct, o["id"]) == [
        ("created", None, "new"), ("accepted", "new", "accepted"), ("filled", "accepted", "filled")
    ]


async def test_market_slippage_moves_against_taker_and_rounds_to_tick(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, price="100.00", slippage="15")
    buy = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    assert D(buy["avg_fill_price"]) == D("100.15")
    sell = await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)
    assert D(sell["avg_fill_price"]) == D("99.85")
    # realised (99.85 - 100.15) * 5 = -1.5
    a = await account(client, h, acct)
    assert D(a["realized_pnl"]) == D("-1.50")


async def test_resting_limit_fills_at_its_limit_as_maker(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95")
    assert o["status"] == "accepted"
    a = await account(client, h, acct)
    reserved = D("950") + D("950") * TAKER  # reserved at the worst fee rate
    assert D(a["reserved_cash"]) == reserved and D(a["buying_power"]) == D("100000") - reserved
    await set_price(client, admin_headers, sym, "96")
    assert (await order(client, h, acct, o["id"]))["status"] == "accepted"
    await set_price(client, admin_headers, sym, "94.50")  # crosses: fills at the limit, not at 94.50
    filled = await order(client, h, acct, o["id"])
    assert filled["status"] == "filled" and D(filled["avg_fill_price"]) == 95
    assert D(filled["fees"]) == D("950") * MAKER
    a = await account(client, h, acct)
    assert D(a["reserved_cash"]) == 0
    assert D(a["cash"]) == D("100000") - 950 - D("950") * MAKER


async def test_marketable_limit_fills_at_last_price_not_worse(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=3, limit_price="101")
    assert o["status"] == "filled" and D(o["avg_fill_price"]) == 100 and D(o["fees"]) == D("300") * TAKER


async def test_placement_events_carry_their_fill_data_and_reasons(client, admin_headers, make_user):
    """Every column of the order_events rows a placement writes (one JSON array in one statement)."""
    h, sym, acct = await setup(client, admin_headers, make_user)

    async def full_events(order_id: str) -> list[dict]:
        resp = await client.get(f"/api/v1/accounts/{acct}/orders/{order_id}/events", headers=h)
        assert resp.status_code == 200, resp.text
        return [{k: e[k] for k in ("type", "status_from", "status_to", "reason", "fill_id", "data")}
                for e in resp.json()["items"]]

    o = await place(client, h, acct, symbol=sym, side="buy", type="stop", quantity=3, stop_price="95")
    fills = (await client.get(f"/api/v1/accounts/{acct}/orders/{o['id']}/fills", headers=h)).json()["items"]
    assert len(fills) == 1
    # Time-ordered ids (app/lib/ids.py): consecutive orders and fills sit together in their indexes.
    assert uuid.UUID(o["id"]).version == 7 and uuid.UUID(fills[0]["id"]).version == 7
    fee = D(fills[0]["fee"])
    evs = await full_events(o["id"])
    assert evs[:3] == [
        {"type": "created", "status_from": None, "status_to": "new", "reason": None, "fill_id": None, "data": None},
        {"type": "accepted", "status_from": "new", "status_to": "accepted", "reason": None, "fill_id": None, "data": None},
        {"type": "triggered", "status_from": "accepted", "status_to": "accepted", "reason": None, "fill_id": None,
         "data": {"last_price": "100"}},
    ]
    filled = evs[3]
    assert {k: filled[k] for k in ("type", "status_from", "status_to", "reason", "fill_id")} == {
        "type": "filled", "status_from": "accepted", "status_to": "filled", "reason": None, "fill_id": fills[0]["id"]}
    assert filled["data"]["liquidity"] == "taker" and D(filled["data"]["quantity"]) == 3
    assert D(filled["data"]["price"]) == D(fills[0]["price"]) and D(filled["data"]["fee"]) == fee
    assert D(filled["data"]["realized_pnl"]) == 0
    assert len(evs) == 4

    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="99", time_in_force="ioc")
    assert (await full_events(o["id"]))[2:] == [{
        "type": "canceled", "status_from": "accepted", "status_to": "canceled", "reason": "ioc: remainder canceled",
        "fill_id": None, "data": None}]


async def test_stop_buy_triggers_at_or_above_and_fills_as_market(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="stop", quantity=2, stop_price="105")
    assert o["status"] == "accepted"
    await set_price(client, admin_headers, sym, "104.99")
    assert (await order(client, h, acct, o["id"]))["status"] == "accepted"
    await set_price(client, admin_headers, sym, "105")
    done = await order(client, h, acct, o["id"])
    assert done["status"] == "filled" and D(done["avg_fill_price"]) == 105
    evs = await events(client, h, acct, o["id"])
    assert [e[0] for e in evs] == ["created", "accepted", "triggered", "filled"]


async def test_stop_limit_sell_triggers_then_rests_at_limit(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=4)
    o = await place(client, h, acct, symbol=sym, side="sell", type="stop_limit", quantity=4, stop_price="90", limit_price="89")
    await set_price(client, admin_headers, sym, "88")  # triggers (<= 90) but 88 < limit 89: rests
    mid = await order(client, h, acct, o["id"])
    assert mid["status"] == "accepted"
    await set_price(client, admin_headers, sym, "89.50")  # touches the limit from below: fills at 89 (maker)
    done = await order(client, h, acct, o["id"])
    assert done["status"] == "filled" and D(done["avg_fill_price"]) == 89
    assert D(done["fees"]) == D("356") * MAKER


async def test_partial_fills_with_volume_and_time_priority(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    first = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="99")
    second = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="99")
    await set_price(client, admin_headers, sym, "99", volume="15")
    a, b = await order(client, h, acct, first["id"]), await order(client, h, acct, second["id"])
    assert a["status"] == "filled" and D(a["filled_quantity"]) == 10
    assert b["status"] == "partially_filled" and D(b["filled_quantity"]) == 5
    await set_price(client, admin_headers, sym, "99", volume="100")
    assert (await order(client, h, acct, second["id"]))["status"] == "filled"
    evs = await events(client, h, acct, second["id"])
    assert [e[0] for e in evs] == ["created", "accepted", "partially_filled", "filled"]


async def test_ioc_fills_what_it_can_and_cancels_rest(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="99", time_in_force="ioc")
    assert o["status"] == "canceled" and D(o["filled_quantity"]) == 0  # not marketable at 100
    o2 = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="100", time_in_force="ioc")
    assert o2["status"] == "filled"
    a = await account(client, h, acct)
    assert D(a["reserved_cash"]) == 0


async def test_fok_is_all_or_nothing(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=5, limit_price="99", time_in_force="fok")
    assert o["status"] == "canceled" and D(o["filled_quantity"]) == 0
    o2 = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5, time_in_force="fok")
    assert o2["status"] == "filled"


async def test_day_orders_expire_at_session_close(client, admin_headers, make_user, db_engine):
    from datetime import timedelta

    from app.domain.trading.services import expire_day_orders
    from app.lib.db import utcnow

    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90", time_in_force="day")
    assert o["status"] == "accepted"
    async with db_engine.connect() as conn:
        assert await expire_day_orders(conn, utcnow()) == 0 or (await order(client, h, acct, o["id"]))["status"] == "accepted"
        n = await expire_day_orders(conn, utcnow() + timedelta(days=8))
    assert n >= 1
    done = await order(client, h, acct, o["id"])
    assert done["status"] == "expired"
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


async def test_a_day_order_expires_at_its_exchanges_next_close_by_the_market_clock(
    client, admin_headers, make_user
):
    # A weekday exchange in Los Angeles: whatever the day and hour the test runs (a weekend, after the
    # close), a day order expires when the session open now or the next one ends, the clock's next close
    # (before, at 16:00 local of the same calendar day, even on a Sunday).
    from datetime import datetime
    from zoneinfo import ZoneInfo

    code = f"LA{uuid.uuid4().hex[:6].upper()}"
    exchange = {"code": code, "name": "LA", "maker_fee_rate": "0", "taker_fee_rate": "0",
                "timezone": "America/Los_Angeles", "session_open": "09:30:00", "session_close": "16:00:00",
                "session_days": [1, 2, 3, 4, 5]}
    assert (await client.post("/api/v1/exchanges", json=exchange, headers=admin_headers)).status_code == 201
    sym = f"LAS{uuid.uuid4().hex[:6].upper()}"
    inst = {"symbol": sym, "exchange": code, "base_asset": "L", "quote_asset": "USD", "tick_size": "0.01",
            "lot_size": "1", "min_quantity": "1"}
    assert (await client.post("/api/v1/instruments", json=inst, headers=admin_headers)).status_code == 201
    await set_price(client, admin_headers, sym, "100")
    trader = await make_user("trader")
    acct = await make_account(client, trader["headers"])
    o = await place(client, trader["headers"], acct, symbol=sym, side="buy", type="limit", quantity=1,
                    limit_price="90", time_in_force="day")
    clock = (await client.get("/api/v1/market/clock", headers=trader["headers"])).json()
    [ours] = [e for e in clock["exchanges"] if e["code"] == code]
    assert ours["next_close"] is not None
    expires = datetime.fromisoformat(o["expires_at"].replace("Z", "+00:00"))
    assert expires == datetime.fromisoformat(ours["next_close"].replace("Z", "+00:00")), (o, ours)
    assert expires.astimezone(ZoneInfo("America/Los_Angeles")).isoweekday() <= 5


async def test_cancel_and_409_when_final(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{o['id']}", headers=h)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{o['id']}", headers=h)
    assert resp.status_code == 409
    assert D((await account(client, h, acct))["reserved_cash"]) == 0


async def test_average_cost_and_realised_pnl(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, taker="0", maker="0")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)  # @100
    await set_price(client, admin_headers, sym, "110")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=10)  # @110 -> avg 105
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["avg_entry_price"]) == 105 and D(pos["unrealized_pnl"]) == 100
    await set_price(client, admin_headers, sym, "120")
    await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)  # realise (120-105)*5
    a = await account(client, h, acct)
    assert D(a["realized_pnl"]) == 75
    assert D(a["cash"]) == D("100000") - 1000 - 1100 + 600
    assert D(a["equity"]) == D(a["cash"]) + 15 * 120


async def test_bad_orders_are_422_and_write_nothing(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, tick="0.05", lot="10", min_qty="10")
    cases = [
        ({"symbol": sym, "side": "buy", "type": "limit", "quantity": "10", "limit_price": "99.97"}, 422, "limit_price"),
        ({"symbol": sym, "side": "buy", "type": "market", "quantity": "15"}, 422, "quantity"),
        ({"symbol": "NOPE", "side": "buy", "type": "market", "quantity": "10"}, 422, "symbol"),
        ({"symbol": sym, "side": "sell", "type": "market", "quantity": "10"}, 422, "quantity"),
        ({"symbol": sym, "side": "buy", "type": "market", "quantity": "0"}, 400, "quantity"),
        ({"symbol": sym, "side": "buy", "type": "market", "quantity": "-10"}, 400, "quantity"),
        ({"symbol": sym, "side": "buy", "type": "limit", "quantity": "10"}, 400, "limit_price"),
        ({"symbol": sym, "side": "buy", "type": "market", "quantity": "100000"}, 422, "quantity"),
    ]
    for body, status, field in cases:
        resp = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
        assert resp.status_code == status, (body, resp.text)
        problem = resp.json()
        assert problem["type"] and problem["title"] and problem["detail"]
        assert any(field in e["field"] for e in problem.get("errors", [])), (body, problem)
    resp = await client.patch(f"/api/v1/instruments/{sym}", json={"status": "halted"}, headers=admin_headers)
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders", json={"symbol": sym, "side": "buy", "type": "market", "quantity": "10"}, headers=h
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/instrument-halted")
    listed = await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert listed.json()["items"] == []
    a = await account(client, h, acct)
    assert D(a["cash"]) == D("100000") and D(a["reserved_cash"]) == 0


async def test_short_selling_only_when_allowed(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True, taker="0", maker="0")
    o = await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)
    assert o["status"] == "filled"
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["quantity"]) == -5
    await set_price(client, admin_headers, sym, "90")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=8)  # covers 5 (+50), opens 3 long @90
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["quantity"]) == 3 and D(pos["avg_entry_price"]) == 90
    assert D((await account(client, h, acct))["realized_pnl"]) == 50


async def test_orders_list_keyset_pagination_and_filters(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user)
    ids = []
    for i in range(7):
        o = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price=str(90 + i))
        ids.append(o["id"])
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=1)
    seen, cursor = [], None
    while True:
        url = f"/api/v1/accounts/{acct}/orders?limit=3&status=accepted" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url, headers=h)).json()
        seen += [o["id"] for o in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, every accepted order exactly once
    filled = (await client.get(f"/api/v1/accounts/{acct}/orders?status=filled", headers=h)).json()["items"]
    assert len(filled) == 1 and filled[0]["type"] == "market"
    assert (await client.get(f"/api/v1/accounts/{acct}/orders?side=sell", headers=h)).json()["items"] == []
    bad = await client.get(f"/api/v1/accounts/{acct}/orders?cursor=garbage!!", headers=h)
    assert bad.status_code == 400
    assert (await client.get(f"/api/v1/accounts/{acct}/orders?limit=501", headers=h)).status_code == 400


async def test_a_short_marked_at_its_entry_shows_a_zero_pnl_without_a_sign(client, admin_headers, make_user):
    h, sym, acct = await setup(client, admin_headers, make_user, allow_short=True, taker="0", maker="0")
    await place(client, h, acct, symbol=sym, side="sell", type="market", quantity=5)
    pos = (await positions(client, h, acct))[sym]
    assert D(pos["quantity"]) == -5 and pos["unrealized_pnl"] in ("0", "0.00"), pos
    assert not (await account(client, h, acct))["unrealized_pnl"].startswith("-"), "negative zero"
