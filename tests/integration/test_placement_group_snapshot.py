"""An account under group limits decides its next order on its groups' sums as the last write in the group
left them (kept.PlacementCaches.group_states, kept.GroupState) and writes it in one round trip, and never
on sums that changed since.

Each writer test changes, between two orders of account A, something the group's sums rest on through
another member B (or the group itself), the way another API process, a price feed, a job or a risk
manager would, and checks that A's second order is not written on the kept state (the guard made the
write apply nothing: `stale`), so that it is decided on a fresh read. A writer the guard did not see
would let the kept write apply (`used`), and the test fails. The first test checks that the kept state
is exactly what a fresh read returns.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from app.domain.trading import placement
from app.domain.trading.kept import GroupState
from app.lib.db import _numeric_as_text, libpq_url, utcnow
from app.lib.metrics import PLACEMENT_SNAPSHOTS
from tests.integration.helpers import D, make_account, make_market, make_risk_group, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")

G = "/api/v1/risk/groups"
LIMITS = (
    {"limit_type": "max_gross_exposure", "value": "1000000000"},
    {"limit_type": "max_open_orders", "value": "1000"},
)


def _count(result: str) -> float:
    return PLACEMENT_SNAPSHOTS.labels(result=result)._value.get()


async def _group(client, rh, accounts: list[str], limits=LIMITS) -> dict:
    return await make_risk_group(client, rh, accounts, list(limits), name="Desk K")


async def _fresh(settings, account_id: str, symbol: str) -> GroupState:
    conn = await asyncpg.connect(libpq_url(settings.database_url))
    try:
        await _numeric_as_text(conn)  # as on the order pool
        row = await conn.fetchrow(placement.LEAN_READ_GROUP_SQL, uuid.UUID(account_id), "buy", symbol, None)
    finally:
        await conn.close()
    state = GroupState.of(row["group_figures"], row["group_members"])
    assert state is not None
    return state


def _numbers(state: GroupState) -> list[tuple]:
    return [
        (f.group_id, f.version, *(None if v is None else Decimal(v) for v in (f.gross, f.net, f.held)),
         f.open_orders)
        for f in state.figures
    ]


async def test_kept_group_state_is_what_a_fresh_read_returns(client, admin_headers, make_user, settings):
    rm, trader = await make_user("risk_manager"), await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0.001", maker="0.0005", slippage="5")
    a, b = [await make_account(client, th) for _ in range(2)]
    limits = (*LIMITS, {"limit_type": "max_net_position", "value": "1000000", "symbol": x},
              {"limit_type": "max_net_exposure", "value": "1000000000"})
    group = await _group(client, rm["headers"], [a, b], limits)
    used = _count("used")
    steps = [
        (a, dict(side="buy", type="market", quantity="10")),   # read, decide, write, keep
        (a, dict(side="buy", type="market", quantity="3")),    # on the kept state
        (b, dict(side="buy", type="market", quantity="4")),    # b's first: read; keeps the group's state
        (a, dict(side="buy", type="limit", quantity="4", limit_price="90")),  # a's book + b's group state
        (b, dict(side="buy", type="market", quantity="2")),
        (a, dict(side="sell", type="market", quantity="5")),   # a sell: read (a's buys did not count sells)
        (a, dict(side="sell", type="limit", quantity="2", limit_price="120")),  # rests: one more open order
        (b, dict(side="buy", type="market", quantity="1", time_in_force="ioc")),
    ]
    for acct, step in steps:
        placed = await place(client, th, acct, symbol=x, **step)
        assert placed["status"] in ("filled", "accepted"), placed
        kept = client.app.state.placement_caches.group_states[(uuid.UUID(group["id"]), x)]
        fresh = await _fresh(settings, acct, x)
        assert _numbers(kept) == _numbers(fresh), step
        assert kept.parts == fresh.parts, step
    # All but each account's first order and a's first sell were written on the kept state.
    assert _count("used") - used == len(steps) - 3


async def _cancel(client, th, acct: str, order_id: str) -> None:
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{order_id}", headers=th)
    assert resp.status_code == 200, resp.text


# Each writer: (what b holds and rests before a's first order, the change between a's two orders).
async def _nothing(ctx) -> None:
    """The control: nothing changes, so a's second order is written on the kept state."""


async def _fill_by_price(ctx) -> None:
    """b's resting buy in y fills at a new price of y: b's first position in y (a symbol no member held,
    so only b's account row says so)."""
    await set_price(ctx["client"], ctx["admin"], ctx["y"], "90")
    assert D((await ctx["order"](ctx["b_buy"]))["filled_quantity"]) == 5


