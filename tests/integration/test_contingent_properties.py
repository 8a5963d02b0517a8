"""Random interleavings of contingent placements (bracket, OTO, OCO, trailing stops), partial entry fills
(prices with volume), price updates and cancels across groups never break the group invariants:

- the exit legs of a group never fill more in total than its entry filled (an OCO: than its quantity);
- a position is never reversed by its own exits (after a sell leg's fill the position is >= 0, a buy
  leg's <= 0);
- no leg is held once its entry is final, or once its entry filled anything;
- balances agree with the fills (reconcile), and reservations with the open orders.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.domain.accounts.schemas import AccountCreate
from app.domain.accounts.services import create_account
from app.domain.identity.schemas import Principal
from app.domain.identity.services import create_user
from app.domain.markets.services import set_price, upsert_exchange, upsert_instrument
from app.domain.trading.reconcile import reconcile_account
from app.domain.trading.schemas import OrderCreate, StopLoss, TakeProfit
from app.domain.trading.services import cancel_order, place_order
from app.lib.db import create_engine
from app.lib.errors import ApiError
from tests.conftest import make_settings

prices = st.integers(min_value=95, max_value=105).map(Decimal)
offsets = st.integers(min_value=1, max_value=3).map(Decimal)
groups = st.builds(
    lambda cls, side, typ, qty, px, up, down, stop_limit: (
        "group",
        cls,
        side,
        typ,
        qty,
        px,
        up,
        down,
        stop_limit,
    ),
    st.sampled_from(["bracket", "oto_tp", "oto_sl", "oco"]),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["market", "limit"]),
    st.integers(min_value=1, max_value=12),
    prices,
    offsets,
    offsets,
    st.booleans(),
)
simple = st.tuples(st.just("simple"), st.sampled_from(["buy", "sell"]), st.integers(min_value=1, max_value=8))
trailing = st.tuples(
    st.just("trail"),
    st.sampled_from(["buy", "sell"]),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=5).map(Decimal),
)
actions = st.lists(
    st.one_of(
        groups,
        groups,
        simple,
        trailing,
        *[st.tuples(st.just("price"), prices, st.one_of(st.none(), st.integers(min_value=0, max_value=6)))]
        * 4,
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=80)),
    ),
    min_size=6,
    max_size=50,
)

INVARIANTS_SQL = """
WITH g AS (
  SELECT coalesce(o.parent_id, o.id) AS root, o.* FROM orders o
   WHERE o.account_id = :a AND o.order_class <> 'simple'
)
SELECT
  -- bracket/oto: exits filled beyond the entry's fills
  (SELECT count(*) FROM g e WHERE e.leg IS NULL
      AND (SELECT coalesce(sum(l.filled_quantity), 0) FROM g l WHERE l.root = e.id AND l.leg IS NOT NULL)
          > e.filled_quantity) AS over_entry,
  -- oco: both legs together beyond the group's quantity Q (the take-profit leg's quantity is Q minus
  -- what the stop-loss leg filled, so its own fills may not exceed it)
  (SELECT count(*) FROM g tp WHERE tp.order_class = 'oco' AND tp.leg = 'take_profit'
      AND tp.filled_quantity > tp.quantity) AS over_oco,
  -- a held leg whose entry is final or has filled
  (SELECT count(*) FROM g l JOIN orders e ON e.id = l.parent_id WHERE l.status = 'held'
      AND (e.status NOT IN ('new', 'accepted', 'partially_filled') OR e.filled_quantity > 0)) AS stale_held,
  -- an exit fill that left the position on the other side
  (SELECT count(*) FROM order_events ev JOIN orders l ON l.id = ev.order_id
    WHERE l.account_id = :a AND l.leg IS NOT NULL AND ev.fill_id IS NOT NULL
      AND ((l.side = 'sell' AND ev.position_qty < 0) OR (l.side = 'buy' AND ev.position_qty > 0)))
    AS reversed,
  (SELECT a.reserved_cash - coalesce((SELECT sum(reserved_cash) FROM orders o WHERE o.account_id = a.id
      AND o.status IN ('new', 'accepted', 'partially_filled')), 0) FROM accounts a WHERE a.id = :a)
    AS reserve_drift
