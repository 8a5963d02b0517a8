"""Random sequences of place / cancel / price update through the service layer never produce an illegal
transition (the state machine raises), negative cash on a long-only account, or balances that disagree
with the fills (reconcile finds zero drift)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.accounts.schemas import AccountCreate
from app.domain.accounts.services import create_account
from app.domain.identity.schemas import Principal
from app.domain.identity.services import create_user
from app.domain.markets.services import set_price, upsert_exchange, upsert_instrument
from app.domain.trading.reconcile import reconcile_account
from app.domain.trading.schemas import OrderCreate
from app.domain.trading.services import cancel_order, place_order
from app.lib.db import create_engine
from app.lib.errors import ApiError
from tests.conftest import make_settings

prices = st.integers(min_value=80, max_value=120).map(lambda p: Decimal(p))
orders = st.builds(
    lambda side, typ, qty, px, stop, tif: ("place", side, typ, qty, px, stop, tif),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["market", "limit", "stop", "stop_limit"]),
    st.integers(min_value=1, max_value=30),
    prices,
    prices,
    st.sampled_from(["gtc", "ioc", "fok", "day"]),
)
actions = st.lists(
    st.one_of(
        orders,
        st.tuples(st.just("price"), prices, st.one_of(st.none(), st.integers(min_value=0, max_value=40))),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50)),
    ),
    min_size=5,
    max_size=40,
)


async def _run(steps, allow_short: bool) -> None:
    engine = create_engine(make_settings(db_pool_size=2, db_max_overflow=2))
    try:
        async with engine.connect() as conn:
            suffix = uuid.uuid4().hex[:8].upper()
            user, _, key_id = await create_user(conn, f"prop-{suffix.lower()}@example.com", "trader")
            principal = Principal(user_id=user.id, role="trader", key_id=key_id, email=user.email)
            symbol = f"P{suffix}"
            async with conn.begin():
                await upsert_exchange(conn, {"code": f"E{suffix}", "name": "p", "taker_fee_rate": Decimal("0.001"),
                                             "maker_fee_rate": Decimal("0.0005"), "slippage_bps": Decimal("5")})
                await upsert_instrument(conn, {"symbol": symbol, "exchange_code": f"E{suffix}", "base_asset": "P",
                                               "quote_asset": "USD", "tick_size": Decimal("0.01"), "lot_size": Decimal("1"),
                                               "min_quantity": Decimal("1"), "min_notional": Decimal("0")})
            await conn.commit()
            await set_price(conn, symbol, Decimal(100), None, None)
            account = await create_account(conn, principal, AccountCreate(name="p", initial_cash=Decimal(2000), allow_short=allow_short))
            placed: list[uuid.UUID] = []
            for step in steps:
                if step[0] == "place":
                    _, side, typ, qty, px, stop, tif = step
                    data = OrderCreate(
                        symbol=symbol, side=side, type=typ, quantity=Decimal(qty),
                        limit_price=px if typ in ("limit", "stop_limit") else None,
                        stop_price=stop if typ in ("stop", "stop_limit") else None, time_in_force=tif,
                    )
                    try:
                        out, _ = await place_order(conn, principal, account.id, data)
                        placed.append(out.id)
                    except ApiError as exc:
                        assert exc.status_code == 422, exc.detail
                elif step[0] == "price":
                    await set_price(conn, symbol, step[1], None, Decimal(step[2]) if step[2] is not None else None)
                elif placed:
                    try:
                        await cancel_order(conn, principal, account.id, placed[step[1] % len(placed)])
                    except ApiError as exc:
                        assert exc.status_code == 409
                await conn.commit()
                snapshot = (await conn.exec_driver_sql(
                    "SELECT cash, reserved_cash FROM accounts WHERE id = $1".replace("$1", f"'{account.id}'")
                )).one()
                await conn.commit()
                if not allow_short:
                    assert snapshot.cash >= 0, snapshot
                    qty = (await conn.exec_driver_sql(
                        f"SELECT coalesce(sum(quantity), 0) FROM positions WHERE account_id = '{account.id}'"
                    )).scalar()
                    await conn.commit()
                    assert qty >= 0
                assert snapshot.reserved_cash >= 0
            drift = await reconcile_account(conn, account.id)
            assert drift.ok, drift.problems
            reserved = (await conn.exec_driver_sql(
                f"SELECT a.reserved_cash - coalesce((SELECT sum(reserved_cash) FROM orders o WHERE o.account_id = a.id "
                f"AND o.status IN ('new','accepted','partially_filled')), 0) FROM accounts a WHERE a.id = '{account.id}'"
            )).scalar()
            assert reserved == 0, "account reservation must equal the sum of open orders' reservations"
            await conn.commit()
    finally:
        await engine.dispose()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions, allow_short=st.booleans())
def test_random_order_flows_keep_invariants(steps, allow_short):
    asyncio.run(_run(steps, allow_short))
