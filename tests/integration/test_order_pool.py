"""The raw asyncpg pool behind order placement (app/lib/db.py: create_order_pool)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from app.lib.db import create_order_pool
from app.lib.dependency_errors import classify_dependency_error


async def test_a_released_connection_comes_back_without_its_open_transaction(settings):
    pool = await create_order_pool(dataclasses.replace(settings, db_order_pool_size=1))
    try:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")  # left open on purpose, as a failed handler would
            await conn.execute("CREATE TEMP TABLE order_pool_probe (x int)")
            assert conn.is_in_transaction()
        async with pool.acquire() as conn:  # one connection: the same one again
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert not conn.is_in_transaction()
            # The temporary table was rolled back with its transaction.
            assert await conn.fetchval("SELECT to_regclass('pg_temp.order_pool_probe')") is None
            assert await conn.fetchval("SELECT current_setting('application_name')") == "tradedesk"
    finally:
        await pool.close()


async def test_a_release_sends_nothing_and_keeps_the_pools_server_settings(settings):
    """No session reset on release (asyncpg's default is a RESET ALL ... round trip per release): the last
    statement PostgreSQL saw from the released connection is the handler's own. The pool's server settings
    (statement timeout, application name) are what every checkout sees."""
    import asyncpg

    from app.lib.db import libpq_url

    pool = await create_order_pool(dataclasses.replace(settings, db_order_pool_size=1, db_statement_timeout_ms=4321))
    other = await asyncpg.connect(libpq_url(settings.database_url))
    try:
        for _ in range(2):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "4321ms"
                backend = await conn.fetchval("SELECT pg_backend_pid() /* order-pool-probe */")
        await asyncio.sleep(0.05)
        last = await other.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", backend)
        assert last == "SELECT pg_backend_pid() /* order-pool-probe */", last
    finally:
        await other.close()
        await pool.close()


async def test_the_pool_opens_lazily_and_an_unreachable_database_is_a_503(settings):
    unreachable = dataclasses.replace(settings, database_url="postgresql://postgres@127.0.0.1:1/none")
    pool = await create_order_pool(unreachable)  # the API starts while PostgreSQL is down
    try:
        with pytest.raises(OSError) as caught:
            async with pool.acquire():
                pass
        assert classify_dependency_error(caught.value)[0] == 503
    finally:
        await pool.close()


async def test_placement_validation_and_the_orders_list_run_on_the_order_pool(client, admin_headers, make_user, app_state):
    from tests.integration.test_trading import setup

    headers, sym, acct = await setup(client, admin_headers, make_user)
    pool = app_state.order_pool
    acquired: list[str] = []

    class CountingPool:
        def acquire(self, *args, **kwargs):
            acquired.append("acquire")
            return pool.acquire(*args, **kwargs)

    app_state.order_pool = CountingPool()
    try:
        order = {"symbol": sym, "side": "buy", "type": "market", "quantity": "1"}
        r = await client.post(f"/api/v1/accounts/{acct}/orders/validate", headers=headers, json=order)
        assert r.status_code == 200, r.text
        r = await client.post(f"/api/v1/accounts/{acct}/orders", headers=headers, json=order)
        assert r.status_code == 201, r.text
        r = await client.get(f"/api/v1/accounts/{acct}/orders", headers=headers)
        assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
        r = await client.get(f"/api/v1/accounts/{acct}/positions", headers=headers)  # not an order hot path
        assert r.status_code == 200, r.text
    finally:
        app_state.order_pool = pool
    assert acquired == ["acquire", "acquire", "acquire"]
    # The connections went back to the pool, idle and outside a transaction.
    assert pool.get_idle_size() == pool.get_size()


async def test_shutdown_does_not_wait_forever_for_a_stuck_connection(settings, monkeypatch):
    from app.lib import state

    resources = await state.open_resources(dataclasses.replace(settings, db_order_pool_size=1))
    conn = await resources.order_pool.acquire()  # never released, as a request stuck in PostgreSQL
    backend = await conn.fetchval("SELECT pg_backend_pid()")

    monkeypatch.setattr(state, "ORDER_POOL_CLOSE_SECONDS", 0.2)
    await asyncio.wait_for(resources.close(), timeout=5)
    assert resources.order_pool.is_closing()
    # The stuck connection was terminated, not left open: its backend goes away.
    import asyncpg

    from app.lib.db import libpq_url

    other = await asyncpg.connect(libpq_url(settings.database_url))
    try:
        for _ in range(50):
            if not await other.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the stuck connection's backend is still there")
    finally:
        await other.close()


async def test_an_exhausted_order_pool_is_a_503_after_the_pool_timeout(settings):
    from types import SimpleNamespace

    from app.lib.db import order_connection

    short = dataclasses.replace(settings, db_order_pool_size=1, db_pool_timeout=0.2)
    pool = await create_order_pool(short)
    state = SimpleNamespace(order_pool=pool, settings=short)
    try:
        async with order_connection(state):  # the only connection, held
            started = asyncio.get_running_loop().time()
            with pytest.raises(asyncio.TimeoutError) as caught:
                async with order_connection(state):
                    pass
            assert asyncio.get_running_loop().time() - started < 2
            assert classify_dependency_error(caught.value)[0] == 503
        async with order_connection(state) as conn:  # released: available again
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
