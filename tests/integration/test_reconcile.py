"""`tradedesk reconcile` also checks the account copies that have no foreign key (migration 0005)."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from app.domain.trading.reconcile import reconcile_account
from tests.integration.helpers import make_account, place
from tests.integration.test_trading import setup


async def test_fills_and_events_filed_under_the_wrong_account_are_reported(client, admin_headers, make_user, db_engine):
    h, sym, acct = await setup(client, admin_headers, make_user)
    other = await make_account(client, h)
    order = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="2")
    async with db_engine.connect() as conn:
        assert (await reconcile_account(conn, uuid.UUID(acct))).ok
        assert (await reconcile_account(conn, uuid.UUID(other))).ok

        await conn.execute(text("UPDATE order_events SET account_id = :other WHERE order_id = :o"),
                           {"other": other, "o": order["id"]})
        drift = await reconcile_account(conn, uuid.UUID(acct))  # where the events' order is
        assert drift.problems == ["3 order events of this account's orders carry another account"]

        await conn.execute(text("UPDATE order_events SET account_id = :a WHERE order_id = :o"), {"a": acct, "o": order["id"]})
        assert (await reconcile_account(conn, uuid.UUID(acct))).ok
        await conn.execute(text("UPDATE fills SET account_id = :other WHERE order_id = :o"), {"other": other, "o": order["id"]})
        drift = await reconcile_account(conn, uuid.UUID(other))  # where the fill is filed
        assert "1 fills carry this account but belong to another account's orders" in drift.problems
        assert any(p.startswith("cash ") for p in drift.problems)  # the misfiled fill also moves cash
        assert not (await reconcile_account(conn, uuid.UUID(acct))).ok
        await conn.rollback()