"""


STATS: list = []  # (exit fills, entry fills) per example


def _group_order(symbol: str, step, last: Decimal) -> OrderCreate:
    _, cls, side, typ, qty, px, up, down, stop_limit = step
    if cls == "oco":
        closing_up = side == "sell"
        tp, sl = (last + up, last - down) if closing_up else (last - up, last + down)
        return OrderCreate(
            symbol=symbol,
            side=side,
            type="limit",
            quantity=Decimal(qty),
            order_class="oco",
            take_profit=TakeProfit(limit_price=tp),
            stop_loss=StopLoss(
                stop_price=sl, limit_price=(sl - 1 if closing_up else sl + 1) if stop_limit else None
            ),
        )
    ref = px if typ == "limit" else last
    long = side == "buy"
    tp = TakeProfit(limit_price=ref + up if long else ref - up)
    sl = StopLoss(
        stop_price=ref - down if long else ref + down,
        limit_price=((ref - down - 1) if long else (ref + down + 1)) if stop_limit else None,
    )
    order_class = "oto" if cls.startswith("oto") else "bracket"
    return OrderCreate(
        symbol=symbol,
        side=side,
        type=typ,
        quantity=Decimal(qty),
        limit_price=px if typ == "limit" else None,
        order_class=order_class,
        take_profit=tp if cls in ("bracket", "oto_tp") else None,
        stop_loss=sl if cls in ("bracket", "oto_sl") else None,
    )


async def _run(steps, allow_short: bool) -> None:
    engine = create_engine(make_settings(db_pool_size=2, db_max_overflow=2))
    try:
        async with engine.connect() as conn:
            suffix = uuid.uuid4().hex[:8].upper()
            user, _, key_id = await create_user(conn, f"cprop-{suffix.lower()}@example.com", "trader")
            principal = Principal(user_id=user.id, role="trader", key_id=key_id, email=user.email)
            symbol = f"Q{suffix}"
            async with conn.begin():
                await upsert_exchange(
                    conn,
                    {
                        "code": f"F{suffix}",
                        "name": "p",
                        "taker_fee_rate": Decimal("0.001"),
                        "maker_fee_rate": Decimal("0.0005"),
                        "slippage_bps": Decimal("0"),
                    },
                )
                await upsert_instrument(
                    conn,
                    {
                        "symbol": symbol,
                        "exchange_code": f"F{suffix}",
                        "base_asset": "Q",
                        "quote_asset": "USD",
                        "tick_size": Decimal("0.01"),
                        "lot_size": Decimal("1"),
                        "min_quantity": Decimal("1"),
                        "min_notional": Decimal("0"),
                    },
                )
            await conn.commit()
            last = Decimal(100)
            await set_price(conn, symbol, last, None, None)
            account = await create_account(
                conn, principal, AccountCreate(name="p", initial_cash=Decimal(5000), allow_short=allow_short)
            )
            placed: list[uuid.UUID] = []
            for step in steps:
                try:
                    if step[0] == "group":
                        out, _ = await place_order(
                            conn, principal, account.id, _group_order(symbol, step, last)
                        )
                        placed.extend([out.id, *(leg.id for leg in out.legs or [])])
                    elif step[0] == "simple":
                        out, _ = await place_order(
                            conn,
                            principal,
                            account.id,
                            OrderCreate(
                                symbol=symbol, side=step[1], type="market", quantity=Decimal(step[2])
                            ),
                        )
                    elif step[0] == "trail":
                        out, _ = await place_order(
                            conn,
                            principal,
                            account.id,
                            OrderCreate(
                                symbol=symbol,
                                side=step[1],
                                type="trailing_stop",
                                quantity=Decimal(step[2]),
                                trail_price=step[3],
                            ),
                        )
                        placed.append(out.id)
                    elif step[0] == "price":
                        last = step[1]
                        await set_price(
                            conn, symbol, last, None, Decimal(step[2]) if step[2] is not None else None
                        )
                    elif placed:
                        await cancel_order(conn, principal, account.id, placed[step[1] % len(placed)])
                except ApiError as exc:
                    assert exc.status_code in (409, 422), exc.detail
                await conn.commit()
                row = (await conn.execute(text(INVARIANTS_SQL), {"a": account.id})).one()
                await conn.commit()
                assert (row.over_entry, row.over_oco, row.stale_held, row.reversed, row.reserve_drift) == (
                    0,
                    0,
                    0,
                    0,
                    0,
                ), (step, row)
            drift = await reconcile_account(conn, account.id)
            assert drift.ok, drift.problems
            STATS.append(
                (
                    await conn.execute(
                        text(
                            "SELECT count(*) FILTER (WHERE o.leg IS NOT NULL),"
                            " count(*) FILTER (WHERE o.leg IS NULL AND o.order_class <> 'simple')"
                            " FROM fills f JOIN orders o ON o.id = f.order_id WHERE f.account_id = :a"
                        ),
                        {"a": account.id},
                    )
                ).one()
            )
            await conn.commit()
    finally:
        await engine.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions, allow_short=st.booleans())
# Found by this test: a short closed by its OCO's stop-loss leg, whose take-profit buy leg (holding cash)
# then ended with nothing left to exit; its reservation stayed on the account.
@example(
    steps=[
        ("simple", "buy", 1), ("simple", "sell", 1), ("simple", "sell", 1), ("cancel", 0),
        ("group", "oco", "buy", "market", 1, Decimal("95"), Decimal("1"), Decimal("1"), False),
        ("price", Decimal("101"), None),
    ],
    allow_short=True,
)
def test_random_contingent_flows_keep_group_invariants(steps, allow_short):
    asyncio.run(_run(steps, allow_short))


def test_the_flows_reach_exit_fills():
    """The examples above must exercise the invariants: exits and entries of groups do fill."""
    if not STATS:
        import pytest

        pytest.skip("run with the property test")
    assert sum(s[0] for s in STATS) > 0 and sum(s[1] for s in STATS) > 0, STATS