async def _price_of_a_held_symbol(ctx) -> None:
    """A new price of y, which b holds: no order fills and no account row changes, the sums do."""
    await set_price(ctx["client"], ctx["admin"], ctx["y"], "150")


async def _cancel_a_buy(ctx) -> None:
    await _cancel(ctx["client"], ctx["th"], ctx["b"], ctx["b_buy"])


async def _cancel_a_sell(ctx) -> None:
    """A sell reserves no cash: its cancel moves b's open orders, and its row only by the event."""
    await _cancel(ctx["client"], ctx["th"], ctx["b"], ctx["b_sell"])


async def _replace(ctx) -> None:
    resp = await ctx["client"].patch(
        f"/api/v1/accounts/{ctx['b']}/orders/{ctx['b_buy']}", json={"quantity": "7"}, headers=ctx["th"]
    )
    assert resp.status_code == 200, resp.text


async def _expire(ctx) -> None:
    from app.domain.trading.services import expire_day_orders

    async with ctx["db_engine"].connect() as conn:
        assert await expire_day_orders(conn, utcnow() + timedelta(days=8)) >= 1
    assert (await ctx["order"](ctx["b_day"]))["status"] == "expired"


async def _halt(ctx) -> None:
    resp = await ctx["client"].put(
        f"/api/v1/accounts/{ctx['b']}/trading-state", json={"state": "halted", "reason": "kill"}, headers=ctx["rh"]
    )
    assert resp.status_code == 200 and ctx["b_buy"] in resp.json()["canceled_orders"], resp.text


async def _limit_change(ctx) -> None:
    group, limit = ctx["group"], ctx["group"]["limits"][0]
    resp = await ctx["client"].patch(
        f"{G}/{group['id']}/limits/{limit['id']}", json={"value": "900000000"}, headers=ctx["rh"]
    )
    assert resp.status_code == 200, resp.text


async def _new_member(ctx) -> None:
    """c, holding y, joins the group: the group's sums take in c's position."""
    resp = await ctx["client"].put(
        f"/api/v1/accounts/{ctx['c']}/risk/group", json={"group_id": ctx["group"]["id"]}, headers=ctx["rh"]
    )
    assert resp.status_code == 200, resp.text


async def _new_member_of_a_sub_group(ctx) -> None:
    """c, holding y, joins a new sub-group of the group: the group's sums take in c's position, though the
    guard is given the members as they were (kept.GroupState.guarded) and never looks for new ones."""
    resp = await ctx["client"].post(
        G, json={"name": f"Sub K {uuid.uuid4().hex[:8]}", "parent_id": ctx["group"]["id"]}, headers=ctx["rh"]
    )
    assert resp.status_code == 201, resp.text
    resp = await ctx["client"].put(
        f"/api/v1/accounts/{ctx['c']}/risk/group", json={"group_id": resp.json()["id"]}, headers=ctx["rh"]
    )
    assert resp.status_code == 200, resp.text


async def _member_leaves(ctx) -> None:
    """b, holding y, leaves the group: its position leaves the sums."""
    resp = await ctx["client"].put(
        f"/api/v1/accounts/{ctx['b']}/risk/group", json={"group_id": None}, headers=ctx["rh"]
    )
    assert resp.status_code == 200, resp.text


# b below holds y and has no open order: the guard does not compare its row (group_pretrade.members_column),
# so each of these must move a version the guard does compare, or, for the halt, move no sum at all.
async def _quiet_member_places(ctx) -> None:
    """b's order in y (decided on the group's state for y, not x's): the groups' versions move."""
    await place(ctx["client"], ctx["th"], ctx["b"], symbol=ctx["y"], side="buy", type="market", quantity="2")


async def _quiet_member_closes_its_position(ctx) -> None:
    resp = await ctx["client"].delete(f"/api/v1/accounts/{ctx['b']}/positions/{ctx['y']}", headers=ctx["th"])
    assert resp.status_code == 201 and resp.json()["status"] == "filled", resp.text


async def _quiet_member_is_halted(ctx) -> None:
    """b's row changes but no sum does (no open order to cancel): the kept state stays good."""
    resp = await ctx["client"].put(
        f"/api/v1/accounts/{ctx['b']}/trading-state", json={"state": "halted", "reason": "kill"},
        headers=ctx["rh"],
    )
    assert resp.status_code == 200 and not resp.json().get("canceled_orders"), resp.text


QUIET = (_quiet_member_places, _quiet_member_closes_its_position, _quiet_member_is_halted)
# Writers after which a's second order is still written on the kept state.
KEPT = (_nothing, _quiet_member_is_halted)


