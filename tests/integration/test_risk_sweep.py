"""The set-based monitoring sweep on real PostgreSQL: the same decisions as the per-account monitor,
edge-triggered alerts, and races with other checkers and with orders between its read and its write."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.domain.accounts.models import TradingStateChange
from app.domain.risk import monitoring
from app.domain.risk.services import monitor_account, monitor_all
from tests.integration.helpers import account, place, set_price
from tests.integration.test_risk import add_limit, base, setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _desk(client, admin_headers, make_user, rh):
    """An account long 100 at 100 that lost 200 (price 98): daily loss 200 over a 150 stop, gross
    exposure 9,800 at 85% of an 11,529.41 limit (warning), a position limit far away (ok)."""
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    await place(client, trader["headers"], acct, symbol=symbol, side="buy", type="market", quantity=100)
    await set_price(client, admin_headers, symbol, "98")
    # limits after the price: the price's own post-trade check (risk/post_trade.py) has nothing to check
    await add_limit(client, rh, acct, "max_daily_loss", 150)
    await add_limit(client, rh, acct, "max_gross_exposure", "11529.41")
    await add_limit(client, rh, acct, "max_position_quantity", 1000)
    return trader, symbol, acct


async def _effects(client, headers, acct) -> dict:
    alerts = (await client.get(f"{base(acct)}/alerts", headers=headers)).json()["items"]
    violations = (
        await client.get(f"{base(acct)}/violations", params={"phase": "post_trade"}, headers=headers)
    ).json()["items"]
    limits = (await client.get(f"{base(acct)}/limits", headers=headers)).json()["items"]
    return {
        "alerts": sorted((a["limit_type"], a["severity"], a["utilisation"], a["message"]) for a in alerts),
        "violations": sorted(
            (v["limit_type"], v["limit_value"], v["would_be"], v["detail"]["message"], v["detail"]["equity"])
            for v in violations
        ),
        "alert_levels": sorted((lim["limit_type"], lim["alert_level"]) for lim in limits),
        "trading_state": (await account(client, headers, acct))["trading_state"],
    }


async def test_sweep_decides_like_the_per_account_monitor(client, admin_headers, make_user, db_engine):
    rm = await make_user("risk_manager")
    t1, _, swept = await _desk(client, admin_headers, make_user, rm["headers"])
    t2, _, single = await _desk(client, admin_headers, make_user, rm["headers"])
    async with db_engine.connect() as conn:
        first = await monitoring.sweep_batch(conn, [swept])
        await monitor_account(conn, single)
    assert (first.accounts, first.violations, first.alerts, first.reduce_only, first.stale) == (
        1,
        1,
        2,
        1,
        [],
    )
    a, b = await _effects(client, t1["headers"], swept), await _effects(client, t2["headers"], single)
    assert a == b
    assert [x[:2] for x in a["alerts"]] == [("max_daily_loss", "critical"), ("max_gross_exposure", "warning")]
    assert a["trading_state"] == "reduce_only"
    async with db_engine.connect() as conn:
        changes = (
            await conn.execute(
                select(
                    TradingStateChange.account_id, TradingStateChange.actor_id, TradingStateChange.new_state
                ).where(TradingStateChange.account_id == swept)
            )
        ).all()
        assert [(c.actor_id, c.new_state) for c in changes] == [(None, "reduce_only")]
        # the second pass: a violation again (the record of what each check saw), no new alert
        second = await monitoring.sweep_batch(conn, [swept])
        await monitor_account(conn, single)
    assert (second.violations, second.alerts, second.reduce_only) == (1, 0, 0)
    a, b = await _effects(client, t1["headers"], swept), await _effects(client, t2["headers"], single)
    assert a == b and len(a["alerts"]) == 2 and len(a["violations"]) == 2


async def test_a_checker_racing_the_sweep_raises_the_alert_once(
    client, admin_headers, make_user, db_engine, monkeypatch
):
    """The per-account monitor raises the alert between the sweep's read and its write: the sweep's
    compare-and-set transition matches nothing, so the crossing is alerted once."""
    rm = await make_user("risk_manager")
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    await place(client, trader["headers"], acct, symbol=symbol, side="buy", type="market", quantity=100)
    await set_price(client, admin_headers, symbol, "98")
    await add_limit(client, rm["headers"], acct, "max_gross_exposure", "11529.41")  # 85%: warning

    real_load = monitoring.load_portfolios

    async def load_then_race(conn, ids, **kw):
        out = await real_load(conn, ids, **kw)
        async with db_engine.connect() as other:
            await monitor_account(other, acct)
        return out

    monkeypatch.setattr(monitoring, "load_portfolios", load_then_race)
    async with db_engine.connect() as conn:
        result = await monitoring.sweep_batch(conn, [acct])
    assert result.alerts == 0 and result.stale == []
    effects = await _effects(client, trader["headers"], acct)
    assert [x[:2] for x in effects["alerts"]] == [("max_gross_exposure", "warning")]


async def test_an_account_changed_after_the_read_is_checked_again_on_its_own(
    client, admin_headers, make_user, db_engine, monkeypatch
):
    rm = await make_user("risk_manager")
    trader, symbol, acct = await _desk(client, admin_headers, make_user, rm["headers"])
    real_load = monitoring.load_portfolios

    async def load_then_trade(conn, ids, **kw):
        out = await real_load(conn, ids, **kw)
        # a sale moves the account row (and cuts gross exposure to 49%, under the warning level)
        await place(client, trader["headers"], acct, symbol=symbol, side="sell", type="market", quantity=50)
        return out

    monkeypatch.setattr(monitoring, "load_portfolios", load_then_trade)
    async with db_engine.connect() as conn:
        swept = await monitoring.sweep_batch(conn, [acct])
        assert swept.stale == [uuid.UUID(acct)] and swept.accounts == 0 and swept.alerts == 0
        # through the job's entry point: the stale account goes through monitor_account, on current state
        monkeypatch.setattr(
            monitoring, "load_portfolios", _trade_once_after(real_load, client, trader, acct, symbol)
        )
        result = await monitor_all(conn, batch_size=1000)
    assert result["failed"] == 0 and result["accounts"] >= 1
    effects = await _effects(client, trader["headers"], acct)
    # decided after the second sale: gross 24 * 98 = 2,352 (20%), no warning; the loss stop still breached
    assert [x[:2] for x in effects["alerts"]] == [("max_daily_loss", "critical")]
    assert effects["trading_state"] == "reduce_only"


def _trade_once_after(real_load, client, trader, acct, symbol):
    """load_portfolios that sells 26 more after its first read."""
    done = []

    async def load(conn, ids, **kw):
        out = await real_load(conn, ids, **kw)
        if not done:
            done.append(True)
            await place(
                client, trader["headers"], acct, symbol=symbol, side="sell", type="market", quantity=26
            )
        return out

    return load
