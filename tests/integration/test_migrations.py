from __future__ import annotations

import asyncio
import uuid

import asyncpg

from app.lib.migrate import downgrade, upgrade
from app.lib.models import metadata
from tests.conftest import _admin_exec, _db_url


def test_upgrade_downgrade_upgrade_on_empty_database():
    name = f"td_mig_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin_exec(f'CREATE DATABASE "{name}"'))
    url = _db_url(name)
    try:
        upgrade(url)
        downgrade(url, "base")

        async def tables() -> set[str]:
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                return {r["tablename"] for r in rows}
            finally:
                await conn.close()

        assert asyncio.run(tables()) <= {"alembic_version"}
        upgrade(url)
        assert set(metadata.tables) <= asyncio.run(tables())
    finally:
        asyncio.run(_admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_models_match_migrations(database_url):
    """Autogenerate finds nothing to do: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(database_url.replace("+asyncpg", "+psycopg"))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert diff == []


def test_orders_pages_keep_room_for_updates_in_place(database_url):
    """Migration 0020: the orders table fills its pages to 85 %, so a trailing stop's move and a replace
    (no indexed column changes) can be written in the same page, without index entries."""

    async def reloptions() -> list[str]:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            return await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'orders'::regclass") or []
        finally:
            await conn.close()

    assert "fillfactor=85" in asyncio.run(reloptions())
