"""Risk management through the API on real PostgreSQL: limits, pre-trade checks on real orders, trading
state, concurrency (one and two app instances), metrics against numpy, monitoring, alerts, jobs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.domain.accounts.models import EquitySnapshot, TradingStateChange
from app.domain.risk import tasks
from tests.conftest import make_settings
from tests.integration.helpers import D, account, make_account, make_market, place, positions, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


def base(acct: str) -> str:
    return f"/api/v1/accounts/{acct}/risk"


async def add_limit(client, headers, acct: str, limit_type: str, value, expect: int = 201, **extra) -> dict:
    resp = await client.post(
        f"{base(acct)}/limits", json={"limit_type": limit_type, "value": str(value), **extra}, headers=headers
    )
    assert resp.status_code == expect, resp.text
    return resp.json()


async def monitor(client, headers, acct: str) -> dict:
    resp = await client.post(f"{base(acct)}/monitor", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def metrics(client, headers, acct: str, **params) -> dict:
    resp = await client.get(f"{base(acct)}/metrics", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def setup(
    client, admin_headers, make_user, *, price: str | None = "100", cash="100000", allow_short=False
):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price=price, taker="0", maker="0")
    acct = await make_account(client, trader["headers"], cash=cash, allow_short=allow_short)
    return trader, symbol, acct


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def risk_manager(make_user):
    return await make_user("risk_manager")


# ------------------------------------------------------------------------------------------- limits, roles


async def test_limit_crud_roles_validation_and_audit(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    th, rh = trader["headers"], risk_manager["headers"]
    other = await make_user("trader")

    # the owner reads but may not write; anybody else does not learn the account exists
    await add_limit(client, th, acct, "max_order_quantity", 10, expect=403)
    await add_limit(client, other["headers"], acct, "max_order_quantity", 10, expect=404)
    assert (await client.get(f"{base(acct)}/limits", headers=other["headers"])).status_code == 404

    created = await add_limit(client, rh, acct, "max_order_quantity", 10)
    assert created["value"] == "10" and created["warn_at_pct"] == "80" and created["symbol"] is None
    assert (
        created["enabled"] is True and created["auto_reduce_only"] is True and created["alert_level"] is None
    )
    lid = created["id"]
    scoped = await add_limit(
        client, admin_headers, acct, "max_position_quantity", "5.5", symbol=symbol, warn_at_pct="90"
    )
    assert scoped["symbol"] == symbol and scoped["warn_at_pct"] == "90"

    listed = await client.get(f"{base(acct)}/limits", headers=th)
    assert listed.status_code == 200
    assert [x["id"] for x in listed.json()["items"]] == [scoped["id"], lid]  # newest first
    page = (await client.get(f"{base(acct)}/limits", params={"limit": 1}, headers=th)).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (
        await client.get(f"{base(acct)}/limits", params={"cursor": page["next_cursor"]}, headers=th)
    ).json()
    assert [x["id"] for x in rest["items"]] == [lid] and rest["next_cursor"] is None
    assert (await client.get(f"{base(acct)}/limits/{lid}", headers=th)).json()["value"] == "10"
    assert (await client.get(f"{base(acct)}/limits/{lid}", headers=other["headers"])).status_code == 404
    assert (await client.get(f"{base(acct)}/limits/{uuid.uuid4()}", headers=th)).status_code == 404

    assert (
        await client.patch(f"{base(acct)}/limits/{lid}", json={"value": "1"}, headers=th)
    ).status_code == 403
    assert (await client.delete(f"{base(acct)}/limits/{lid}", headers=th)).status_code == 403
    assert (await client.delete(f"{base(acct)}/limits/{lid}", headers=other["headers"])).status_code == 404

    resp = await client.patch(
        f"{base(acct)}/limits/{lid}", json={"value": "20", "warn_at_pct": "75"}, headers=rh
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == "20" and resp.json()["warn_at_pct"] == "75"

    # domain rules are 422 with the field named; unrepresentable numbers are 400
    bad = [
        ({"limit_type": "max_nonsense", "value": "1"}, 422, "limit_type"),
        ({"limit_type": "max_gross_exposure", "value": "1", "symbol": symbol}, 422, "symbol"),
        ({"limit_type": "max_open_orders", "value": "2.5"}, 422, "value"),
        ({"limit_type": "max_order_quantity", "value": "1", "symbol": "NOSUCHSYM"}, 422, "symbol"),
        ({"limit_type": "max_order_quantity", "value": "-1"}, 400, "value"),
        ({"limit_type": "max_order_quantity", "value": "1", "warn_at_pct": "150"}, 400, "warn_at_pct"),
        ({"limit_type": "max_order_quantity", "value": "1", "colour": "red"}, 400, "colour"),
    ]
    for body, status, field in bad:
        resp = await client.post(f"{base(acct)}/limits", json=body, headers=rh)
        assert resp.status_code == status, (body, resp.text)
        assert any(field in e["field"] for e in resp.json()["errors"]), (body, resp.json())
    resp = await client.patch(f"{base(acct)}/limits/{lid}", json={"symbol": "NOSUCHSYM"}, headers=rh)
    assert resp.status_code == 422
    resp = await client.patch(f"{base(acct)}/limits/{lid}", json={"limit_type": "max_leverage"}, headers=rh)
    assert resp.status_code == 400

    assert (await client.delete(f"{base(acct)}/limits/{lid}", headers=rh)).status_code == 204
    assert (await client.get(f"{base(acct)}/limits/{lid}", headers=th)).status_code == 404
    assert (await client.delete(f"{base(acct)}/limits/{lid}", headers=rh)).status_code == 404

    # the audit trail outlives the limit: who, what, old -> new with decimals as strings
    resp = await client.get(f"{base(acct)}/limits/{lid}/audit", headers=th)
    assert resp.status_code == 200, resp.text
    trail = resp.json()["items"]
    assert [a["action"] for a in trail] == ["delete", "update", "create"]
    assert all(a["actor_id"] == risk_manager["id"] for a in trail)
    delete_, update_, create_ = trail
    assert create_["old"] is None and create_["new"] == {
        "limit_type": "max_order_quantity",
        "value": "10",
        "symbol": None,
        "warn_at_pct": "80",
        "enabled": True,
        "auto_reduce_only": True,
    }
    assert update_["old"]["value"] == "10" and update_["new"]["value"] == "20"
    assert update_["old"]["warn_at_pct"] == "80" and update_["new"]["warn_at_pct"] == "75"
    assert delete_["old"]["value"] == "20" and delete_["new"] is None
    assert (await client.get(f"{base(acct)}/limits/{lid}/audit", headers=other["headers"])).status_code == 404
    assert (await client.get(f"{base(acct)}/limits/{uuid.uuid4()}/audit", headers=th)).status_code == 404
    scoped_trail = (await client.get(f"{base(acct)}/limits/{scoped['id']}/audit", headers=rh)).json()["items"]
    assert len(scoped_trail) == 1 and scoped_trail[0]["actor_id"] != risk_manager["id"]  # made by the admin


async def test_patch_without_changes_writes_no_audit_and_disable_rearms(
    client, admin_headers, make_user, risk_manager
):
    _, _, acct = await setup(client, admin_headers, make_user)
    rh = risk_manager["headers"]
    lim = await add_limit(client, rh, acct, "max_open_orders", 3)
    resp = await client.patch(f"{base(acct)}/limits/{lim['id']}", json={"value": "3.0"}, headers=rh)
    assert resp.status_code == 200 and resp.json()["value"] == "3"
    resp = await client.patch(f"{base(acct)}/limits/{lim['id']}", json={"enabled": False}, headers=rh)
    assert resp.json()["enabled"] is False
    trail = (await client.get(f"{base(acct)}/limits/{lim['id']}/audit", headers=rh)).json()["items"]
    assert [a["action"] for a in trail] == ["update", "create"]
    assert trail[0]["old"]["enabled"] is True and trail[0]["new"]["enabled"] is False


# --------------------------------------------------------------------------- every limit type, real orders


def buy(qty, **kw) -> dict:
    return {"symbol": None, "side": "buy", "type": "market", "quantity": str(qty), **kw}


def sell(qty, **kw) -> dict:
    return {"symbol": None, "side": "sell", "type": "market", "quantity": str(qty), **kw}


def resting(qty) -> dict:
    return {"symbol": None, "side": "buy", "type": "limit", "quantity": str(qty), "limit_price": "90"}


# limit type -> (limit value, cash, steps that must all pass (orders, or ("price", p)), the order that must
# be rejected, and the exact would_be). Fees are zero, the price starts at 100, no slippage.
CASES = {
    "max_order_notional": ("1000", "100000", [buy(10)], buy(11), "1100"),
    "max_order_quantity": ("10", "100000", [buy(10)], buy(11), "11"),
    "max_position_quantity": ("15", "100000", [buy(10), buy(5)], buy(1), "16"),
    "max_position_notional": ("1500", "100000", [buy(15)], buy(1), "1600"),
    "max_gross_exposure": ("2000", "100000", [buy(20)], buy(1), "2100"),
    "max_leverage": ("0.5", "10000", [buy(50)], buy(1), "0.51"),
    "max_concentration_pct": ("30", "10000", [buy(30)], buy(1), "31"),
    "max_open_orders": ("2", "100000", [resting(1), resting(1)], resting(1), "3"),
    "max_orders_per_minute": ("3", "100000", [buy(1), buy(1), buy(1)], buy(1), "4"),
    # loss stops: a loss of 499 still allows more risk, 500.01 does not
    "max_daily_loss": (
        "500",
        "100000",
        [buy(100), ("price", "95.01"), buy(1), ("price", "95")],
        buy(1),
        "500.01",
    ),
    # peak 100000; equity 95005 (4.995%) passes, 94995.99 (5.00401%) blocks
    "max_drawdown_pct": (
        "5",
        "100000",
        [buy(900), ("price", "94.45"), buy(1), ("price", "94.44")],
        buy(1),
        "5.00401",
    ),
}


@pytest.mark.parametrize("limit_type", list(CASES))
async def test_each_limit_type_blocks_just_over_and_passes_just_under(
    client, admin_headers, make_user, risk_manager, limit_type
):
    value, cash, steps, rejected, would_be = CASES[limit_type]
    trader, symbol, acct = await setup(client, admin_headers, make_user, cash=cash)
    h = trader["headers"]
    # no automatic reduce_only: a price step's post-trade check would switch the account for a breached
    # stop, and the order would then be rejected by its trading state instead of by this limit
    lim = await add_limit(client, risk_manager["headers"], acct, limit_type, value, auto_reduce_only=False)
    for step in steps:
        if isinstance(step, tuple):
            await set_price(client, admin_headers, symbol, step[1])
        else:
            await place(client, h, acct, **{**step, "symbol": symbol})
    body = {**rejected, "symbol": symbol, "time_in_force": "gtc"}

    check = await client.post(f"/api/v1/accounts/{acct}/orders/validate", json=body, headers=h)
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=h)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"].endswith("/risk-limit-breached")
    assert problem["limit_id"] == lim["id"] and problem["limit_type"] == limit_type
    assert D(problem["limit_value"]) == D(value) and D(problem["would_be"]) == D(would_be), problem
    assert check.status_code == 422
    keys = ("type", "title", "status", "detail", "limit_id", "limit_type", "limit_value", "would_be")
    assert {k: check.json()[k] for k in keys} == {k: problem[k] for k in keys}

    resp = await client.get(f"{base(acct)}/violations", params={"phase": "pre_trade"}, headers=h)
    violations = resp.json()["items"]
    assert len(violations) == 2  # validate and place
    newest = violations[0]
    assert newest["phase"] == "pre_trade" and newest["limit_id"] == lim["id"]
    assert newest["limit_type"] == limit_type and D(newest["would_be"]) == D(would_be)
    assert newest["detail"]["dry_run"] is False and violations[1]["detail"]["dry_run"] is True


async def test_loss_stops_still_accept_risk_reducing_orders(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user, allow_short=True)
    h = trader["headers"]
    # (Without the switch to reduce_only, which would refuse the reversal below on its own.)
    await add_limit(client, risk_manager["headers"], acct, "max_daily_loss", "100", auto_reduce_only=False)
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=100)
    await set_price(client, admin_headers, symbol, "98")
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=1, expect=422)
    # Selling the long into a fresh short (even a smaller one) takes on new risk: stopped too.
    problem = await place(
        client, h, acct, symbol=symbol, side="sell", type="market", quantity=190, expect=422
    )
    assert problem.get("limit_type") == "max_daily_loss", problem
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=40)
    assert D((await positions(client, h, acct))[symbol]["quantity"]) == 60
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=60)  # closing: fine
    assert D((await positions(client, h, acct)).get(symbol, {"quantity": "0"})["quantity"]) == 0


# ---------------------------------------------------------------------------------------- trading state


async def test_halted_and_reduce_only(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user, allow_short=True)
    h, rh = trader["headers"], risk_manager["headers"]
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=10)

    async def set_state(state: str) -> None:
        resp = await client.put(
            f"/api/v1/accounts/{acct}/trading-state", json={"state": state, "reason": "test"}, headers=rh
        )
        assert resp.status_code == 200, resp.text

    assert (
        await client.put(
            f"/api/v1/accounts/{acct}/trading-state", json={"state": "halted", "reason": "x"}, headers=h
        )
    ).status_code == 403

    await set_state("halted")
    for side in ("buy", "sell"):
        problem = await place(
            client, h, acct, expect=422, symbol=symbol, side=side, type="market", quantity=1
        )
        assert problem["type"].endswith("/account-halted")
        resp = await client.post(
            f"/api/v1/accounts/{acct}/orders/validate",
            json={"symbol": symbol, "side": side, "type": "market", "quantity": "1"},
            headers=h,
        )
        assert resp.status_code == 422 and resp.json()["type"] == problem["type"]

    await set_state("reduce_only")
    grow = await place(client, h, acct, expect=422, symbol=symbol, side="buy", type="market", quantity=1)
    assert grow["type"].endswith("/reduce-only")
    flip = await place(client, h, acct, expect=422, symbol=symbol, side="sell", type="market", quantity=11)
    assert flip["type"].endswith("/reduce-only")
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=4)
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=6)  # exactly flat
    assert D((await positions(client, h, acct))[symbol]["quantity"]) == 0
    flat = await place(client, h, acct, expect=422, symbol=symbol, side="sell", type="market", quantity=1)
    assert flat["type"].endswith("/reduce-only")

    await set_state("active")
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=1)

    # cancel_open_orders is the halt's: with another state it would do nothing, so it is refused
    resting = await place(
        client, h, acct, symbol=symbol, side="buy", type="limit", quantity=1, limit_price="1"
    )
    for state, flag in (("reduce_only", True), ("active", False)):
        resp = await client.put(
            f"/api/v1/accounts/{acct}/trading-state",
            json={"state": state, "reason": "x", "cancel_open_orders": flag},
            headers=rh,
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"][0]["field"] == "cancel_open_orders"
    account = (await client.get(f"/api/v1/accounts/{acct}", headers=h)).json()
    assert account["trading_state"] == "active"  # nothing written
    order = (await client.get(f"/api/v1/accounts/{acct}/orders/{resting['id']}", headers=h)).json()
    assert order["status"] == "accepted"


# ----------------------------------------------------------------------------------------- concurrency


async def _race(clients: list, headers: dict, acct: str, symbol: str, n: int = 100) -> list[int]:
    body = {"symbol": symbol, "side": "buy", "type": "market", "quantity": "1"}
    url = f"/api/v1/accounts/{acct}/orders"
    resps = await asyncio.gather(
        *[clients[i % len(clients)].post(url, json=body, headers=headers) for i in range(n)]
    )
    return [r.status_code for r in resps]


async def test_concurrent_orders_never_exceed_position_limit(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await add_limit(client, risk_manager["headers"], acct, "max_position_quantity", 37)
    codes = await _race([client], h, acct, symbol)
    assert codes.count(201) == 37 and codes.count(422) == 63, sorted(set(codes))
    assert D((await positions(client, h, acct))[symbol]["quantity"]) == 37
    violations = (await client.get(f"{base(acct)}/violations", params={"limit": 500}, headers=h)).json()[
        "items"
    ]
    assert len(violations) == 63 and {D(v["would_be"]) for v in violations} == {D(38)}


async def test_concurrent_orders_through_two_app_instances(client, admin_headers, make_user, risk_manager):
    from app.server.app import create_app

    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await add_limit(client, risk_manager["headers"], acct, "max_position_quantity", 42)
    async with AsyncTestClient(app=create_app(make_settings()), timeout=30) as second:
        codes = await _race([client, second], h, acct, symbol)
        assert codes.count(201) == 42 and codes.count(422) == 58, sorted(set(codes))
        for c in (client, second):
            assert D((await positions(c, h, acct))[symbol]["quantity"]) == 42
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders", params={"limit": 500}, headers=h)).json()[
        "items"
    ]
    assert len(listed) == 42 and all(o["status"] == "filled" for o in listed)


# -------------------------------------------------------------------------------------------- metrics


def _series(n: int, seed: int, start: float = 100.0) -> list[str]:
    rng = np.random.default_rng(seed)
    closes = start * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    return [f"{c:.2f}" for c in closes]


async def _load_daily(client, admin_headers, symbol: str, closes: list[str], days: list[datetime]) -> None:
    candles = [
        {"ts": d.isoformat(), "open": c, "high": c, "low": c, "close": c, "volume": "1000"}
        for d, c in zip(days, closes, strict=True)
    ]
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles",
        json={"timeframe": "1d", "candles": candles},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text


def _hand_var(r: np.ndarray) -> dict[str, float]:
    out = {}
    for label, q in (("95", 5), ("99", 1)):
        cut = np.percentile(r, q)
        out[f"var_{label}"] = -cut
        out[f"cvar_{label}"] = -r[r <= cut].mean()
    out["vol"] = np.std(r, ddof=1) * np.sqrt(252)
    return out


async def test_metrics_count_the_last_minutes_orders_without_a_rate_limit(client, admin_headers, make_user):
    """The book's read counts the last minute's orders only for a max_orders_per_minute limit (placement
    skips the scan otherwise); the metrics count them always."""
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    for price in ("90", "91", "92"):
        await place(client, h, acct, symbol=symbol, side="buy", type="limit", quantity=1, limit_price=price)
    m = await metrics(client, h, acct)
    assert (m["open_orders"], m["orders_last_minute"]) == (3, 3)


async def test_var_cvar_volatility_match_numpy(client, admin_headers, make_user):
    trader, symbol, acct = await setup(client, admin_headers, make_user, price=None)
    h = trader["headers"]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    days = [start + timedelta(days=i) for i in range(60)]
    closes = _series(60, seed=7)
    await _load_daily(client, admin_headers, symbol, closes, days)  # sets the last price to the last close
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=10)

    c = np.array([float(x) for x in closes])
    m = await metrics(client, h, acct)
    value = D(closes[-1]) * 10
    assert D(m["gross_exposure"]) == value == D(m["net_exposure"])
    assert D(m["equity"]) == D("100000") and D(m["cash"]) == D("100000") - value
    assert m["leverage"] == pytest.approx(float(value) / 100000)
    assert m["concentration_pct"] == pytest.approx(float(value) / 1000) and m["largest_symbol"] == symbol
    assert D(m["daily_pnl"]) == 0 and m["drawdown"] == 0
    var = m["var"]
    r = c[1:] / c[:-1] - 1
    expected = _hand_var(r)
    assert var["observations"] == 59 and var["lookback"] == 250 and var["missing_history"] == []
    for key in ("var_95", "cvar_95", "var_99", "cvar_99"):
        assert var[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15)
        amount = (Decimal(repr(var[key])) * value).quantize(Decimal("1E-8"))
        assert D(var[f"{key}_amount"]) == amount
    assert var["annual_volatility"] == pytest.approx(expected["vol"], rel=1e-12)
    assert D(var["base_amount"]) == value

    short = (await metrics(client, h, acct, lookback=10))["var"]
    r10 = c[-10:][1:] / c[-10:][:-1] - 1
    assert short["observations"] == 9 and short["lookback"] == 10
    assert short["var_95"] == pytest.approx(_hand_var(r10)["var_95"], rel=1e-12)
    bad = await client.get(f"{base(acct)}/metrics", params={"lookback": 1}, headers=h)
    assert bad.status_code == 400


async def test_var_aligns_two_symbols_and_handles_shorts_and_missing_history(
    client, admin_headers, make_user
):
    trader, a, acct = await setup(client, admin_headers, make_user, price=None, allow_short=True)
    h = trader["headers"]
    b = await make_market(client, admin_headers, taker="0", maker="0")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    days = [start + timedelta(days=i) for i in range(40)]
    ca, cb = _series(40, seed=1), _series(40, seed=2, start=50.0)
    await _load_daily(client, admin_headers, a, ca, days)
    gap = 17  # b has no candle that day: the day is dropped for both
    await _load_daily(client, admin_headers, b, cb[:gap] + cb[gap + 1 :], days[:gap] + days[gap + 1 :])
    await place(client, h, acct, symbol=a, side="buy", type="market", quantity=20)
    await place(client, h, acct, symbol=b, side="sell", type="market", quantity=30)

    keep = [i for i in range(40) if i != gap]
    closes = np.array([[float(ca[i]), float(cb[i])] for i in keep])
    q = np.array([20.0, -30.0])
    gross = abs(20 * float(ca[-1])) + abs(30 * float(cb[-1]))
    # each day's moves applied to today's positions (at the last closes), over today's gross
    r = (closes[1:] / closes[:-1] - 1) @ (q * closes[-1]) / gross
    var = (await metrics(client, h, acct))["var"]
    assert var["observations"] == 38
    expected = _hand_var(r)
    for key in ("var_95", "cvar_95", "var_99", "cvar_99"):
        assert var[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15)
    assert var["annual_volatility"] == pytest.approx(expected["vol"], rel=1e-12)
    assert D(var["base_amount"]) == 20 * D(ca[-1]) + 30 * D(cb[-1])
    # parametric VaR over the same aligned closes: z * sqrt(w' cov w) - w.mu, w = q * last close
    asset_r = closes[1:] / closes[:-1] - 1
    w = q * closes[-1]
    sigma = float(np.sqrt(w @ np.cov(asset_r, rowvar=False, ddof=1) @ w))
    expected_par = 1.6448536269514722 * sigma - float(w @ asset_r.mean(axis=0))
    par, mc = var["parametric"], var["monte_carlo"]
    assert float(par["var_95_amount"]) == pytest.approx(expected_par, abs=1e-6)
    assert par["var_95"] == pytest.approx(expected_par / gross)
    assert float(mc["var_95_amount"]) == pytest.approx(expected_par, rel=0.05)  # 10,000 seeded draws
    assert (await metrics(client, h, acct))["var"]["monte_carlo"] == mc  # seeded: the same figures
    # A last price away from the last close: the exposures are today's (q at the last prices, as
    # base_amount), the returns still the closes'; the amount stays its fraction of base_amount.
    await set_price(client, admin_headers, a, str(round(float(ca[-1]) * 0.6, 2)))
    var = (await metrics(client, h, acct))["var"]
    marks = np.array([round(float(ca[-1]) * 0.6, 2), float(cb[-1])])
    w = q * marks
    sigma = float(np.sqrt(w @ np.cov(asset_r, rowvar=False, ddof=1) @ w))
    expected_par = 1.6448536269514722 * sigma - float(w @ asset_r.mean(axis=0))
    par = var["parametric"]
    assert float(par["var_95_amount"]) == pytest.approx(expected_par, abs=1e-6)
    assert par["var_95"] == pytest.approx(expected_par / float(var["base_amount"]))
    assert D(var["base_amount"]) == 20 * D(str(marks[0])) + 30 * D(cb[-1])

    # a held symbol with no daily history: VaR unknown (null), never NaN, and named
    c = await make_market(client, admin_headers, taker="0", maker="0", price="10")
    await place(client, h, acct, symbol=c, side="buy", type="market", quantity=1)
    var = (await metrics(client, h, acct))["var"]
    assert var["missing_history"] == [c] and var["var_95"] is None and var["var_95_amount"] is None
    assert var["annual_volatility"] is None
    assert var["parametric"] is None and var["monte_carlo"] is None


async def test_flat_account_metrics_and_isolation(client, admin_headers, make_user, risk_manager):
    trader, _, acct = await setup(client, admin_headers, make_user)
    m = await metrics(client, risk_manager["headers"], acct)
    assert D(m["gross_exposure"]) == 0 and m["leverage"] == 0 and m["largest_symbol"] is None
    assert m["var"]["var_95"] == 0 and D(m["var"]["var_99_amount"]) == 0
    assert m["var"]["parametric"]["var_95"] == 0 and D(m["var"]["monte_carlo"]["var_99_amount"]) == 0
    assert D(m["equity"]) == D("100000") and D(m["daily_pnl"]) == 0 and D(m["peak_equity"]) == D("100000")
    other = await make_user("trader")
    assert (await client.get(f"{base(acct)}/metrics", headers=other["headers"])).status_code == 404
    assert (await client.post(f"{base(acct)}/monitor", headers=other["headers"])).status_code == 404
    assert (await client.get(f"{base(acct)}/violations", headers=other["headers"])).status_code == 404
    assert (await client.get(f"{base(acct)}/alerts", headers=other["headers"])).status_code == 404
    assert (
        await client.get(f"/api/v1/accounts/{uuid.uuid4()}/risk/metrics", headers=admin_headers)
    ).status_code == 404


# ------------------------------------------------------------------------------ monitoring and alerts


async def test_alert_hysteresis_and_acknowledgement(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h, rh = trader["headers"], risk_manager["headers"]
    lim = await add_limit(client, rh, acct, "max_gross_exposure", 10000)
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=50)  # 5000: 50%

    # each price update's post-trade check (risk/post_trade.py) raises the alerts, one per crossing
    for price, expected_alert in (
        ("100", None),
        ("170", "warning"),
        ("180", None),
        ("202", "critical"),
        ("140", None),
        ("170", "warning"),
    ):
        before = (await client.get(f"{base(acct)}/alerts", headers=h)).json()["items"]
        await set_price(client, admin_headers, symbol, price)
        after = (await client.get(f"{base(acct)}/alerts", headers=h)).json()["items"]
        new = [a["severity"] for a in after[: len(after) - len(before)]]
        assert new == ([expected_alert] if expected_alert else []), price
        usage = next(x for x in (await metrics(client, h, acct))["limits"] if x["id"] == lim["id"])
        assert usage["utilisation"] == pytest.approx(float(D(price) * 50 / 10000))
        assert D(usage["used"]) == D(price) * 50

    # only the check at 101% is a breach; a monitor run now raises nothing new
    assert (await monitor(client, h, acct))["alerts"] == []
    post = (await client.get(f"{base(acct)}/violations", params={"phase": "post_trade"}, headers=h)).json()[
        "items"
    ]
    breach = post[-1]
    assert (
        breach["phase"] == "post_trade" and breach["limit_id"] == lim["id"] and D(breach["would_be"]) == 10100
    )
    assert [v["id"] for v in post] == [breach["id"]]
    limit_now = (await client.get(f"{base(acct)}/limits/{lim['id']}", headers=h)).json()
    assert limit_now["alert_level"] == "warning"

    alerts = (await client.get(f"{base(acct)}/alerts", headers=h)).json()["items"]
    assert [a["severity"] for a in alerts] == ["warning", "critical", "warning"]  # newest first
    assert alerts[1]["utilisation"] == pytest.approx(1.01)
    first = alerts[-1]
    assert first["acknowledged_at"] is None and first["limit_type"] == "max_gross_exposure"
    page = (await client.get(f"{base(acct)}/alerts", params={"limit": 2}, headers=h)).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    tail = await client.get(
        f"{base(acct)}/alerts", params={"limit": 2, "cursor": page["next_cursor"]}, headers=h
    )
    assert [a["id"] for a in tail.json()["items"]] == [first["id"]]

    other = await make_user("trader")
    ack_url = f"{base(acct)}/alerts/{first['id']}/acknowledge"
    assert (await client.post(ack_url, headers=other["headers"])).status_code == 404
    resp = await client.post(ack_url, headers=rh)
    assert resp.status_code == 200, resp.text
    assert resp.json()["acknowledged_by"] == risk_manager["id"] and resp.json()["acknowledged_at"]
    again = await client.post(ack_url, headers=h)
    assert again.status_code == 409 and again.json()["acknowledged_by"] == risk_manager["id"]
    assert (
        await client.post(f"{base(acct)}/alerts/{uuid.uuid4()}/acknowledge", headers=h)
    ).status_code == 404
    open_ = (await client.get(f"{base(acct)}/alerts", params={"acknowledged": "false"}, headers=h)).json()[
        "items"
    ]
    done = (await client.get(f"{base(acct)}/alerts", params={"acknowledged": "true"}, headers=h)).json()[
        "items"
    ]
    assert [a["severity"] for a in open_] == ["warning", "critical"] and [a["id"] for a in done] == [
        first["id"]
    ]
    crit = (await client.get(f"{base(acct)}/alerts", params={"severity": "critical"}, headers=h)).json()[
        "items"
    ]
    assert len(crit) == 1


async def test_concurrent_acknowledgements_record_one(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await add_limit(client, risk_manager["headers"], acct, "max_position_quantity", 10)
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=9)
    alert = (await monitor(client, h, acct))["alerts"][0]
    url = f"{base(acct)}/alerts/{alert['id']}/acknowledge"
    codes = sorted(
        r.status_code for r in await asyncio.gather(*[client.post(url, headers=h) for _ in range(10)])
    )
    assert codes == [200] + [409] * 9


async def test_daily_loss_breach_switches_to_reduce_only(
    client, admin_headers, make_user, risk_manager, db_engine
):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h, rh = trader["headers"], risk_manager["headers"]
    loss = await add_limit(client, rh, acct, "max_daily_loss", 500)
    await add_limit(client, rh, acct, "max_drawdown_pct", "0.1", auto_reduce_only=False)
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=100)
    await set_price(client, admin_headers, symbol, "94")  # equity 99400: daily loss 600, drawdown 0.6%

    m = await metrics(client, h, acct)
    assert D(m["daily_pnl"]) == -600 and D(m["day_open_equity"]) == D("100000")
    assert m["drawdown"] == pytest.approx(0.006)
    assert {x["limit_type"]: x["breached"] for x in m["limits"]} == {
        "max_daily_loss": True,
        "max_drawdown_pct": True,
    }

    # the price update's post-trade check already switched the account; the monitor sees it so
    result = await monitor(client, h, acct)
    assert result["previous_trading_state"] == "reduce_only" and result["trading_state"] == "reduce_only"
    by_type = {v["limit_type"]: v for v in result["violations"]}
    assert (
        D(by_type["max_daily_loss"]["would_be"]) == 600
        and by_type["max_daily_loss"]["limit_id"] == loss["id"]
    )
    assert D(by_type["max_drawdown_pct"]["would_be"]) == D("0.6")
    assert by_type["max_daily_loss"]["detail"]["checked_by"] == trader["id"]
    a = await account(client, h, acct)
    assert a["trading_state"] == "reduce_only" and "max_daily_loss" in a["trading_state_reason"]
    async with db_engine.connect() as conn:
        changes = (
            await conn.execute(
                select(
                    TradingStateChange.actor_id,
                    TradingStateChange.old_state,
                    TradingStateChange.new_state,
                    TradingStateChange.reason,
                ).where(TradingStateChange.account_id == uuid.UUID(acct))
            )
        ).all()
    assert len(changes) == 1
    assert changes[0].actor_id is None and (changes[0].old_state, changes[0].new_state) == (
        "active",
        "reduce_only",
    )
    assert "max_daily_loss" in changes[0].reason

    problem = await place(client, h, acct, expect=422, symbol=symbol, side="buy", type="market", quantity=1)
    assert problem["type"].endswith("/reduce-only")
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=10)

    again = await monitor(client, h, acct)  # still in breach: recorded again, no second switch, no new alert
    assert len(again["violations"]) == 2 and again["alerts"] == [] and again["trading_state"] == "reduce_only"
    async with db_engine.connect() as conn:
        count = len(
            (
                await conn.execute(
                    select(TradingStateChange.id).where(TradingStateChange.account_id == uuid.UUID(acct))
                )
            ).all()
        )
    assert count == 1


async def test_drawdown_stop_without_auto_reduce_leaves_state(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await add_limit(client, risk_manager["headers"], acct, "max_drawdown_pct", "1", auto_reduce_only=False)
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=500)
    await set_price(client, admin_headers, symbol, "120")  # a new high the monitor records as the peak
    first = await monitor(client, h, acct)
    assert first["violations"] == []
    m = await metrics(client, h, acct)
    assert D(m["peak_equity"]) == D("110000") and m["drawdown"] == 0
    await set_price(client, admin_headers, symbol, "117")  # 108500 / 110000: 1.3636...% drawdown
    result = await monitor(client, h, acct)
    assert [v["limit_type"] for v in result["violations"]] == ["max_drawdown_pct"]
    assert result["trading_state"] == "active"
    # pre-trade sees the same peak: more risk is blocked, reducing is not
    problem = await place(client, h, acct, expect=422, symbol=symbol, side="buy", type="market", quantity=1)
    assert problem["type"].endswith("/risk-limit-breached") and problem["limit_type"] == "max_drawdown_pct"
    await place(client, h, acct, symbol=symbol, side="sell", type="market", quantity=1)


async def test_violations_pagination(client, admin_headers, make_user, risk_manager):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await add_limit(client, risk_manager["headers"], acct, "max_order_quantity", 1)
    for _ in range(5):
        await place(client, h, acct, expect=422, symbol=symbol, side="buy", type="market", quantity=2)
    ids, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{base(acct)}/violations", params=params, headers=h)).json()
        ids += [v["id"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    full = (await client.get(f"{base(acct)}/violations", headers=h)).json()["items"]
    assert ids == [v["id"] for v in full] and len(ids) == 5
    stamps = [v["created_at"] for v in full]
    assert stamps == sorted(stamps, reverse=True)
    bad = await client.get(f"{base(acct)}/violations", params={"cursor": "garbage"}, headers=h)
    assert bad.status_code == 422  # the documented shape (base64url), but not a cursor the API issued
    bad = await client.get(f"{base(acct)}/violations", params={"cursor": "garbage!"}, headers=h)
    assert bad.status_code == 400  # not even the documented shape
    too_many = await client.get(f"{base(acct)}/violations", params={"limit": 501}, headers=h)
    assert too_many.status_code == 400


# ------------------------------------------------------------------------------------------------ jobs


async def test_monitor_all_job(client, admin_headers, make_user, risk_manager, db_engine):
    rh = risk_manager["headers"]
    accounts = []
    for _ in range(3):
        trader, symbol, acct = await setup(client, admin_headers, make_user)
        await add_limit(client, rh, acct, "max_daily_loss", 100)
        await place(client, trader["headers"], acct, symbol=symbol, side="buy", type="market", quantity=100)
        await set_price(client, admin_headers, symbol, "98")  # loss 200
        accounts.append((trader, acct))

    stopped = await tasks.monitor_all_job({"engine": db_engine}, batch_size=2, time_budget_seconds=1e-9)
    assert stopped["complete"] is False and stopped["accounts"] == 0 and stopped["resume_after"] is not None

    result = await tasks.monitor_all_job({"engine": db_engine}, batch_size=2, time_budget_seconds=60)
    assert result["complete"] is True and result["resume_after"] is None and result["failed"] == 0
    # (the price updates' post-trade checks already switched them to reduce_only)
    assert result["accounts"] >= 3 and result["violations"] >= 3
    for trader, acct in accounts:
        assert (await account(client, trader["headers"], acct))["trading_state"] == "reduce_only"
        alerts = (await client.get(f"{base(acct)}/alerts", headers=trader["headers"])).json()["items"]
        assert [a["severity"] for a in alerts] == ["critical"]
        post = (
            await client.get(
                f"{base(acct)}/violations", params={"phase": "post_trade"}, headers=trader["headers"]
            )
        ).json()["items"]
        # one from the price update's post-trade check, one from the job
        assert [v["limit_type"] for v in post] == ["max_daily_loss"] * 2

    # the registered job validates its kwargs like POST /api/v1/jobs does
    from app.lib.jobs import REGISTRY, validate_kwargs

    assert "risk.monitor_all" in REGISTRY and "risk.snapshot_equity" in REGISTRY
    with pytest.raises(Exception):  # noqa: B017
        validate_kwargs("risk.monitor_all", {"batch_size": 0})


async def test_snapshot_equity_job(client, admin_headers, make_user, db_engine):
    trader, symbol, acct = await setup(client, admin_headers, make_user)
    h = trader["headers"]
    await place(client, h, acct, symbol=symbol, side="buy", type="market", quantity=10)
    await set_price(client, admin_headers, symbol, "130")  # equity 100300, above the recorded peak
    before = datetime.now(UTC)
    result = await tasks.snapshot_equity_job({"engine": db_engine}, batch_size=3)
    assert result["snapshots"] >= 1 and result["peaks_raised"] >= 1
    async with db_engine.connect() as conn:
        snap = (
            await conn.execute(
                select(EquitySnapshot.equity, EquitySnapshot.cash, EquitySnapshot.ts)
                .where(EquitySnapshot.account_id == uuid.UUID(acct))
                .order_by(EquitySnapshot.id.desc())
                .limit(1)
            )
        ).one()
    assert snap.ts >= before - timedelta(seconds=1)
    assert snap.equity == D("100300") and snap.cash == D("99000")
    m = await metrics(client, h, acct)
    assert D(m["peak_equity"]) == D("100300")
