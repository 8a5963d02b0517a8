"""Benchmark fixture data, shared by our app and the peer apps (they all read the same tables).

Idempotent: re-running reuses the user, key, exchange, instrument and account and only tops the order
history up to the requested depth. Usage::

    python -m benchmarks.peers.seed --db-url postgresql://postgres@127.0.0.1:5432/td_peers [--orders 100000]

prints ``{"api_key", "account_id", "user_id", "symbol", "orders"}`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

# Deterministic on purpose: keys are stored hashed, so only a fixed secret lets a re-run print the key
# again. It grants a trader role on a throw-away benchmark database and nothing else.
DEFAULT_API_KEY = "td_bench_peers_0123456789abcdefghijklmnopqrstuvwxyzABCD"
EMAIL = "bench-peers@tradedesk.local"
EXCHANGE = "BENCHX"
SYMBOL = "DEMO"
ACCOUNT_NAME = "bench-peers"
LAST_PRICE = Decimal("100.00")
CASH = Decimal("1000000000000")

ORDER_COLUMNS = (
    "id",
    "account_id",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "quantity",
    "filled_quantity",
    "avg_fill_price",
    "limit_price",
    "stop_price",
    "triggered",
    "status",
    "reject_reason",
    "reserved_cash",
    "fees",
    "expires_at",
    "created_at",
    "updated_at",
)


def plain_url(url: str) -> str:
    """asyncpg wants a libpq URL; accept the SQLAlchemy spellings used elsewhere in the repo."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _history(account_id: uuid.UUID, start: int, count: int, now: datetime) -> list[tuple]:
    # Only orders that never filled (canceled / expired / rejected): history with fills would need the
    # matching fills, cash and positions to stay reconcilable, and the list endpoint does not care.
    rng = random.Random(start)
    rows = []
    for i in range(start, start + count):
        # A higher index is older, so topping the history up never lands above the live orders.
        ts = now - timedelta(seconds=7 * (i + 1))
        side = "buy" if i % 2 else "sell"
        status = ("canceled", "expired", "rejected")[i % 3]
        limit = Decimal(rng.randint(8000, 12000)) / 100
        rows.append(
            (
                uuid.uuid4(),
                account_id,
                f"hist-{i}",
                SYMBOL,
                side,
                "limit",
                "day" if status == "expired" else "gtc",
                Decimal(rng.randint(1, 50)),
                Decimal(0),
                None,
                limit,
                None,
                False,
                status,
                "insufficient buying power" if status == "rejected" else None,
                Decimal(0),
                Decimal(0),
                ts + timedelta(hours=8) if status == "expired" else None,
                ts,
                ts,
            )
        )
    return rows


async def _ensure_account(conn: asyncpg.Connection, user_id: uuid.UUID, name: str) -> uuid.UUID:
    """The benchmark user's account of that name, created with the seeded cash if it does not exist."""
    account_id = await conn.fetchval(
        "SELECT id FROM accounts WHERE owner_id = $1 AND name = $2 ORDER BY created_at LIMIT 1", user_id, name
    )
    if account_id is None:
        account_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO accounts (id, owner_id, name, base_currency, initial_cash, cash, peak_equity)
               VALUES ($1, $2, $3, 'USD', $4, $4, $4)""",
            account_id,
            user_id,
            name,
            CASH,
        )
    return account_id


async def seed(db_url: str, *, orders: int = 100_000, api_key: str = DEFAULT_API_KEY, accounts: int = 1) -> dict:
    conn = await asyncpg.connect(plain_url(db_url))
    try:
        async with conn.transaction():
            # One seeder at a time; the rest is check-then-insert.
            await conn.execute("SELECT pg_advisory_xact_lock(7305002)")
            user_id = await conn.fetchval("SELECT id FROM users WHERE lower(email) = $1", EMAIL)
            if user_id is None:
                user_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO users (id, email, role) VALUES ($1, $2, 'trader')", user_id, EMAIL
                )
            digest = hashlib.sha256(api_key.encode()).hexdigest()
            await conn.execute(
                """INSERT INTO api_keys (id, user_id, name, prefix, key_hash) VALUES ($1, $2, 'bench', $3, $4)
                   ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, expires_at = NULL""",
                uuid.uuid4(),
                user_id,
                api_key[:10],
                digest,
            )
            await conn.execute(
                """INSERT INTO exchanges (code, name, maker_fee_rate, taker_fee_rate)
                   VALUES ($1, 'Benchmark Exchange', 0.0005, 0.001) ON CONFLICT (code) DO NOTHING""",
                EXCHANGE,
            )
            await conn.execute(
                """INSERT INTO instruments (symbol, exchange_code, base_asset, quote_asset, tick_size,
                       lot_size, min_quantity, min_notional, last_price, last_price_at)
                   VALUES ($1, $2, 'DEMO', 'USD', 0.01, 1, 1, 1, $3, now())
                   ON CONFLICT (symbol) DO UPDATE
                   SET last_price = coalesce(instruments.last_price, EXCLUDED.last_price),
                       last_price_at = coalesce(instruments.last_price_at, EXCLUDED.last_price_at),
                       status = 'trading'""",
                SYMBOL,
                EXCHANGE,
                LAST_PRICE,
            )
            account_id = await _ensure_account(conn, user_id, ACCOUNT_NAME)
            # Extra accounts of the same user (no history): bots each trading their own account, so that
            # placement load is not serialised on one account's row lock.
            extra_ids = []
            for k in range(2, accounts + 1):
                extra_ids.append(await _ensure_account(conn, user_id, f"{ACCOUNT_NAME}-{k}"))
            have = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE account_id = $1 AND client_order_id LIKE 'hist-%'",
                account_id,
            )
            missing = max(orders - have, 0)
            now = datetime.now(UTC) - timedelta(minutes=1)
            batch = 20_000
            for start in range(have, have + missing, batch):
                n = min(batch, have + missing - start)
                await conn.copy_records_to_table(
                    "orders", records=_history(account_id, start, n, now), columns=ORDER_COLUMNS
                )
        if missing:
            await conn.execute("ANALYZE orders")
        total = await conn.fetchval("SELECT count(*) FROM orders WHERE account_id = $1", account_id)
    finally:
        await conn.close()
    return {
        "api_key": api_key,
        "user_id": str(user_id),
        "account_id": str(account_id),
        "account_ids": [str(a) for a in (account_id, *extra_ids)],
        "symbol": SYMBOL,
        "orders": total,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--orders", type=int, default=100_000, help="historical orders on the account")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--accounts", type=int, default=1, help="accounts of the benchmark user")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(seed(args.db_url, orders=args.orders, api_key=args.api_key, accounts=args.accounts))))


if __name__ == "__main__":
    main()
