"""The durable log behind the streams: every writer numbers its events per account, gap-free, in commit
order (placement, its locked retry, matching, cancels, day expiry), and the activities list reads it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from tests.integration.helpers import D, make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _activities(client, headers, acct: str) -> list[dict]:
    out, after = [], 0
    while after is not None:
        resp = await client.get(
            f"/api/v1/accounts/{acct}/activities", params={"after_seq": after, "limit": 7}, headers=headers
        )
        assert resp.status_code == 200, resp.text
        page = resp.json()
        out.extend(page["items"])
        after = page["next_after_seq"]
    return out


async def test_every_writer_numbers_its_events_without_gaps(client, admin_headers, make_user, db_engine):
    from app.domain.trading.services import expire_day_orders
    from app.lib.db import utcnow

    user = await make_user("trader")
    h = user["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, h, cash="100000")
    resting = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=2, limit_price="95")
    day = await place(
        client,
        h,
        acct,
        symbol=sym,
        side="buy",
        type="limit",
        quantity=1,
        limit_price="80",
        time_in_force="day",
    )
    to_cancel = await place(
        client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="85"
    )
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=1)
    await set_price(client, admin_headers, sym, "95", volume="1")  # a partial fill of the resting order
    await set_price(client, admin_headers, sym, "94")  # the rest
    assert (
        await client.delete(f"/api/v1/accounts/{acct}/orders/{to_cancel['id']}", headers=h)
    ).status_code == 200
    async with db_engine.connect() as conn:
        assert await expire_day_orders(conn, utcnow() + timedelta(days=8)) >= 1
    log = await _activities(client, h, acct)
    assert [m["seq"] for m in log] == list(range(1, len(log) + 1))
    events = [(m["order"]["id"], m["event"]) for m in log]
    assert events == [
        (resting["id"], "new"),
        (resting["id"], "accepted"),
        (day["id"], "new"),
        (day["id"], "accepted"),
        (to_cancel["id"], "new"),
        (to_cancel["id"], "accepted"),
        (events[6][0], "new"),
        (events[6][0], "accepted"),
        (events[6][0], "fill"),
        (resting["id"], "partial_fill"),
        (resting["id"], "fill"),
        (to_cancel["id"], "canceled"),
        (day["id"], "expired"),
    ]
    partial, full = log[9], log[10]
    assert partial["order"]["status"] == "partially_filled" and partial["order"]["filled_quantity"] == "1"
    assert D(partial["fill"]["price"]) == 95 and D(partial["position_qty"]) == 2  # 1 bought at market + 1
    assert full["order"]["status"] == "filled" and D(full["order"]["filled_quantity"]) == 2
    assert log[-1]["order"]["status"] == "expired" and log[-2]["order"]["status"] == "canceled"
    # The log's order is the order as it is now for the last event of each order.
    current = (await client.get(f"/api/v1/accounts/{acct}/orders/{resting['id']}", headers=h)).json()
    assert full["order"] == current


async def test_concurrent_placements_on_one_account_number_their_events_gap_free(
    client, admin_headers, make_user
):
    """Optimistic writes that lose the race retry under locks: every committed event still gets the next
    seq, and none is numbered twice."""
    user = await make_user("trader")
    h = user["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="1000000")

    async def one() -> None:
        await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="90")

    await asyncio.gather(*(one() for _ in range(40)))
    log = await _activities(client, h, acct)
    assert [m["seq"] for m in log] == list(range(1, 81))
    per_order: dict[str, list[str]] = {}
    for m in log:
        per_order.setdefault(m["order"]["id"], []).append(m["event"])
    assert len(per_order) == 40 and all(e == ["new", "accepted"] for e in per_order.values())


async def test_activities_of_another_users_account_is_404_like_an_unknown_one(
    client, admin_headers, make_user
):
    owner = await make_user("trader")
    other = await make_user("trader")
    acct = await make_account(client, owner["headers"])
    foreign = await client.get(f"/api/v1/accounts/{acct}/activities", headers=other["headers"])
    unknown = await client.get(f"/api/v1/accounts/{uuid.uuid4()}/activities", headers=other["headers"])
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()
    risk = await make_user("risk_manager")
    assert (
        await client.get(f"/api/v1/accounts/{acct}/activities", headers=risk["headers"])
    ).status_code == 200
    bad = await client.get(
        f"/api/v1/accounts/{acct}/activities", params={"after_seq": "-1"}, headers=owner["headers"]
    )
    assert bad.status_code == 400


async def test_one_price_that_triggers_a_stop_and_fills_a_limit_logs_both(client, admin_headers, make_user):
    """A price update whose events mix fills (with the position after them) and a trigger (without) is
    written in one statement: every event row carries the same fields."""
    user = await make_user("trader")
    h = user["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    limit = await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity=2, limit_price="101")
    stop = await place(client, h, acct, symbol=sym, side="buy", type="stop", quantity=1, stop_price="101")
    await set_price(client, admin_headers, sym, "101")  # fills the limit, then triggers and fills the stop
    events = await _activities(client, h, acct)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    by_order: dict[str, list[str]] = {}
    for e in events:
        by_order.setdefault(e["order"]["id"], []).append(e["event"])
    assert by_order[limit["id"]][-1] == "fill", by_order
    assert by_order[stop["id"]][-2:] == ["triggered", "fill"], by_order
    assert D([e for e in events if e["event"] == "fill"][-1]["position_qty"]) == D("4")


async def test_one_price_over_several_accounts_numbers_each_accounts_events_in_one_write(
    client, admin_headers, make_user
):
    """Matching writes every account's events in one statement: each account's numbers continue its own
    log without gaps, in event order, interleaved with other accounts' (simple limits, an OCO whose
    take-profit cancels its stop-loss, a trailing stop that only moves), and each order's last logged
    state is the order as stored."""
    user = await make_user("trader")
    h = user["headers"]
    sym = await make_market(client, admin_headers, price="100")
    accounts = [await make_account(client, h, cash="100000") for _ in range(3)]
    trails = {}
    for acct in accounts:
        await place(client, h, acct, symbol=sym, side="buy", type="market", quantity=5)
    for acct in accounts:  # interleaved: the price's events alternate between the accounts
        await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity=1, limit_price="101")
        await place(
            client, h, acct, symbol=sym, side="sell", type="limit", quantity=1, order_class="oco",
            take_profit={"limit_price": "101"}, stop_loss={"stop_price": "95"},
        )
        trails[acct] = await place(
            client, h, acct, symbol=sym, side="sell", type="trailing_stop", quantity=1, trail_price="2"
        )
    before = {acct: len(await _activities(client, h, acct)) for acct in accounts}
    await set_price(client, admin_headers, sym, "101")
    for acct in accounts:
        log = await _activities(client, h, acct)
        assert [m["seq"] for m in log] == list(range(1, len(log) + 1))
        new = [(m["order"]["leg"], m["event"]) for m in log[before[acct]:]]
        # the take-profit's full fill cancels the stop-loss (one event)
        assert new == [(None, "fill"), ("take_profit", "fill"), ("stop_loss", "canceled")], new
        last = {m["order"]["id"]: m["order"] for m in log[before[acct]:]}  # each order after its last event
        for order_id, logged in last.items():
            assert logged == (await client.get(f"/api/v1/accounts/{acct}/orders/{order_id}", headers=h)).json()
        trail = (await client.get(f"/api/v1/accounts/{acct}/orders/{trails[acct]['id']}", headers=h)).json()
        assert D(trail["hwm"]) == 101 and D(trail["stop_price"]) == 99 and trail["status"] == "accepted"
        positions = (await client.get(f"/api/v1/accounts/{acct}/positions", headers=h)).json()["items"]
        assert D(positions[0]["quantity"]) == 3  # 5 bought, 2 sold at 101


async def test_a_zero_fee_fill_is_stored_and_paged_in_plain_notation(client, admin_headers, make_user):
    # A zero fee is 0 (not 0E-8 at the fee scale) in the stored event, the events list and the log the
    # stream replays: the stored text is what /orders/{id}/events answers as is.
    trader = await make_user("trader")
    h = trader["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0", maker="0")
    acct = await make_account(client, h)
    resting = await place(client, h, acct, symbol=sym, side="buy", type="limit", quantity=1, limit_price="99")
    await set_price(client, admin_headers, sym, "99")
    events = (await client.get(f"/api/v1/accounts/{acct}/orders/{resting['id']}/events", headers=h)).json()
    [fill] = [e for e in events["items"] if e["type"] == "filled"]
    assert fill["data"]["fee"] == "0", fill
    [logged] = [m for m in await _activities(client, h, acct) if m["event"] == "fill"]
    assert logged["fill"]["fee"] == "0" and logged["order"]["fees"] == "0", logged
