"""Expand-then-contract: the previous release keeps working against a database migrated to head.

During a release both versions run against the new schema (docs/DEPLOYMENT.md: blue-green and rolling
updates), so a migration may add but not take away what the previous release uses.

- The statements the previous release runs (tests/integration/data/release_queries.json, recorded by
  scripts/capture_release_queries.py from that release's source: users and keys, markets, accounts,
  orders, fills, risk, trading state) are replayed in order, with their parameters, against a fresh
  database migrated to head: every one must succeed.
- The schema at head keeps every table and column of the newest migration's parent revision with its
  type, adds no NOT NULL without a default to an existing table, and tightens no column to NOT NULL.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import uuid
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory

from app.lib.migrate import alembic_config, upgrade
from tests.conftest import _admin_exec, _db_url

CAPTURED = Path(__file__).with_name("data") / "release_queries.json"
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        return {
            "$decimal": decimal.Decimal,
            "$uuid": uuid.UUID,
            "$datetime": dt.datetime.fromisoformat,
            "$date": dt.date.fromisoformat,
            "$time": dt.time.fromisoformat,
            "$bytes": base64.b64decode,
        }.get(tag, lambda v: value)(raw)
    return value


class ScratchDatabase:
    def __init__(self) -> None:
        self.name = f"td_compat_{uuid.uuid4().hex[:8]}"
        self.url = _db_url(self.name)

    def __enter__(self) -> ScratchDatabase:
        asyncio.run(_admin_exec(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run(_admin_exec(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


async def _replay(url: str, statements: list[dict]) -> list[str]:
    conn = await asyncpg.connect(url)
    failures = []
    try:
        # The order path's connections exchange NUMERIC as text (app/lib/db.py); str and Decimal both bind.
        await conn.set_type_codec(
            "numeric", encoder=str, decoder=decimal.Decimal, schema="pg_catalog", format="text"
        )
        # Foreign keys off (they are triggers; NOT NULL, CHECK and types still apply): the order path's
        # optimistic writes are conditional on versions and timestamps of the recording run, so a replayed
        # insert may legitimately write nothing, and rows that refer to it would fail for that reason alone.
        await conn.execute("SET session_replication_role = replica")
        async with conn.transaction():
            for i, statement in enumerate(statements):
                sql = statement["sql"]
                if sql.lstrip().upper().startswith(TRANSACTION_CONTROL):
                    continue
                try:
                    async with conn.transaction():  # a savepoint: one failure does not hide the next
                        await conn.execute(sql, *_decode(statement["args"])) if statement[
                            "args"
                        ] else await conn.execute(sql)
                except Exception as exc:
                    failures.append(f"#{i} {type(exc).__name__}: {exc}\n    {sql[:300]}")
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    return failures


class _Rollback(Exception):
    pass


def test_previous_release_statements_run_at_head():
    captured = json.loads(CAPTURED.read_text())
    scripts = _scripts()
    head = scripts.get_current_head()
    # Recorded from an earlier release, not from this tree's head (else the test proves nothing).
    assert captured["revision"] != head
    assert captured["revision"] in {rev.revision for rev in scripts.iterate_revisions(head, "base")}
    assert len(captured["statements"]) > 50
    with ScratchDatabase() as db:
        upgrade(db.url)
        failures = asyncio.run(_replay(db.url, captured["statements"]))
    assert not failures, "statements of the previous release fail at head:\n" + "\n".join(failures)


def test_the_replay_catches_a_contracting_migration():
    """Guards the test above: the same replay against a schema with a column dropped fails."""
    captured = json.loads(CAPTURED.read_text())
    with ScratchDatabase() as db:
        upgrade(db.url)
        asyncio.run(_exec(db.url, "ALTER TABLE orders DROP COLUMN client_order_id"))
        failures = asyncio.run(_replay(db.url, captured["statements"]))
    assert failures and any("client_order_id" in f for f in failures)


async def _exec(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _columns(url: str) -> dict[tuple[str, str], tuple[str, bool, bool]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' AS nullable,"
            " column_default IS NOT NULL OR is_identity = 'YES' AS defaulted"
            " FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {
        (r["table_name"], r["column_name"]): (r["data_type"], r["nullable"], r["defaulted"]) for r in rows
    }


def test_newest_migration_only_expands():
    scripts = _scripts()
    head = scripts.get_revision(scripts.get_current_head())
    parent = head.down_revision
    assert isinstance(parent, str), "the newest migration has one parent"
    with ScratchDatabase() as db:
        upgrade(db.url, parent)
        before = asyncio.run(_columns(db.url))
        upgrade(db.url)
        after = asyncio.run(_columns(db.url))
    problems = []
    old_tables = {table for table, _ in before}
    for key, (data_type, nullable, _) in before.items():
        if key not in after:
            problems.append(f"{key} dropped or renamed")
        elif after[key][0] != data_type:
            problems.append(f"{key} changed type {data_type} -> {after[key][0]}")
        elif nullable and not after[key][1]:
            problems.append(f"{key} became NOT NULL")
    for key, (_, nullable, defaulted) in after.items():
        if key not in before and key[0] in old_tables and not (nullable or defaulted):
            problems.append(f"{key} added NOT NULL without a default: the previous release's INSERTs fail")
    assert not problems, f"migration {head.revision} contracts the schema:\n" + "\n".join(problems)
