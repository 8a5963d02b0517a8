"""Two API processes posting alternating prices through OCO groups and brackets: exactly one exit per group,
never more than its entry filled, and the position ends flat (real granian processes, one database)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.integration.helpers import D, make_account, make_market, place, positions

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_alternating_prices_from_two_processes_fill_exactly_one_exit_per_group(
    client, live, admin_headers, make_user
):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100.00")
    acct = await make_account(client, h, cash="1000000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=30)
    groups = []
    for k in range(1, 31):
        step = Decimal(k) / 10
        o = await place(
            client,
            h,
            acct,
            symbol=sym,
            side="sell",
            type="limit",
            quantity=1,
            order_class="oco",
            take_profit={"limit_price": str(100 + step)},
            stop_loss={"stop_price": str(100 - step)},
        )
        groups.append(o)
    # brackets whose entries fill on the way and whose exits then race too
    brackets = [
        await place(
            client,
            h,
            acct,
            symbol=sym,
            side="buy",
            type="limit",
            quantity=2,
            limit_price=str(100 - k),
            order_class="bracket",
            take_profit={"limit_price": str(101 + k)},
            stop_loss={"stop_price": str(99 - k - Decimal("0.5"))},
        )
        for k in (1, 2)
    ]
    prices = []
    for k in range(1, 40):
        x = Decimal(k) / 10
        prices += [str(100 + x), str(100 - x)]
    prices += ["96", "105", "94", "104", "95.50", "106"]

    async def post(i, price):
        resp = await live[i % 2].post(
            f"/api/v1/instruments/{sym}/price", json={"price": price}, headers=admin_headers
        )
        assert resp.status_code == 200, resp.text

    for batch in range(0, len(prices), 8):  # 8 in flight at a time, alternating between the processes
        await asyncio.gather(*[post(i, p) for i, p in enumerate(prices[batch : batch + 8], start=batch)])

    for o in groups:
        resp = await client.get(f"/api/v1/accounts/{acct}/orders/{o['id']}?nested=true", headers=h)
        tp = resp.json()
        sl = tp["legs"][0]
        filled = sorted((tp["status"], sl["status"]))
        assert filled == ["canceled", "filled"], (tp, sl)
        assert D(tp["filled_quantity"]) + D(sl["filled_quantity"]) == 1
    for b in brackets:
        entry = (await client.get(f"/api/v1/accounts/{acct}/orders/{b['id']}?nested=true", headers=h)).json()
        exits = sum(D(leg["filled_quantity"]) for leg in entry["legs"])
        assert exits <= D(entry["filled_quantity"])
        assert entry["status"] == "filled" and exits == 2, entry
    assert D((await positions(client, h, acct))[sym]["quantity"]) == 0
