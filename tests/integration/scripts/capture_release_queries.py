"""Record the SQL a release runs, for tests/integration/test_migration_compat.py.

Run with a release's source tree first on sys.path (`cd <tree> && python <this file> OUT.json`): it
creates a scratch database, migrates it to that tree's head, drives the core API flows in-process
(users and keys, markets and prices, accounts, orders, fills, cancels, risk limits, trading state,
schedules) and writes every statement with its parameters, in order, to OUT.json. SQLAlchemy's
statements come from the `before_cursor_execute` event, the order path's raw asyncpg ones from asyncpg's
query logger on the order pool's connections.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import os
import sys
import uuid
from typing import Any

sys.path.insert(0, os.getcwd())

import asyncpg  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

SERVER = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
STATEMENTS: list[dict[str, Any]] = []


def encode(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def record(sql: str, args: Any) -> None:
    STATEMENTS.append({"sql": sql, "args": [encode(a) for a in (args or ())]})


@event.listens_for(Engine, "before_cursor_execute")
def _sqlalchemy(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
    for params in parameters if executemany else [parameters]:
        record(statement, params)


def _db_url(name: str) -> str:
    head, _, _ = SERVER.rpartition("/")
    return f"{head}/{name}"


async def flow(settings) -> None:  # noqa: ANN001
    from litestar.testing import AsyncTestClient

    import app.lib.db as db
    from app.server.app import create_app

    original_init = db._numeric_as_text

    async def init(connection) -> None:  # noqa: ANN001
        await original_init(connection)
        connection.add_query_logger(lambda q: record(q.query, q.args))

    db._numeric_as_text = init
    admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
    async with AsyncTestClient(app=create_app(settings), timeout=60) as c:

        async def call(method: str, url: str, expect: int, body: Any = None, headers=admin) -> Any:  # noqa: ANN001
            resp = await c.request(method, url, json=body, headers=headers)
            assert resp.status_code == expect, (method, url, resp.status_code, resp.text)
            return resp.json() if resp.content else None

        user = await call("POST", "/api/v1/users", 201, {"email": "capture@example.com", "role": "trader"})
        trader = {"Authorization": f"Bearer {user['api_key']}"}
        await call("GET", "/api/v1/users/me", 200, headers=trader)
        key = await call("POST", "/api/v1/auth/keys", 201, {"name": "bot"}, trader)
        await call("POST", f"/api/v1/auth/keys/{key['id']}/rotate", 201, {"grace_seconds": 60}, trader)
        await call("DELETE", f"/api/v1/auth/keys/{key['id']}", 204, headers=trader)
        await call(
            "POST", "/api/v1/exchanges", 201, {"code": "CAPX", "name": "Capture", "taker_fee_rate": "0.001"}
        )
        await call(
            "POST",
            "/api/v1/instruments",
            201,
            {
                "symbol": "CAP",
                "exchange": "CAPX",
                "base_asset": "CAP",
                "quote_asset": "USD",
                "tick_size": "0.01",
                "lot_size": "1",
                "min_quantity": "1",
                "min_notional": "0",
            },
        )
        await call("POST", "/api/v1/instruments/CAP/price", 200, {"price": "100"})
        acct = (
            await call("POST", "/api/v1/accounts", 201, {"name": "cap", "initial_cash": "100000"}, trader)
        )["id"]
        orders = f"/api/v1/accounts/{acct}/orders"
        market = {"symbol": "CAP", "side": "buy", "type": "market", "quantity": "5", "time_in_force": "gtc"}
        await call("POST", orders, 201, market, trader)
        resting = await call(
            "POST",
            orders,
            201,
            {
                "symbol": "CAP",
                "side": "buy",
                "type": "limit",
                "quantity": "2",
                "limit_price": "90",
                "time_in_force": "gtc",
            },
            trader,
        )
        await call("POST", "/api/v1/instruments/CAP/price", 200, {"price": "89"})
        limit = await call(
            "POST",
            orders,
            201,
            {
                "symbol": "CAP",
                "side": "sell",
                "type": "limit",
                "quantity": "1",
                "limit_price": "150",
                "time_in_force": "gtc",
            },
            trader,
        )
        await call("DELETE", f"{orders}/{limit['id']}", 200, headers=trader)
        for path in (
            orders,
            f"{orders}/{resting['id']}",
            f"{orders}/{resting['id']}/fills",
            f"{orders}/{resting['id']}/events",
            f"/api/v1/accounts/{acct}/positions",
            f"/api/v1/accounts/{acct}/fills",
            f"/api/v1/accounts/{acct}",
        ):
            await call("GET", path, 200, headers=trader)
        limits = f"/api/v1/accounts/{acct}/risk/limits"
        await call("POST", limits, 201, {"limit_type": "max_order_quantity", "value": "3"})
        await call("POST", orders, 422, {**market, "quantity": "4"}, trader)
        await call("GET", f"/api/v1/accounts/{acct}/risk/metrics", 200, headers=trader)
        await call("POST", f"/api/v1/accounts/{acct}/risk/monitor", 200)
        await call(
            "PUT", f"/api/v1/accounts/{acct}/trading-state", 200, {"state": "halted", "reason": "capture"}
        )
        await call("GET", "/api/v1/jobs/schedules", 200)
        await call("GET", "/api/v1/users", 200)


async def main() -> str:
    from dataclasses import fields

    from app.lib.db import async_url
    from app.lib.migrate import upgrade
    from app.lib.settings import Settings

    name = f"td_capture_{uuid.uuid4().hex[:8]}"
    admin_conn = await asyncpg.connect(_db_url("postgres"))
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, _db_url(name))
        head = await (await asyncpg.connect(_db_url(name))).fetchval(
            "SELECT version_num FROM alembic_version"
        )
        prefix = f"tdcapture-{uuid.uuid4().hex[:6]}"
        wanted = dict(
            env="test",
            database_url=async_url(_db_url(name)),
            redis_url=REDIS,
            queue_name=prefix,
            redis_prefix=prefix,
            admin_api_key=f"td_capture_admin_{uuid.uuid4().hex}",
            workers_in_process=False,
            log_level="WARNING",
            access_log=False,
        )
        settings = Settings(**{k: v for k, v in wanted.items() if k in {f.name for f in fields(Settings)}})
        STATEMENTS.clear()
        await flow(settings)
    finally:
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()
    return head


def write(out: str, head: str) -> None:
    with open(out, "w") as f:
        json.dump({"revision": head, "statements": STATEMENTS}, f, indent=1)
        f.write("\n")
    print(f"{len(STATEMENTS)} statements at revision {head} -> {out}", file=sys.stderr)


write(sys.argv[1], asyncio.run(main()))
