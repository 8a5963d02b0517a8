"""Exit legs of a partly filled entry and the fills of one price update (docs/TRADING.md "Contingent
orders and trailing stops"): an active leg counts against the position it may sell only for what its
entry filled, and the fills endpoints list one update's fills in the order they were booked."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import text

from app.lib.pagination import encode_cursor
from tests.integration.helpers import D, make_account, make_market, order, place, positions, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def bracket_partly_filled(
    client, admin_headers, make_user, *, held: int = 5, filled: str = "4", allow_short: bool = False
):
    """An account (long-only unless `allow_short`) holding `held`, with a bracket buy of 10 whose entry
    filled `filled`: its two exit legs are active for `filled`, not for 10."""
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, allow_short=allow_short)
    if held:
        await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=held)
    entry = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity=10, limit_price="95",
        order_class="bracket", take_profit={"limit_price": "120"}, stop_loss={"stop_price": "80"},
    )
    await set_price(client, admin_headers, sym, "95", volume=filled)
    entry = await order(client, h, acct, entry["id"])
    assert entry["status"] == "partially_filled" and D(entry["filled_quantity"]) == D(filled)
    assert D((await positions(client, h, acct))[sym]["quantity"]) == held + D(filled)
    return h, sym, acct


async def test_active_legs_of_a_partly_filled_entry_count_what_it_filled_against_the_sellable_position(
    client, admin_headers, make_user
):
    # Long 9 (5 + the entry's 4); the exits may sell 4 of it, so 5 is still sellable, 6 is not.
    h, sym, acct = await bracket_partly_filled(client, admin_headers, make_user)
    url = f"/api/v1/accounts/{acct}/orders"
    body = {"symbol": sym, "side": "sell", "type": "limit", "limit_price": "130"}
    over = await client.post(url, json={**body, "quantity": "6"}, headers=h)
    assert over.status_code == 422 and over.json()["type"].endswith("insufficient-position"), over.text
    fits = await client.post(url, json={**body, "quantity": "5"}, headers=h)
    assert fits.status_code == 201, fits.text


async def test_active_legs_of_a_partly_filled_entry_count_what_it_filled_against_reduce_only(
    client, admin_headers, make_user
):
    # The same against the reduce-only sum: the legs take 4 of the long 9, so 5 more may reduce it (an
    # account that may sell short: the sellable rule is the test above's).
    h, sym, acct = await bracket_partly_filled(client, admin_headers, make_user, allow_short=True)
    url = f"/api/v1/accounts/{acct}/orders"
    body = {"symbol": sym, "side": "sell", "type": "limit", "limit_price": "130", "reduce_only": True}
    over = await client.post(url, json={**body, "quantity": "6"}, headers=h)
    assert over.status_code == 422 and [e["field"] for e in over.json()["errors"]] == ["quantity"], over.text
    fits = await client.post(url, json={**body, "quantity": "5"}, headers=h)
    assert fits.status_code == 201, fits.text


async def test_replacing_an_active_leg_of_a_partly_filled_entry_checks_what_it_may_sell(
    client, admin_headers, make_user
):
    # Long 9, the take-profit active for 4: a new limit price keeps it within the position.
    h, sym, acct = await bracket_partly_filled(client, admin_headers, make_user, allow_short=True)
    entry = (await client.get(f"/api/v1/accounts/{acct}/orders?limit=500&nested=true", headers=h)).json()
    tp = next(leg for o in entry["items"] for leg in o["legs"] or [] if leg["leg"] == "take_profit")
    assert tp["status"] == "accepted" and D(tp["quantity"]) == 10
    url = f"/api/v1/accounts/{acct}/orders/{tp['id']}"
    resp = await client.patch(url, json={"limit_price": "125"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert D(resp.json()["limit_price"]) == 125 and resp.json()["version"] == 2


async def test_the_fills_of_one_price_are_listed_in_the_order_they_were_booked(
    client, admin_headers, make_user, db_engine
):
    """A price that fills the rest of an entry and its active stop-loss leg books two fills with one
    timestamp: the account's fills (newest first) and each order's fills follow the booking order, which
    is the order of their events in the account's stream, every time."""
    for _ in range(8):
        h, sym, acct = await bracket_partly_filled(client, admin_headers, make_user, held=0)
        await set_price(client, admin_headers, sym, "79")  # the entry's 6 at 95, the stop-loss's 4 at 79
        async with db_engine.connect() as conn:
            booked = [
                str(r[0]) for r in await conn.execute(
                    text("SELECT fill_id FROM order_events WHERE account_id = :a AND fill_id IS NOT NULL"
                         " ORDER BY seq"),
                    {"a": uuid.UUID(acct)},
                )
            ]
        resp = await client.get(f"/api/v1/accounts/{acct}/fills", headers=h)
        assert resp.status_code == 200, resp.text
        listed = resp.json()["items"]
        assert len(listed) == 3 and [f["id"] for f in reversed(listed)] == booked
        page = await client.get(f"/api/v1/accounts/{acct}/fills?limit=1", headers=h)
        seen = [page.json()["items"][0]["id"]]
        while page.json()["next_cursor"]:
            page = await client.get(
                f"/api/v1/accounts/{acct}/fills?limit=1&cursor={page.json()['next_cursor']}", headers=h
            )
            assert page.status_code == 200, page.text
            seen += [f["id"] for f in page.json()["items"]]
        assert seen == [f["id"] for f in listed]  # pages follow the same order
        too_big = encode_cursor(datetime.fromisoformat(listed[0]["created_at"]), 2**70)
        page = await client.get(f"/api/v1/accounts/{acct}/fills?cursor={too_big}", headers=h)
        assert page.status_code == 422, page.text  # not a cursor this API issued (no 500 from bigint)
        # A cursor in the (created_at, id) form of earlier releases continues after the fill it names.
        old = encode_cursor(datetime.fromisoformat(listed[0]["created_at"]), uuid.UUID(listed[0]["id"]))
        page = await client.get(f"/api/v1/accounts/{acct}/fills?cursor={old}", headers=h)
        assert page.status_code == 200 and [f["id"] for f in page.json()["items"]] == seen[1:], page.text
        for order_id in {f["order_id"] for f in listed}:
            resp = await client.get(f"/api/v1/accounts/{acct}/orders/{order_id}/fills", headers=h)
            assert [f["id"] for f in resp.json()["items"]] == [b for b in booked if b in
                                                                {f["id"] for f in resp.json()["items"]}]


