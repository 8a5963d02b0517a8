"""Placement decides on an unlocked snapshot and writes only if nothing changed since (placement.py).

These tests change the account or the instrument between the decision and the write, deterministically,
and check that the optimistic write then writes nothing and the order is decided again under locks on
the current state: no lost cash update, no fill at a price that was already replaced.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from app.domain.trading import contingent, decision, placement
from app.domain.trading.reconcile import reconcile_account
from app.lib.db import libpq_url
from app.lib.metrics import PLACEMENT_RETRIES
from tests.integration.helpers import D, account, make_account, make_market, order, place

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _interfere_once(monkeypatch, action) -> list[bool]:
    """Run `action` (a coroutine function, on the app's event loop) right after the first (optimistic)
    decision, before its write."""
    calls: list[bool] = []
    decide = placement.decide_on_row

    async def decide_then_interfere(*args, **kwargs):
        outcome = await decide(*args, **kwargs)
        if not calls and isinstance(outcome, decision.Plan):
            await action()
        calls.append(True)
        return outcome

    monkeypatch.setattr(placement, "decide_on_row", decide_then_interfere)
    monkeypatch.setattr(contingent, "decide_on_row", decide_then_interfere)  # (imported by name there)
    return calls


def _sql(settings, sql: str, *params):
    """An action that runs `sql` on a connection of its own (opened on the app's loop: the test client
    runs the app on another)."""

    async def run() -> None:
        other = await asyncpg.connect(libpq_url(settings.database_url))
        try:
            await other.execute(sql, *params)
        finally:
            await other.close()

    return run


def _retries(changed: str = "account") -> float:
    return PLACEMENT_RETRIES.labels(changed=changed)._value.get()


async def test_account_change_between_read_and_write_is_not_lost(
    client, admin_headers, make_user, db_engine, settings, monkeypatch
):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, h, cash="100000")
    # A concurrent writer takes 1,000 of cash (as a fill elsewhere would) after our decision was taken.
    calls = _interfere_once(monkeypatch, _sql(
        settings, "UPDATE accounts SET cash = cash - 1000, initial_cash = initial_cash - 1000 WHERE id = $1",
        uuid.UUID(acct),
    ))
    before = _retries()
    placed = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    assert len(calls) == 2, "the lost optimistic write must be decided again"
    assert _retries() == before + 1
    assert placed["status"] == "filled" and D(placed["avg_fill_price"]) == D("100")
    # 100,000 - 1,000 (the other writer) - 1,000 (10 @ 100) - 1 (0.1% taker fee): both changes kept.
    assert D((await account(client, h, acct))["cash"]) == D("97999")
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    assert [o["id"] for o in listed] == [placed["id"]], "the lost write must not have left an order behind"
    async with db_engine.connect() as conn:
        drift = await reconcile_account(conn, uuid.UUID(acct))
    assert drift.ok, drift.problems

    # The lost race marks the account contended: its next orders skip the optimistic attempt (one decision,
    # taken under locks, no retry) until the mark expires.
    assert client.app.state.placement_caches.is_contended(uuid.UUID(acct))
    locked_runs: list[bool] = []
    place_locked = placement._place_locked

    async def counting_place_locked(*args, **kwargs):
        locked_runs.append(True)
        return await place_locked(*args, **kwargs)

    monkeypatch.setattr(placement, "_place_locked", counting_place_locked)
    decisions = len(calls)  # (non-empty: no more interference)
    again = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")
    assert again["status"] == "filled" and len(calls) == decisions + 1 and locked_runs == [True]
    assert _retries() == before + 1
    client.app.state.placement_caches.contended[uuid.UUID(acct)] = 0.0  # expired
    assert not client.app.state.placement_caches.is_contended(uuid.UUID(acct)) and uuid.UUID(acct) not in client.app.state.placement_caches.contended


async def test_price_update_between_read_and_write_fills_at_the_new_price(
    client, admin_headers, make_user, settings, monkeypatch
):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="100000")
    calls = _interfere_once(monkeypatch, _sql(settings, "UPDATE instruments SET last_price = 101 WHERE symbol = $1", sym))
    before = _retries("instrument")
    placed = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="3")
    assert len(calls) == 2 and _retries("instrument") == before + 1
    # A new price is no sign of contention on the account: its next order is tried optimistically again.
    assert not client.app.state.placement_caches.is_contended(uuid.UUID(acct))
    assert D(placed["avg_fill_price"]) == D("101")
    fills = (await client.get(f"/api/v1/accounts/{acct}/orders/{placed['id']}/fills", headers=h)).json()["items"]
    assert [D(f["price"]) for f in fills] == [D("101")]
    assert D((await account(client, h, acct))["cash"]) == D("99697")


async def test_halt_between_read_and_write_rejects_without_writing(client, admin_headers, make_user, settings, monkeypatch):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    _interfere_once(monkeypatch, _sql(settings, "UPDATE instruments SET status = 'halted' WHERE symbol = $1", sym))
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders", json={"symbol": sym, "side": "buy", "type": "market", "quantity": "1",
                                                 "time_in_force": "gtc"}, headers=h,
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/instrument-halted"), resp.text
    assert (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"] == []
    assert D((await account(client, h, acct))["cash"]) == D("100000")


async def test_unchanged_state_writes_once_without_retry(client, admin_headers, make_user):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="50", taker="0")
    acct = await make_account(client, h, cash="1000")
    before = _retries()
    first = await place(client, h, acct, symbol=sym, side="buy", type="limit", limit_price="49", quantity="4")
    assert first["status"] == "accepted"
    got = await order(client, h, acct, first["id"])
    assert got["status"] == "accepted" and _retries() == before
    # The resting buy reserved 4 x 49: the next order is checked against the buying power left.
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "buy", "type": "market", "quantity": "17", "time_in_force": "gtc"}, headers=h,
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/insufficient-buying-power"), resp.text


async def test_tick_change_between_read_and_write_is_checked_again(client, admin_headers, make_user, settings, monkeypatch):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", tick="0.01")
    acct = await make_account(client, h, cash="100000")
    # (what PATCH /api/v1/instruments/{symbol} writes)
    _interfere_once(monkeypatch, _sql(settings, "UPDATE instruments SET tick_size = 0.1 WHERE symbol = $1", sym))
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "buy", "type": "limit", "limit_price": "99.95", "quantity": "1",
              "time_in_force": "gtc"},
        headers=h,
    )
    assert resp.status_code == 422 and "tick_size" in resp.json()["detail"], resp.text
    assert (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"] == []


async def test_risk_limit_added_between_read_and_write_applies(client, app_state, admin_headers, make_user, monkeypatch):
    from app.domain.identity.schemas import Principal
    from app.domain.risk.schemas import LimitCreate
    from app.domain.risk.services import create_limit

    trader, manager = await make_user("trader"), await make_user("risk_manager")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    principal = Principal(user_id=uuid.UUID(manager["id"]), role="risk_manager", key_id=uuid.uuid4(), email=manager["email"])

    async def add_limit() -> None:  # through the service, as POST .../risk/limits does
        async with app_state.engine.connect() as conn:
            await create_limit(conn, principal, uuid.UUID(acct), LimitCreate("max_position_quantity", Decimal(5)))

    _interfere_once(monkeypatch, add_limit)
    resp = await client.post(
        f"/api/v1/accounts/{acct}/orders",
        json={"symbol": sym, "side": "buy", "type": "market", "quantity": "10", "time_in_force": "gtc"},
        headers=h,
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/risk-limit-breached"), resp.text
    assert resp.json()["limit_type"] == "max_position_quantity"
    assert (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"] == []


async def test_accounts_without_limits_take_the_lean_read_and_limits_are_still_found(
    client, admin_headers, make_user, monkeypatch
):
    trader, manager = await make_user("trader"), await make_user("risk_manager")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    account_id = uuid.UUID(acct)
    reads: list[bool] = []  # `full` of every decision
    decide = placement.decide_on_row

    async def recording_decide(*args, **kwargs):
        reads.append(args[-1])
        return await decide(*args, **kwargs)

    monkeypatch.setattr(placement, "decide_on_row", recording_decide)
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    assert reads == [False] and account_id not in client.app.state.placement_caches.limited

    resp = await client.post(f"/api/v1/accounts/{acct}/risk/limits", headers=manager["headers"],
                             json={"limit_type": "max_position_quantity", "value": "12"})
    assert resp.status_code == 201, resp.text
    # The lean read sees that a limit exists; the order is decided on the full book, against the limit.
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "buy", "type": "market", "quantity": "5", "time_in_force": "gtc"})
    assert resp.status_code == 422 and resp.json()["limit_type"] == "max_position_quantity", resp.text
    # First on the state the previous order left (no limits then): its write finds the account row changed
    # by the new limit and writes nothing; then the lean read, which finds the limit; then the full book.
    assert reads == [False, False, True] and client.app.state.placement_caches.is_limited(account_id)
    # Hinted: the next order reads the full book at once (one read, no lean one first).
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="2")
    assert reads == [False, False, True, True]

    # Long-only sells on the lean read still count open sell orders against the position.
    client.app.state.placement_caches.limited[account_id] = 0.0  # expired
    limit_id = (await client.get(f"/api/v1/accounts/{acct}/risk/limits", headers=manager["headers"])).json()["items"][0]["id"]
    assert (await client.delete(f"/api/v1/accounts/{acct}/risk/limits/{limit_id}", headers=manager["headers"])).status_code == 204
    resting = await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity="8", limit_price="150")
    assert resting["status"] == "accepted"
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "sell", "type": "market", "quantity": "5", "time_in_force": "gtc"})
    assert resp.status_code == 422 and "sellable position 4" in resp.json()["detail"], resp.text
    assert reads[-2:] == [False, False] and not client.app.state.placement_caches.is_limited(account_id)


async def test_validate_uses_the_apps_hints_an_account_with_limits_is_read_in_full_at_once(
    client, admin_headers, make_user
):
    """A dry run (`/orders/validate`) shares the app's placement caches: once an account is known to have
    limits, its validations (and orders) read the full book at once instead of a lean read first. Nothing
    is kept from a dry run."""
    trader, manager = await make_user("trader"), await make_user("risk_manager")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    resp = await client.post(f"/api/v1/accounts/{acct}/risk/limits", headers=manager["headers"],
                             json={"limit_type": "max_position_quantity", "value": "12"})
    assert resp.status_code == 201, resp.text
    caches = client.app.state.placement_caches
    assert not caches.is_limited(uuid.UUID(acct))
    body = {"symbol": sym, "side": "buy", "type": "market", "quantity": "5", "time_in_force": "gtc"}
    resp = await client.post(f"/api/v1/accounts/{acct}/orders/validate", headers=h, json=body)
    assert resp.status_code == 200 and resp.json()["accepted"] is True, resp.text
    assert caches.is_limited(uuid.UUID(acct))
    assert uuid.UUID(acct) not in caches.snapshots
    body["quantity"] = "13"
    resp = await client.post(f"/api/v1/accounts/{acct}/orders/validate", headers=h, json=body)
    assert resp.status_code == 422 and resp.json()["limit_type"] == "max_position_quantity", resp.text


async def test_bracket_is_written_in_one_optimistic_statement_and_decided_again_after_a_lost_race(
    client, admin_headers, make_user, db_engine, settings, monkeypatch
):
    """Groups take the optimistic path too (contingent.py): unchanged state writes entry, legs and events
    at once; an account changed between the read and the write writes nothing (no entry, no leg left
    behind) and the group is decided again under locks, keeping both changes."""
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, h, cash="100000")
    bracket = {"symbol": sym, "side": "buy", "type": "market", "quantity": "10", "order_class": "bracket",
               "take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "90"}}
    before = _retries()
    first = await place(client, h, acct, **bracket)
    assert _retries() == before, "unchanged state: no retry"
    assert first["status"] == "filled" and [leg["status"] for leg in first["legs"]] == ["accepted", "accepted"]
    # Decided on a fresh read (not on the state the first write left: test_placement_snapshot.py has that).
    client.app.state.placement_caches.take_snapshot(uuid.UUID(acct))
    calls = _interfere_once(monkeypatch, _sql(
        settings, "UPDATE accounts SET cash = cash - 1000, initial_cash = initial_cash - 1000 WHERE id = $1",
        uuid.UUID(acct),
    ))
    placed = await place(client, h, acct, **bracket)
    assert len(calls) == 2 and _retries() == before + 1, "the lost optimistic write must be decided again"
    assert placed["status"] == "filled" and len(placed["legs"]) == 2
    assert {leg["parent_id"] for leg in placed["legs"]} == {placed["id"]}
    # 100,000 - 1,000 (the other writer) - 2 x (1,000 + 1 fee): both changes kept.
    assert D((await account(client, h, acct))["cash"]) == D("96998")
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    assert len(listed) == 6, "two groups of three orders: the lost write left nothing behind"
    log = (await client.get(f"/api/v1/accounts/{acct}/activities", params={"limit": 100}, headers=h)).json()["items"]
    assert [m["seq"] for m in log] == list(range(1, len(log) + 1))
    assert len(log) == 2 * 9  # per group: the entry's new, accepted, fill; each leg's new, held, activated
    async with db_engine.connect() as conn:
        drift = await reconcile_account(conn, uuid.UUID(acct))
    assert drift.ok, drift.problems


async def test_bracket_price_update_between_read_and_write_fills_at_the_new_price(
    client, admin_headers, make_user, settings, monkeypatch
):
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="100000")
    calls = _interfere_once(monkeypatch, _sql(settings, "UPDATE instruments SET last_price = 101 WHERE symbol = $1", sym))
    before = _retries("instrument")
    placed = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="3", order_class="bracket",
                         take_profit={"limit_price": "110"}, stop_loss={"stop_price": "90"})
    assert len(calls) == 2 and _retries("instrument") == before + 1
    assert D(placed["avg_fill_price"]) == D("101") and len(placed["legs"]) == 2
    assert D((await account(client, h, acct))["cash"]) == D("99697")