@pytest.mark.parametrize(
    "writer",
    [_nothing, _fill_by_price, _price_of_a_held_symbol, _cancel_a_buy, _cancel_a_sell, _replace, _expire, _halt,
     _limit_change, _new_member, _new_member_of_a_sub_group, _member_leaves, *QUIET],
    ids=lambda w: w.__name__.strip("_"),
)
async def test_a_change_of_the_groups_sums_is_not_missed(client, admin_headers, make_user, db_engine, writer):
    from tests.integration.helpers import order

    rm, trader = await make_user("risk_manager"), await make_user("trader")
    th, rh = trader["headers"], rm["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0")
    y = await make_market(client, admin_headers, price="100", taker="0")
    a, b, c = [await make_account(client, th) for _ in range(3)]
    await place(client, th, c, symbol=y, side="buy", type="market", quantity="3")
    group = await _group(client, rh, [a, b])
    ctx = {"client": client, "admin": admin_headers, "th": th, "rh": rh, "a": a, "b": b, "c": c, "x": x, "y": y,
           "group": group, "db_engine": db_engine, "order": lambda oid: order(client, th, b, oid)}
    if writer is _fill_by_price:
        ctx["b_buy"] = (await place(client, th, b, symbol=y, side="buy", type="limit", quantity="5",
                                    limit_price="90"))["id"]
    elif writer in QUIET:
        await place(client, th, b, symbol=y, side="buy", type="market", quantity="5")
    elif writer is not _nothing:
        await place(client, th, b, symbol=y, side="buy", type="market", quantity="5")
        ctx["b_buy"] = (await place(client, th, b, symbol=y, side="buy", type="limit", quantity="5",
                                    limit_price="50"))["id"]
        ctx["b_sell"] = (await place(client, th, b, symbol=y, side="sell", type="limit", quantity="2",
                                     limit_price="500"))["id"]
        ctx["b_day"] = (await place(client, th, b, symbol=y, side="buy", type="limit", quantity="1",
                                    limit_price="50", time_in_force="day"))["id"]
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="1")  # read, write, keep
    assert (uuid.UUID(group["id"]), x) in client.app.state.placement_caches.group_states
    await writer(ctx)
    used, stale = _count("used"), _count("stale")
    second = await place(client, th, a, symbol=x, side="buy", type="market", quantity="1")
    assert second["status"] == "filled"
    if writer in KEPT:
        assert (_count("used") - used, _count("stale") - stale) == (1, 0)
    else:
        assert (_count("used") - used, _count("stale") - stale) == (0, 1)


async def test_a_members_fill_that_takes_the_group_to_its_limit_is_seen(client, admin_headers, make_user):
    """b's resting buy fills at a new price of another symbol, taking the group's gross to 950 of 1,000: a's
    next order of 100, which the kept sums (500) would let through, is refused on the fresh ones."""
    rm, trader = await make_user("risk_manager"), await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0")
    y = await make_market(client, admin_headers, price="100", taker="0")
    a, b = [await make_account(client, th) for _ in range(2)]
    group = await _group(client, rm["headers"], [a, b], [{"limit_type": "max_gross_exposure", "value": "1000"}])
    await place(client, th, b, symbol=y, side="buy", type="limit", quantity="5", limit_price="90")
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="4")
    await place(client, th, a, symbol=x, side="buy", type="market", quantity="1")  # on the kept state: 500
    await set_price(client, admin_headers, y, "90")  # b: 5 at 90 = 450; the group: 950
    resp = await client.post(
        f"/api/v1/accounts/{a}/orders",
        json={"symbol": x, "side": "buy", "type": "market", "quantity": "1", "time_in_force": "gtc"},
        headers=th,
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["limit_id"] == group["limits"][0]["id"] and D(resp.json()["would_be"]) == 1050


async def test_a_groups_daily_loss_limit_is_read_every_time(client, admin_headers, make_user):
    """The day's opening equity is on no row the guard compares: a group with a daily-loss limit keeps
    nothing, and each order reads the sums."""
    rm, trader = await make_user("risk_manager"), await make_user("trader")
    th = trader["headers"]
    x = await make_market(client, admin_headers, price="100", taker="0")
    a = await make_account(client, th)
    group = await _group(client, rm["headers"], [a], [{"limit_type": "max_daily_loss", "value": "1000"}])
    used = _count("used")
    for _ in range(3):
        await place(client, th, a, symbol=x, side="buy", type="market", quantity="1")
    assert _count("used") == used and (uuid.UUID(group["id"]), x) not in client.app.state.placement_caches.group_states
    assert uuid.UUID(a) not in client.app.state.placement_caches.snapshots