async def _resting_simple_and_bracket(client, admin_headers, make_user):
    """A trader's account with a resting simple buy and a resting bracket buy (its two legs held)."""
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h)
    simple = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")
    entry = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity=2, limit_price="95",
        order_class="bracket", take_profit={"limit_price": "120"}, stop_loss={"stop_price": "80"},
    )
    return h, acct, simple, entry


async def test_cancel_all_cancels_each_order_through_the_single_cancel_routine(
    client, admin_headers, make_user, monkeypatch
):
    """Cancel-all and a client cancel share one routine (services.cancel_one): a simple order alone, a group
    member with its group; the members a group cancel already ended count as canceled, once each."""
    from app.domain.trading import services

    h, acct, simple, entry = await _resting_simple_and_bracket(client, admin_headers, make_user)
    legs = [leg["id"] for leg in entry["legs"]]
    calls: list[tuple[str, str]] = []
    cancel_one = services.cancel_one

    async def recording(conn, principal, account_id, order_id, reason, **kwargs):
        calls.append((str(order_id), reason))
        return await cancel_one(conn, principal, account_id, order_id, reason, **kwargs)

    monkeypatch.setattr(services, "cancel_one", recording)
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert resp.status_code == 200, resp.text
    expected = [simple["id"], entry["id"], *sorted(legs)]
    assert sorted(resp.json()["canceled"]) == sorted(expected) and resp.json()["failed"] == []
    # One call per simple order and per group: the first member's cancel ends the rest of its group.
    assert len(calls) == 2 and calls[0][0] == simple["id"] and calls[1][0] in {entry["id"], *legs}, calls
    assert {reason for _, reason in calls} == {"canceled by client (cancel all)"}
    for order_id in expected:
        assert (await order(client, h, acct, order_id))["status"] == "canceled"
        kinds = [e["type"] for e in (await client.get(
            f"/api/v1/accounts/{acct}/orders/{order_id}/events", headers=h)).json()["items"]]
        assert kinds.count("canceled") == 1, (order_id, kinds)


async def test_cancel_all_reports_as_canceled_only_what_it_canceled(
    client, admin_headers, make_user, monkeypatch
):
    """Two cancel-alls at once: a group the other one canceled first is `failed` ("already canceled") in
    this one, never in both `canceled` lists (here the other request runs just before this one's first
    cancel)."""
    from app.domain.trading import services

    h, acct, simple, entry = await _resting_simple_and_bracket(client, admin_headers, make_user)
    group = {entry["id"], *(leg["id"] for leg in entry["legs"])}
    cancel_one = services.cancel_one
    other: list[str] = []

    async def another_request_first(conn, principal, account_id, order_id, reason, **kwargs):
        if not other:
            ended = await cancel_one(conn, principal, account_id, uuid.UUID(entry["id"]), "the other one")
            other.extend(map(str, ended))
        return await cancel_one(conn, principal, account_id, order_id, reason, **kwargs)

    monkeypatch.setattr(services, "cancel_one", another_request_first)
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders", headers=h)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(other) == group and body["canceled"] == [simple["id"]], body
    assert {f["id"] for f in body["failed"]} == group
    assert {f["reason"] for f in body["failed"]} == {"already canceled"}
