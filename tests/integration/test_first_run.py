"""What a new user meets first: a quiet CLI, a `tradedesk check` that checks the embedded services, and
account performance figures from the first minute."""

from __future__ import annotations

import pytest

from tests.integration.helpers import D, account, make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_new_account_performance_has_figures_before_any_scheduled_snapshot(client, admin_headers, make_user):
    user = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, user["headers"], cash="10000")
    url = f"/api/v1/accounts/{acct}/performance"
    body = (await client.get(url, headers=user["headers"])).json()
    # the opening equity, then today's close valued now: one period, flat
    assert body["points"] == 2 and body["periods"] == 1, body
    assert body["total_return"] == 0.0 and body["max_drawdown"] == 0.0 and body["best_period"] == 0.0

    await place(client, user["headers"], acct, symbol=symbol, side="buy", type="market", quantity=10)
    await set_price(client, admin_headers, symbol, "110")
    equity = D((await account(client, user["headers"], acct))["equity"])
    body = (await client.get(url, headers=user["headers"])).json()
    assert body["points"] == 2 and body["periods"] == 1, body
    assert body["total_return"] == pytest.approx(float(equity / D("10000") - 1), abs=1e-12)
    assert body["total_return"] > 0
