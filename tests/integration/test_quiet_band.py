"""The price path's fast path: a price inside the quiet band touches no order, and no order is ever missed.

The quiet band and the order filter of matching are SQL (trading/matching.py); rules.match is the rule.
These tests check them against each other on a varied book, the fast path's transaction shape, and that
placements racing price updates on two API processes never leave an order that a later price crossed.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.domain.markets.services import PricePoint, feed_prices
from app.domain.trading import rules
from app.domain.trading.matching import _ACTS_AT_PRICE, resting_quiet_band
from app.lib.errors import ApiError
from tests.integration.helpers import make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")

CENT = Decimal("0.01")


async def _open_orders(conn, symbol: str) -> list:
    rows = await conn.execute(
        text(
            "SELECT id, side, type, time_in_force, quantity, filled_quantity, limit_price, stop_price, triggered "
            "FROM orders WHERE symbol = :s AND status IN ('new', 'accepted', 'partially_filled')"
        ),
        {"s": symbol},
    )
    return rows.all()


async def test_quiet_band_and_matching_filter_agree_with_the_matching_rules(
    client, admin_headers, make_user, db_engine
):
    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    h = user["headers"]
    acct = await make_account(client, h, cash="100000000", allow_short=True)
    # Stop-limits that trigger without filling: a sell stop-limit triggered by a dip whose limit is above it.
    for stop, limit in (("99.50", "99.90"), ("99.40", "99.95")):
        await place(
            client,
            h,
            acct,
            symbol=symbol,
            side="sell",
            type="stop_limit",
            quantity=1,
            stop_price=stop,
            limit_price=limit,
        )
    await set_price(client, admin_headers, symbol, "99.30")
    await set_price(client, admin_headers, symbol, "99.80")  # below both limits: they rest, triggered
    rng = random.Random(7)
    for _ in range(60):
        side = rng.choice(["buy", "sell"])
        kind = rng.choice(["limit", "stop", "stop_limit"])
        away = Decimal(rng.randint(1, 900)) * CENT
        below, above = Decimal("99.80") - away, Decimal("99.80") + away
        if kind == "limit":
            prices = {"limit_price": below if side == "buy" else above}
        else:
            stop = above if side == "buy" else below
            prices = {"stop_price": stop}
            if kind == "stop_limit":
                prices["limit_price"] = stop + (Decimal(rng.randint(-50, 50)) * CENT)
        await place(client, h, acct, symbol=symbol, side=side, type=kind, quantity=1, **prices)
    async with db_engine.connect() as conn:
        book = await _open_orders(conn, symbol)
        assert len(book) == 62 and sum(o.triggered for o in book) == 2
        band = await resting_quiet_band(conn, symbol)
        edges = {p for o in book for p in (o.limit_price, o.stop_price) if p is not None}
        grid = {Decimal("90") + i * Decimal("0.37") for i in range(60)}
        prices = sorted(grid | edges | {e + CENT for e in edges} | {e - CENT for e in edges})
        for price in prices:
            acting = set()
            for o in book:
                view = rules.OrderView(
                    o.side,
                    o.type,
                    o.time_in_force,
                    o.quantity,
                    o.filled_quantity,
                    o.limit_price,
                    o.stop_price,
                    o.triggered,
                )
                m = rules.match(
                    view, price, None, slippage_bps=0, tick_size=CENT, lot_size=Decimal(1), immediate=False
                )
                if m.filled or m.newly_triggered:
                    acting.add(o.id)
            selected = set(
                (
                    await conn.execute(
                        text(
                            f"SELECT id FROM orders WHERE symbol = :symbol AND status IN ('new', 'accepted', "
                            f"'partially_filled') AND {_ACTS_AT_PRICE}"
                        ),
                        {"symbol": symbol, "price": price},
                    )
                ).scalars()
            )
            assert selected == acting, price
            assert band.contains(price) == (not acting), (price, band)


async def test_a_run_inside_the_band_is_one_update_and_a_transaction_matches_once(
    client, admin_headers, make_user, db_engine
):
    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    acct = await make_account(client, user["headers"], allow_short=True)
    buy = await place(
        client,
        user["headers"],
        acct,
        symbol=symbol,
        side="buy",
        type="limit",
        quantity=1,
        limit_price="95.00",
    )
    await place(
        client,
        user["headers"],
        acct,
        symbol=symbol,
        side="sell",
        type="limit",
        quantity=1,
        limit_price="105.00",
    )
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    quiet = [PricePoint(Decimal("95.01") + (i % 999) * CENT, t0 + timedelta(seconds=i)) for i in range(300)]
    async with db_engine.connect() as conn:
        step = await feed_prices(conn, symbol, quiet)
        assert (step.consumed, step.fills, step.matched) == (300, 0, False)
        stored = (
            await conn.execute(
                text("SELECT last_price, last_price_at FROM instruments WHERE symbol = :s"), {"s": symbol}
            )
        ).one()
        assert (stored.last_price, stored.last_price_at) == (quiet[-1].price, quiet[-1].ts)
        # 101 inside; 95 reaches the buy (matched, band read again); 99 inside; 105 reaches the sell: a
        # second match, left for the next transaction.
        points = [PricePoint(Decimal(p), t0) for p in ("101.00", "95.00", "99.00", "105.00", "100.00")]
        step = await feed_prices(conn, symbol, points)
        assert (step.consumed, step.fills, step.matched) == (3, 1, True)
        status = await conn.scalar(text("SELECT status FROM orders WHERE id = :id"), {"id": buy["id"]})
        assert status == "filled"
        last = text("SELECT last_price FROM instruments WHERE symbol = :s")
        assert await conn.scalar(last, {"s": symbol}) == 99
        step = await feed_prices(conn, symbol, points[3:])
        assert (step.consumed, step.fills, step.matched) == (2, 1, True)
        assert await conn.scalar(last, {"s": symbol}) == 100
        step = await feed_prices(conn, symbol, points[1:2])  # the book is empty now: nothing to match
        assert (step.consumed, step.fills, step.matched) == (1, 0, False)
        await conn.commit()


async def test_placements_racing_price_updates_on_two_processes_are_never_missed(
    live, client, admin_headers, make_user, db_engine
):
    """Orders are placed through one API process while the other alternates the price between a level
    that touches nothing and one that crosses every order. Whatever the interleaving, an order whose
    placement had completed before a crossing price was sent must have been filled by it."""
    api_a, api_b = live
    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    h = user["headers"]
    accounts = [await make_account(client, h, cash="1000000") for _ in range(4)]
    placed: list[tuple[str, float]] = []
    crossings: list[float] = []
    stop = asyncio.Event()

    async def prices() -> None:
        for _ in range(80):
            resp = await api_b.post(
                f"/api/v1/instruments/{symbol}/price", json={"price": "100.00"}, headers=admin_headers
            )
            assert resp.status_code == 200, resp.text
            crossings.append(time.monotonic())
            resp = await api_b.post(
                f"/api/v1/instruments/{symbol}/price", json={"price": "94.00"}, headers=admin_headers
            )
            assert resp.status_code == 200, resp.text
        stop.set()

    async def bot(account: str) -> None:
        while not stop.is_set():
            resp = await api_a.post(
                f"/api/v1/accounts/{account}/orders",
                json={
                    "symbol": symbol,
                    "side": "buy",
                    "type": "limit",
                    "quantity": "1",
                    "limit_price": "95.00",
                    "time_in_force": "gtc",
                },
                headers=h,
            )
            assert resp.status_code == 201, resp.text
            placed.append((resp.json()["id"], time.monotonic()))

    await asyncio.gather(prices(), *(bot(a) for a in accounts))
    assert len(placed) > 40 and len(crossings) == 80
    async with db_engine.connect() as conn:
        open_ids = set(
            (
                await conn.execute(
                    text(
                        "SELECT id::text FROM orders WHERE symbol = :s AND status IN ('new', 'accepted', 'partially_filled')"
                    ),
                    {"s": symbol},
                )
            ).scalars()
        )
    missed = [oid for oid, done in placed if oid in open_ids and any(sent > done for sent in crossings)]
    assert missed == []


async def test_an_order_committed_while_a_price_update_waits_for_the_instrument_is_matched(
    client, admin_headers, make_user, db_engine
):
    """The deterministic form of the race: a placement holds the instrument FOR KEY SHARE and writes its
    order (as placement.py's write does) while a price update waits for the row; once it commits, the
    price update must see the order. A quiet band read before the lock, or in the locking statement
    (whose snapshot predates the wait), would miss it."""
    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    acct = await make_account(client, user["headers"])
    template = await place(
        client,
        user["headers"],
        acct,
        symbol=symbol,
        side="buy",
        type="limit",
        quantity=1,
        limit_price="90.00",
    )
    async with db_engine.connect() as placing, db_engine.connect() as pricing:
        await placing.execute(
            text("SELECT 1 FROM instruments WHERE symbol = :s FOR KEY SHARE"), {"s": symbol}
        )
        new_id = await placing.scalar(
            text("""INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, filled_quantity,
                                        limit_price, triggered, status, reserved_cash, fees, created_at, updated_at)
                    SELECT gen_random_uuid(), account_id, symbol, side, type, time_in_force, quantity, 0,
                           99.00, false, 'accepted', 0, 0, now(), now()
                      FROM orders WHERE id = :id RETURNING id"""),
            {"id": template["id"]},
        )
        update = asyncio.create_task(
            feed_prices(pricing, symbol, [PricePoint(Decimal("98.50"), datetime.now(UTC))])
        )
        await asyncio.sleep(0.5)
        assert not update.done()  # waiting for the instrument row
        await placing.commit()
        step = await asyncio.wait_for(update, 10)
        assert (step.consumed, step.matched, step.fills) == (1, True, 1)
        status = await pricing.scalar(text("SELECT status FROM orders WHERE id = :id"), {"id": new_id})
        assert status == "filled"
        await pricing.commit()


async def test_observers_see_every_committed_price_in_order_quiet_or_matched(client, admin_headers, make_user, db_engine):
    from app.domain.markets import events

    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    acct = await make_account(client, user["headers"])
    await place(client, user["headers"], acct, symbol=symbol, side="buy", type="limit", quantity=1, limit_price="95.00")
    seen: list[tuple[str, Decimal]] = []

    async def observe(sym, prices) -> None:
        seen.extend((sym, p.price) for p in prices)

    async def broken(sym, prices) -> None:
        raise RuntimeError("an observer's failure must not undo or fail a stored price")

    events.on_prices_committed(broken)
    events.on_prices_committed(observe)
    try:
        points = [PricePoint(Decimal(p), datetime.now(UTC)) for p in ("99.00", "95.00", "97.00", "98.00")]
        async with db_engine.connect() as conn:
            done = 0
            while done < len(points):
                done += (await feed_prices(conn, symbol, points[done:])).consumed
        with pytest.raises(ApiError):  # a failed transaction (unknown symbol) tells nobody
            async with db_engine.connect() as conn:
                await feed_prices(conn, "NOSUCH0", points)
    finally:
        events.COMMITTED_PRICE_OBSERVERS.remove(broken)
        events.COMMITTED_PRICE_OBSERVERS.remove(observe)
    assert seen == [(symbol, p.price) for p in points]


async def test_trailing_stops_act_when_their_hwm_moves_or_their_stop_is_reached(
    client, admin_headers, make_user, db_engine
):
    """A trailing stop acts at a price past its hwm in the trader's favour (its stop follows) as well as at
    its stop: the filter and the band agree with rules.trail_hwm and rules.match."""
    symbol = await make_market(client, admin_headers, price="100.00")
    user = await make_user("trader")
    h = user["headers"]
    acct = await make_account(client, h, cash="100000000", allow_short=True)
    rng = random.Random(11)
    for _ in range(4):  # trailing stops with different hwm: placed at different last prices
        last = Decimal("98") + Decimal(rng.randint(0, 400)) * CENT
        await set_price(client, admin_headers, symbol, str(last))
        for side in ("buy", "sell"):
            trail = {"trail_price": str(Decimal(rng.randint(20, 300)) * CENT)} if rng.random() < 0.5 else {
                "trail_percent": str(Decimal(rng.randint(5, 40)) / 10)}
            await place(client, h, acct, symbol=symbol, side=side, type="trailing_stop", quantity=1, **trail)
    for side, limit in (("buy", "95.00"), ("sell", "105.00")):
        await place(client, h, acct, symbol=symbol, side=side, type="limit", quantity=1, limit_price=limit)
    async with db_engine.connect() as conn:
        book = (
            await conn.execute(
                text(
                    "SELECT id, side, type, time_in_force, quantity, filled_quantity, limit_price, "
                    "stop_price, triggered, hwm FROM orders WHERE symbol = :s "
                    "AND status IN ('new', 'accepted', 'partially_filled')"
                ),
                {"s": symbol},
            )
        ).all()
        # (later prices may have triggered and filled some of the tighter trails)
        assert sum(o.type == "trailing_stop" for o in book) >= 4 and len({o.hwm for o in book if o.hwm}) >= 2
        band = await resting_quiet_band(conn, symbol)
        edges = {p for o in book for p in (o.limit_price, o.stop_price, o.hwm) if p is not None}
        prices = sorted(edges | {e + CENT for e in edges} | {e - CENT for e in edges}
                        | {Decimal("90") + i * Decimal("0.29") for i in range(70)})
        for price in prices:
            acting = set()
            for o in book:
                if o.type == "trailing_stop" and rules.trail_hwm(o.side, o.hwm, price) != o.hwm:
                    acting.add(o.id)
                    continue
                view = rules.OrderView(o.side, o.type, o.time_in_force, o.quantity, o.filled_quantity,
                                       o.limit_price, o.stop_price, o.triggered)
                m = rules.match(view, price, None, slippage_bps=0, tick_size=CENT, lot_size=Decimal(1),
                                immediate=False)
                if m.filled or m.newly_triggered:
                    acting.add(o.id)
            selected = set(
                (
                    await conn.execute(
                        text(
                            f"SELECT id FROM orders WHERE symbol = :symbol AND status IN ('new', 'accepted', "
                            f"'partially_filled') AND {_ACTS_AT_PRICE}"
                        ),
                        {"symbol": symbol, "price": price},
                    )
                ).scalars()
            )
            assert selected == acting, price
            # Sound everywhere; exact except at an hwm itself, where the band's open bound says "may act"
            # and nothing does (a price equal to the hwm moves nothing): one matching pass that finds nothing.
            if band.contains(price):
                assert not acting, (price, band)
            elif price not in {o.hwm for o in book}:
                assert acting, (price, band)
