"""Event-driven post-trade checks on real PostgreSQL: a price update re-checks exactly the accounts holding
the symbol, after its transaction commits, raising one alert per threshold crossing."""

from __future__ import annotations

import pytest

from tests.integration.helpers import account, make_account, make_market, place, set_price
from tests.integration.test_risk import add_limit, base

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _alerts(client, headers, acct) -> list[str]:
    items = (await client.get(f"{base(acct)}/alerts", headers=headers)).json()["items"]
    return [a["severity"] for a in reversed(items)]  # oldest first


async def test_price_updates_raise_one_alert_per_crossing(client, admin_headers, make_user):
    rm = await make_user("risk_manager")
    trader = await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    y = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    holder = await make_account(client, th)
    other = await make_account(client, th)  # holds Y only: X's prices never check it
    stopped = await make_account(client, th)
    await place(client, th, holder, symbol=x, side="buy", type="market", quantity="100")
    await place(client, th, other, symbol=y, side="buy", type="market", quantity="100")
    await place(client, th, stopped, symbol=x, side="buy", type="market", quantity="100")
    await add_limit(client, rm["headers"], holder, "max_gross_exposure", "12000")  # 10,000 = 83%
    await add_limit(client, rm["headers"], other, "max_gross_exposure", "5000")  # 200%, but Y never moves
    await add_limit(client, rm["headers"], stopped, "max_daily_loss", "500")

    expected = []
    for price, alert in (
        ("100", "warning"),  # 83%: crosses warn_at_pct 80
        ("101", None),  # 84%: still warning
        ("121", "critical"),  # 100.8%
        ("122", None),  # still critical
        ("110", None),  # 91.7%: stays critical without a new alert (hysteresis)
        ("90", None),  # 75%: below the warning level, re-armed
        ("97", "warning"),  # 80.8%: a new crossing
    ):
        await set_price(client, admin_headers, x, price)
        if alert:
            expected.append(alert)
        assert await _alerts(client, th, holder) == expected, price
    assert await _alerts(client, th, other) == []
    # the loss stop: the fall to 90 lost 1,000 on the day; the account went reduce_only at that update
    assert await _alerts(client, th, stopped) == ["critical"]
    assert (await account(client, th, stopped))["trading_state"] == "reduce_only"
    violations = (
        await client.get(f"{base(stopped)}/violations", params={"phase": "post_trade"}, headers=th)
    ).json()["items"]
    assert violations and all(v["limit_type"] == "max_daily_loss" for v in violations)
