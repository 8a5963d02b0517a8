"""EXPLAIN (ANALYZE, BUFFERS) of every hot query on a production-sized database, as markdown.

    python -m benchmarks.explain_plans [--orders 1000000] [--candles-per-symbol 1000000] [--plans all]

Creates a scratch database (td_meas_*), migrates it, bulk-generates realistic data in SQL
(generate_series: ~1,000 users/accounts, 1M orders with one hot account of 100k, fills, order events,
positions, equity snapshots, risk limits, 10 symbols x 1M one-minute candles), VACUUM ANALYZEs it and
prints the plan of each hot statement with real parameter values, then drops the database.

Raw-asyncpg statements (placement, order list, candles, matching scan) are explained exactly as the app
sends them. Statements built with SQLAlchemy (risk metrics, monitor, positions, snapshots) are captured
from a real call of the service function (`before_cursor_execute`) and explained with the captured
parameters, so the SQL is byte-for-byte what the app runs. Statements that write run inside a
transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from app.lib.settings import Settings
from benchmarks.conftest import _admin, _url

SYMBOLS = [f"S{i:02d}" for i in range(10)]
N_USERS = 1000
HOT_ORDERS = 100_000
BIG_TABLE_ROWS = 10_000  # a Seq Scan on a table larger than this is flagged
SLOW_MS = 5.0


def md5_uuid(text_: str) -> uuid.UUID:
    """Same as PostgreSQL's md5(text)::uuid: deterministic ids the script can recompute."""
    return uuid.UUID(hashlib.md5(text_.encode()).hexdigest())


def account_id(n: int) -> uuid.UUID:
    return md5_uuid(f"a{n}")


def user_id(n: int) -> uuid.UUID:
    return md5_uuid(f"u{n}")


# ------------------------------------------------------------------------------------------ generation

SETUP = """
SET session_replication_role = replica;   -- bulk load: skip FK triggers (data is consistent by construction)
SET synchronous_commit = off;
SET work_mem = '64MB';
SET maintenance_work_mem = '512MB';
"""

GEN_REFERENCE = """
INSERT INTO exchanges (code, name, taker_fee_rate, maker_fee_rate, slippage_bps)
VALUES ('EX', 'bench exchange', 0.001, 0.0005, 0);
INSERT INTO instruments (symbol, exchange_code, base_asset, quote_asset, tick_size, lot_size, min_quantity,
                         min_notional, last_price, last_price_at)
SELECT 'S' || lpad(g::text, 2, '0'), 'EX', 'B' || g, 'USD', 0.01, 1, 1, 0, 100 + g * 10, now()
  FROM generate_series(0, 9) g;
INSERT INTO users (id, email, role)
SELECT md5('u' || g)::uuid, 'user' || g || '@bench.example', 'trader' FROM generate_series(0, {users} - 1) g;
INSERT INTO accounts (id, owner_id, name, base_currency, initial_cash, cash, peak_equity, created_at)
SELECT md5('a' || g)::uuid, md5('u' || g)::uuid, 'acct ' || g, 'USD', 1000000, 900000, 1010000,
       now() - interval '400 days'
  FROM generate_series(0, {users} - 1) g;
"""

# Account 0 is hot (HOT_ORDERS orders); the rest share the remainder. ~1 in 300 orders is still open.
GEN_ORDERS = """
INSERT INTO orders (id, account_id, client_order_id, symbol, side, type, time_in_force, quantity,
                    filled_quantity, avg_fill_price, limit_price, stop_price, triggered, status,
                    reject_reason, reserved_cash, fees, expires_at, created_at, updated_at)
SELECT gen_random_uuid(), acct, CASE WHEN n % 2 = 0 THEN 'c' || n END, sym, side,
       CASE WHEN status IN ('accepted', 'partially_filled') OR r2 < 0.4 THEN 'limit' ELSE 'market' END,
       CASE WHEN status IN ('accepted', 'partially_filled') OR r2 < 0.4 THEN 'gtc' ELSE 'ioc' END,
       qty, CASE status WHEN 'filled' THEN qty WHEN 'partially_filled' THEN floor(qty / 2) ELSE 0 END,
       CASE WHEN status IN ('filled', 'partially_filled') THEN px END,
       CASE WHEN status IN ('accepted', 'partially_filled') OR r2 < 0.4 THEN px END, NULL, false, status,
       CASE WHEN status = 'rejected' THEN 'insufficient buying power' END,
       CASE WHEN status IN ('accepted', 'partially_filled') AND side = 'buy' THEN qty * px * 1.001 ELSE 0 END,
       CASE WHEN status IN ('filled', 'partially_filled') THEN round(qty * px * 0.001, 6) ELSE 0 END,
       NULL, ts, ts
  FROM (
    SELECT n,
           CASE WHEN n < {hot} THEN md5('a0')::uuid
                ELSE md5('a' || (1 + n % ({users} - 1)))::uuid END AS acct,
           'S0' || si AS sym,
           CASE WHEN r3 < 0.4 THEN 'sell' ELSE 'buy' END AS side,
           (1 + n % 100)::numeric AS qty,
           round((100 + si * 10 + r3 * 5)::numeric, 2) AS px,
           r2,
           CASE WHEN n % 300 = 7 THEN (CASE WHEN n % 3000 = 7 THEN 'partially_filled' ELSE 'accepted' END)
                ELSE (CASE WHEN r < 0.62 THEN 'filled' WHEN r < 0.95 THEN 'canceled'
                           WHEN r < 0.98 THEN 'rejected' ELSE 'expired' END) END AS status,
           now() - interval '180 days' * random() AS ts
      FROM (SELECT n, random() AS r, random() AS r2, random() AS r3,
                   -- skewed symbol mix: S00 is the most traded
                   least(floor(-ln(1 - random()) * 3), 9)::int AS si
              FROM generate_series(0, {orders} - 1) n) s
  ) o;
"""

GEN_CHILDREN = """
INSERT INTO fills (id, order_id, account_id, symbol, side, quantity, price, fee, liquidity, created_at)
SELECT gen_random_uuid(), id, account_id, symbol, side, filled_quantity, avg_fill_price, fees,
       CASE WHEN type = 'market' THEN 'taker' ELSE 'maker' END, created_at
  FROM orders WHERE status IN ('filled', 'partially_filled') AND random() < 0.5;
INSERT INTO order_events (order_id, account_id, type, status_from, status_to, reason, data, created_at)
SELECT o.id, o.account_id, e.type, e.status_from, e.status_to, NULL, NULL, o.created_at
  FROM (SELECT * FROM orders WHERE random() < 0.2) o
  CROSS JOIN LATERAL (VALUES ('created', NULL, 'new'), ('accepted', 'new', 'accepted'),
                             (o.status, 'accepted', o.status)) AS e(type, status_from, status_to);
INSERT INTO positions (account_id, symbol, quantity, avg_entry_price, realized_pnl, updated_at)
SELECT md5('a' || g)::uuid, 'S' || lpad(s::text, 2, '0'), 10 + (g + s) % 50, 100 + s * 10, 0, now()
  FROM generate_series(0, {users} - 1) g, generate_series(0, 9) s
 WHERE g = 0 OR (g + s) % 2 = 0;
-- A daily snapshot per account for ~400 days, plus one per fill for the hot account.
INSERT INTO equity_snapshots (account_id, ts, equity, cash)
SELECT md5('a' || g)::uuid, date_trunc('day', now()) - d * interval '1 day',
       1000000 + (d * 37 + g) % 10000, 900000
  FROM generate_series(0, {users} - 1) g, generate_series(0, 399) d;
INSERT INTO equity_snapshots (account_id, ts, equity, cash)
SELECT md5('a0')::uuid, now() - k * interval '5 minutes', 1000000 + k % 5000, 900000
  FROM generate_series(1, 50000) k;
-- Risk limits: the hot account has all 11 types plus symbol-scoped ones; 30% of the others have three.
INSERT INTO risk_limits (id, account_id, limit_type, value, symbol, warn_at_pct, enabled, auto_reduce_only)
SELECT gen_random_uuid(), md5('a0')::uuid, t, v, s, 80, true, true
  FROM (VALUES ('max_order_notional', 1e9, NULL), ('max_order_quantity', 1e6, NULL),
               ('max_position_quantity', 1e7, NULL), ('max_position_notional', 1e10, NULL),
               ('max_gross_exposure', 1e11, NULL), ('max_leverage', 100, NULL),
               ('max_concentration_pct', 100, NULL), ('max_open_orders', 100000, NULL),
               ('max_orders_per_minute', 100000, NULL), ('max_daily_loss', 1e9, NULL),
               ('max_drawdown_pct', 99, NULL), ('max_order_notional', 1e9, 'S01'),
               ('max_position_quantity', 1e7, 'S01'), ('max_concentration_pct', 100, 'S01')) AS l(t, v, s);
INSERT INTO risk_limits (id, account_id, limit_type, value, symbol, warn_at_pct, enabled, auto_reduce_only)
SELECT gen_random_uuid(), md5('a' || g)::uuid, t, v, NULL, 80, true, true
  FROM generate_series(1, {users} - 1) g,
       (VALUES ('max_gross_exposure', 1e8), ('max_leverage', 10), ('max_daily_loss', 100000)) AS l(t, v)
 WHERE g % 10 < 3;
"""

GEN_CANDLES = """
INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume)
SELECT $1::text, '1m', timestamptz '2020-01-01 00:00+00' + g * interval '1 minute',
       c - 0.05, c + 0.10, c - 0.10, c, (g % 1000) + 1
  FROM (SELECT g, round((100 + $3::int * 10 + 20 * sin(g / 5000.0) + 3 * sin(g / 77.0))::numeric, 2) AS c
          FROM generate_series(0, $2::int - 1) g) s
"""

GEN_DAILY = """
INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume)
SELECT i.symbol, '1d', date_trunc('day', now()) - d * interval '1 day', c, c + 1, c - 1, c, 1000
  FROM instruments i, generate_series(0, 399) d,
       LATERAL (SELECT round((i.last_price * (1 + 0.05 * sin(d / 9.0 + length(i.symbol))
                                             + 0.01 * sin(d * 1.7)))::numeric, 2) AS c) p
"""


async def _timed(
    conn: asyncpg.Connection, label: str, sql: str, timings: list[tuple[str, float]], *args: Any
) -> None:
    t0 = time.perf_counter()
    await conn.execute(sql, *args) if args else await conn.execute(sql)
    timings.append((label, time.perf_counter() - t0))


async def generate(url: str, n_orders: int, candles_per_symbol: int) -> list[tuple[str, float]]:
    timings: list[tuple[str, float]] = []
    main = await asyncpg.connect(url)
    try:
        await main.execute(SETUP)
        fmt = {"users": N_USERS, "hot": HOT_ORDERS, "orders": n_orders}
        await _timed(main, "exchange, 10 instruments, users, accounts", GEN_REFERENCE.format(**fmt), timings)
        # Candles: drop the primary key for the bulk load and build it once at the end (same definition as
        # the migration), load two symbols at a time on two more connections while orders load here.
        await main.execute("ALTER TABLE candles DROP CONSTRAINT pk_candles")

        async def candle_worker(symbols: list[str]) -> None:
            c = await asyncpg.connect(url)
            try:
                await c.execute(SETUP)
                for s in symbols:
                    await c.execute(GEN_CANDLES, s, candles_per_symbol, int(s[1:]))
            finally:
                await c.close()

        async def orders_part() -> None:
            await _timed(main, f"{n_orders:,} orders", GEN_ORDERS.format(**fmt), timings)
            await _timed(
                main,
                "fills, order_events, positions, equity snapshots, risk limits",
                GEN_CHILDREN.format(**fmt),
                timings,
            )

        t0 = time.perf_counter()
        await asyncio.gather(orders_part(), candle_worker(SYMBOLS[0::2]), candle_worker(SYMBOLS[1::2]))
        timings.append(
            (
                f"(orders || {len(SYMBOLS) * candles_per_symbol:,} 1m candles, wall clock)",
                time.perf_counter() - t0,
            )
        )
        await _timed(main, "daily candles (400 per symbol)", GEN_DAILY, timings)
        await _timed(
            main,
            "candles primary key build",
            "ALTER TABLE candles ADD CONSTRAINT pk_candles PRIMARY KEY (symbol, timeframe, ts)",
            timings,
        )
        await _timed(main, "VACUUM ANALYZE", "VACUUM ANALYZE", timings)
    finally:
        await main.close()
    return timings


# ----------------------------------------------------------------------------------------------- plans

_IDX = re.compile(
    r"(?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)(?: on (\w+))?"
)
_SEQ = re.compile(r"Seq Scan on (\w+)")
_EXEC = re.compile(r"Execution Time: ([\d.]+) ms")
_PLAN = re.compile(r"Planning Time: ([\d.]+) ms")
_REMOVED = re.compile(r"Rows Removed by Filter: (\d+)")


@dataclass
class Explained:
    name: str
    params: str
    plan: list[str]
    sizes: dict[str, float]
    note: str = ""
    exec_ms: float = 0.0
    plan_ms: float = 0.0
    indexes: list[str] = field(default_factory=list)
    seq_scans: list[str] = field(default_factory=list)
    removed: int = 0
    flags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        text_ = "\n".join(self.plan)
        self.exec_ms = float(m.group(1)) if (m := _EXEC.search(text_)) else float("nan")
        self.plan_ms = float(m.group(1)) if (m := _PLAN.search(text_)) else float("nan")
        for m in _IDX.finditer(text_):
            if m.group(1) not in self.indexes:
                self.indexes.append(m.group(1))
        for m in _SEQ.finditer(text_):
            if m.group(1) not in self.seq_scans:
                self.seq_scans.append(m.group(1))
        self.removed = max((int(x) for x in _REMOVED.findall(text_)), default=0)
        for table in self.seq_scans:
            rows = self.sizes.get(table, 0)
            if rows > BIG_TABLE_ROWS:
                self.flags.append(f"**SEQ SCAN on {table} (~{rows:,.0f} rows)**")
        if self.removed > 10_000:
            self.flags.append(f"filter discards {self.removed:,} rows")
        if self.exec_ms > SLOW_MS:
            self.flags.append(f"slow (> {SLOW_MS:g} ms)")


def _short(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)[:8] + "…"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value[:3]) + (", …" if len(value) > 3 else "") + "]"
    if isinstance(value, str) and len(value) > 24:
        return value[:21] + "…"
    return repr(value) if isinstance(value, str) else str(value)


async def explain(
    conn: asyncpg.Connection,
    name: str,
    sql: str,
    args: list[Any],
    sizes: dict[str, float],
    *,
    rollback: bool = False,
    generic: bool = False,
    note: str = "",
    show: list[int] | None = None,
    setup: tuple[str, list[Any]] | None = None,
) -> Explained:
    """EXPLAIN (ANALYZE, BUFFERS) `sql` with `args`; in a rolled-back transaction when it writes or locks.

    `setup` (sql, args) runs first in the same transaction (rolled back with it)."""
    tr = conn.transaction()
    await tr.start()
    try:
        if setup is not None:
            await conn.execute(setup[0], *setup[1])
        if generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        # Warm once (the app runs these thousands of times: plans are about steady state, not a cold cache).
        sp = conn.transaction()
        await sp.start()
        await conn.fetch(sql, *args)
        await sp.rollback()
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    finally:
        await tr.rollback()
    idx = show if show is not None else range(len(args))
    params = ", ".join(f"${i + 1}={_short(args[i])}" for i in idx if i < len(args))
    notes = [
        n
        for n in (
            note,
            "generic plan (plan_cache_mode=force_generic_plan)" if generic else "",
            "rolled back" if rollback or setup else "",
        )
        if n
    ]
    return Explained(name, params, [r[0] for r in rows], sizes, "; ".join(notes))


def sa_capture(engine: Any) -> tuple[list[tuple[str, list[Any]]], Any]:
    from sqlalchemy import event

    captured: list[tuple[str, list[Any]]] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, executemany: bool
    ) -> None:
        if not executemany:
            captured.append((statement, list(parameters or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return captured, before


def _first_words(sql: str) -> str:
    s = " ".join(sql.split())
    return s[:70]


async def collect(url: str) -> tuple[list[Explained], dict[str, Any]]:
    from app.domain.identity.schemas import Principal
    from app.domain.markets.services import CANDLES_SQL
    from app.domain.risk.services import monitor_account, monitor_all, risk_metrics, snapshot_equity
    from app.domain.trading.placement import BOOK_SQL, LOCK_SQL, READ_SQL, WRITE_SQL
    from app.domain.trading.matching import _RESTING_SQL
    from app.domain.trading.services import _LIST_ORDERS_SQL, positions
    from app.lib.db import create_engine

    conn = await asyncpg.connect(url)
    out: list[Explained] = []
    facts: dict[str, Any] = {}
    try:
        sizes = {
            r["relname"]: float(r["reltuples"])
            for r in await conn.fetch(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
        }
        facts["sizes"] = sizes
        hot, hot_owner = account_id(0), user_id(0)
        norm, norm_owner = account_id(42), user_id(42)
        facts["hot_orders"] = await conn.fetchval("SELECT count(*) FROM orders WHERE account_id = $1", hot)
        facts["hot_open"] = await conn.fetchval(
            "SELECT count(*) FROM orders "
            "WHERE account_id = $1 AND status IN ('new', 'accepted', 'partially_filled')",
            hot,
        )
        facts["open_total"] = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE status IN ('new', 'accepted', 'partially_filled')"
        )
        facts["norm_orders"] = await conn.fetchval("SELECT count(*) FROM orders WHERE account_id = $1", norm)

        # -- orders list page, exactly as list_orders() calls it (limit 50 -> LIMIT 51).
        base = [hot, hot_owner, False]
        deep = await conn.fetchrow(
            "SELECT created_at, id FROM orders WHERE account_id = $1 "
            "ORDER BY created_at DESC, id DESC OFFSET 90000 LIMIT 1",
            hot,
        )
        deep_filled = await conn.fetchrow(
            "SELECT created_at, id FROM orders WHERE account_id = $1 AND status = 'filled' "
            "ORDER BY created_at DESC, id DESC OFFSET 55000 LIMIT 1",
            hot,
        )
        show = [0, 3, 4, 5, 6, 7, 8]
        L0, L1 = _LIST_ORDERS_SQL[False], _LIST_ORDERS_SQL[True]
        out.append(
            await explain(
                conn,
                "orders list: first page (hot acct, 100k orders)",
                L0,
                [*base, None, None, None, 51],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, generic plan",
                L0,
                [*base, None, None, None, 51],
                sizes,
                show=show,
                generic=True,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, status=filled",
                L0,
                [*base, "filled", None, None, 51],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, status=accepted (rare)",
                L0,
                [*base, "accepted", None, None, 51],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, status=accepted, generic plan",
                L0,
                [*base, "accepted", None, None, 51],
                sizes,
                show=show,
                generic=True,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, status=expired (2%)",
                L0,
                [*base, "expired", None, None, 51],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, symbol=S03 side=sell",
                L0,
                [*base, None, "S03", "sell", 51],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: deep keyset page (after 90,000 rows)",
                L1,
                [*base, None, None, None, 51, deep["created_at"], deep["id"]],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: deep keyset page, generic plan",
                L1,
                [*base, None, None, None, 51, deep["created_at"], deep["id"]],
                sizes,
                show=show,
                generic=True,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: deep keyset page, status=filled (after 55,000 filled)",
                L1,
                [*base, "filled", None, None, 51, deep_filled["created_at"], deep_filled["id"]],
                sizes,
                show=show,
            )
        )
        out.append(
            await explain(
                conn,
                "orders list: first page, normal acct (~900 orders)",
                L0,
                [norm, norm_owner, False, None, None, None, 51],
                sizes,
                show=show,
            )
        )

        # -- placement: the optimistic read, then the locked path's lock and book read, then the write
        # (each in a rolled-back transaction).
        out.append(
            await explain(
                conn,
                "placement READ_SQL (hot acct, 16 limits, ~330 open orders; no lock)",
                READ_SQL,
                [hot, True, "S01", "client-xyz"],
                sizes,
                rollback=True,
            )
        )
        out.append(await explain(conn, "placement LOCK_SQL (locked retry)", LOCK_SQL, ["S01", hot], sizes, rollback=True))
        out.append(
            await explain(
                conn,
                "placement BOOK_SQL (hot acct, 16 limits, ~330 open orders)",
                BOOK_SQL,
                [hot, True, "S01", "client-xyz"],
                sizes,
                rollback=True,
            )
        )
        out.append(
            await explain(
                conn,
                "placement BOOK_SQL (normal acct)",
                BOOK_SQL,
                [norm, True, "S01", "c100042"],
                sizes,
                rollback=True,
            )
        )
        # A bot at ~80 orders/s: the book query counts its last minute of orders when the account has a
        # max_orders_per_minute limit (the hot account has one). Inserted in the explained transaction.
        burst = (
            "INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, "
            "filled_quantity, status, created_at, updated_at) SELECT gen_random_uuid(), $1, 'S01', 'buy', "
            "'market', 'ioc', 1, 1, 'filled', now() - k * interval '12 ms', now() "
            "FROM generate_series(1, 5000) k",
            [hot],
        )
        out.append(
            await explain(
                conn,
                "placement BOOK_SQL (hot acct, 5,000 orders in the last 60 s)",
                BOOK_SQL,
                [hot, True, "S01", "client-xyz"],
                sizes,
                rollback=True,
                setup=burst,
                note="5,000 orders inserted first in the same transaction",
            )
        )
        now = datetime.now(UTC)
        fill_id = uuid.uuid4()
        ev_data = json.dumps(
            {"quantity": "1", "price": "110.01", "fee": "0.11001", "liquidity": "taker", "realized_pnl": "0"}
        )
        write_args = [
            uuid.uuid4(),
            hot,
            None,
            "S01",
            "buy",
            "market",
            "ioc",
            Decimal(1),
            Decimal(1),
            Decimal("110.01"),
            None,
            None,
            False,
            "filled",
            Decimal(0),
            Decimal("0.11001"),
            None,
            now,
            fill_id,
            Decimal(1),
            Decimal("110.01"),
            Decimal("0.11001"),
            "taker",
            # the order's events, one JSON array (as placement sends them)
            json.dumps([
                {"type": "created", "status_to": "new"},
                {"type": "accepted", "status_from": "new", "status_to": "accepted"},
                {"type": "filled", "status_from": "accepted", "status_to": "filled", "fill_id": str(fill_id),
                 "data": json.loads(ev_data)},
            ]),
            Decimal(31),
            Decimal("110.0003"),
            Decimal(0),
            True,
            Decimal("899889.88999"),
            Decimal(0),
            Decimal(0),
            Decimal("0.11001"),
            Decimal(1010000),
            Decimal("1009000"),
            # the row versions the decision was taken on (account, instrument, exchange): current, so the
            # write applies
            await conn.fetchval("SELECT xmin::text FROM accounts WHERE id = $1", hot),
            await conn.fetchval("SELECT xmin::text FROM instruments WHERE symbol = 'S01'"),
            await conn.fetchval(
                "SELECT e.xmin::text FROM exchanges e JOIN instruments i ON i.exchange_code = e.code WHERE i.symbol = 'S01'"
            ),
        ]
        out.append(
            await explain(
                conn,
                "placement WRITE_SQL (market buy, filled)",
                WRITE_SQL,
                write_args,
                sizes,
                rollback=True,
                show=[1, 3, 4, 5, 13, 24, 28],
            )
        )

        # -- matching scan for a price update (locks: rolled back).
        # Only the orders the price acts on are fetched; at S03's last price (130) that is its open book's
        # marketable side, the heaviest case a price update at the last price meets.
        resting = str(_RESTING_SQL).replace(":symbol", "$1").replace(":price", "$2::numeric")
        out.append(
            await explain(
                conn,
                "matching _RESTING_SQL (S03 at 130, FOR UPDATE SKIP LOCKED)",
                resting,
                ["S03", Decimal("130")],
                sizes,
                rollback=True,
            )
        )

        # -- candles.
        start = datetime(2020, 6, 1, tzinfo=UTC)
        for limit in (1000, 10000):
            out.append(
                await explain(
                    conn,
                    f"candles CANDLES_SQL limit={limit}",
                    CANDLES_SQL,
                    ["S04", "1m", start, None, limit],
                    sizes,
                )
            )
        out.append(
            await explain(
                conn,
                "candles CANDLES_SQL limit=10000, start+end",
                CANDLES_SQL,
                ["S04", "1m", start, start + timedelta(days=7), 10000],
                sizes,
            )
        )
        out.append(
            await explain(
                conn,
                "candles CANDLES_SQL limit=10000, generic plan",
                CANDLES_SQL,
                ["S04", "1m", start, None, 10000],
                sizes,
                generic=True,
            )
        )
        out.append(
            await explain(
                conn,
                "candles CANDLES_SQL latest 1000 (no start: from the oldest)",
                CANDLES_SQL,
                ["S04", "1m", None, None, 1000],
                sizes,
            )
        )

        # -- SQLAlchemy-built reads/jobs: capture them from real calls, then explain what was captured.
        settings = replace(Settings(), database_url=url, log_level="WARNING", db_statement_timeout_ms=120_000)
        engine = create_engine(settings)
        captured, _ = sa_capture(engine)
        owner = Principal(user_id=hot_owner, role="trader", key_id=uuid.uuid4(), email="user0@bench.example")
        groups: list[tuple[str, int, int]] = []

        async def grab(label: str, coro_fn: Any) -> None:
            before = len(captured)
            async with engine.connect() as c:
                await coro_fn(c)
            groups.append((label, before, len(captured)))

        await grab("positions()", lambda c: positions(c, owner, hot))
        await grab("risk_metrics()", lambda c: risk_metrics(c, owner, hot))
        await grab("monitor_account()", lambda c: monitor_account(c, hot))
        await grab(
            "monitor_all() batch select", lambda c: monitor_all(c, batch_size=200, time_budget_seconds=0.0)
        )
        await grab("snapshot_equity()", lambda c: snapshot_equity(c, batch_size=1000))
        await engine.dispose()
        skip = (
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "select pg_catalog",
            "SELECT pg_catalog",
            "show ",
            "select current_schema",
        )
        seen: set[str] = set()
        for label, a, b in groups:
            for stmt, params in captured[a:b]:
                if stmt.lstrip().startswith(skip) or stmt in seen:
                    continue
                seen.add(stmt)
                head = stmt.lstrip().split(None, 1)[0].upper()
                writes = head in ("INSERT", "UPDATE", "DELETE", "WITH") or "FOR UPDATE" in stmt
                out.append(
                    await explain(
                        conn, f"{label}: {_first_words(stmt)}", stmt, params, sizes, rollback=writes
                    )
                )
    finally:
        await conn.close()
    return out, facts


# ---------------------------------------------------------------------------------------------- report

# Statement-name fragment -> the proposed fix (not applied); printed only for statements that were flagged.
PROPOSALS = {
    "orders list:": (
        "query fix, no index: inside the LATERAL of `_list_orders_sql` write `o.account_id = $1` instead "
        "of `o.account_id = a.id` (same value: `a` is the row with id = $1). With the join column the "
        "planner only has the average orders-per-account (1,000 here), not the hot account's 100,000, so "
        "with any selective filter (a rare status, a symbol, a side) it expects fewer than 51 matches and"
        " reads ALL the account's orders through a bitmap scan and top-N sorts them; with the constant it"
        " uses the per-value statistics and walks ix_orders_account_created backwards until it has 51 "
        "rows. Measured on this data set: status=expired 15 ms -> 1.2 ms, symbol=S03&side=sell 12 ms -> "
        "0.5 ms (custom and generic plans alike). Only a combination of two rare filters "
        "(status=rejected&symbol=S05, ~0.15% of the rows: 13 ms) still needs an index: `CREATE INDEX "
        "ix_orders_account_symbol_created ON orders (account_id, symbol, created_at DESC, id DESC);` (3.4"
        " ms for that case; costs a 7th index on the hottest INSERT, so only if symbol filters are "
        "common)."
    ),
    "max(equity_snapshots.equity)": (
        "`CREATE INDEX ix_equity_snapshots_account_equity ON equity_snapshots (account_id, equity DESC);`"
        " `_peak_and_state` (risk metrics and every monitor_account) takes max(equity) over ALL snapshots"
        " of the account: one per fill (WRITE_SQL) plus one per snapshot_equity run, so it grows without "
        "bound on active accounts. With the index max() is a one-row Index Only Scan (measured: 12.8 ms "
        "-> 0.016 ms for the 50,400-snapshot account). Alternative without a new index: the monitor and "
        "the snapshot job already write the peak back to accounts.peak_equity, so only snapshots newer "
        "than the last write-back need scanning."
    ),
    "snapshot_equity()": (
        "Batch job, not a request path. The `valued` CTE hash-joins the WHOLE positions table for every "
        "1,000-account batch (Seq Scan on positions), so a full run is O(accounts x positions / batch): "
        "measured per batch 55 ms at 10,000 accounts and 97 ms at 50,000. Query fix, no index: compute "
        "each batch account's market value in a `LEFT JOIN LATERAL (SELECT sum(...) FROM positions p ... "
        "WHERE p.account_id = b.id AND p.quantity <> 0)`, which uses pk_positions per account: 28 ms and "
        "39 ms per batch at the same sizes."
    ),
}


def report(
    results: list[Explained], timings: list[tuple[str, float]], facts: dict[str, Any], args: Any
) -> None:
    sizes = facts["sizes"]
    print("## EXPLAIN (ANALYZE, BUFFERS) of the hot queries\n")
    print(
        f"PostgreSQL {facts['pg_version']}; scratch database, VACUUM ANALYZEd after the load. Each statement "
        "is run once to warm the cache, then explained; writes and locks run in a transaction that is rolled "
        "back.\n"
    )
    print("### Data set\n")
    print("| table | rows |\n|---|---:|")
    for t in (
        "users",
        "accounts",
        "orders",
        "fills",
        "order_events",
        "positions",
        "equity_snapshots",
        "risk_limits",
        "candles",
        "instruments",
    ):
        print(f"| {t} | {sizes.get(t, 0):,.0f} |")
    print(
        f"\nHot account: {facts['hot_orders']:,} orders ({facts['hot_open']:,} open); a normal account has "
        f"~{facts['norm_orders']:,}; {facts['open_total']:,} open orders in all. "
        f"Candles: {len(SYMBOLS)} symbols x {args.candles_per_symbol:,} 1m bars + 400 daily bars each.\n"
    )
    print("| generation step | seconds |\n|---|---:|")
    for label, s in timings:
        print(f"| {label} | {s:.1f} |")
    print("\n### Summary\n")
    print("| # | statement | exec ms | plan ms | indexes used | seq scans | flags |")
    print("|---:|---|---:|---:|---|---|---|")
    for i, r in enumerate(results, 1):
        seq = ", ".join(f"{t} ({sizes.get(t, 0):,.0f})" for t in r.seq_scans) or "—"
        print(
            f"| {i} | {r.name} | {r.exec_ms:.3f} | {r.plan_ms:.3f} | {', '.join(r.indexes) or '—'} | {seq} | "
            f"{'; '.join(r.flags) or 'ok'} |"
        )
    flagged = [(i, r) for i, r in enumerate(results, 1) if r.flags]
    print("\n### Flagged\n")
    if not flagged:
        print(
            "Nothing flagged: no Seq Scan on a table over "
            f"{BIG_TABLE_ROWS:,} rows, no filter discarding > 10,000 rows, nothing over {SLOW_MS:g} ms."
        )
    shown: dict[str, int] = {}
    for i, r in flagged:
        print(f"- #{i} {r.name}: {'; '.join(r.flags)}")
        for fragment, fix in PROPOSALS.items():
            if fragment in r.name:
                if fragment in shown:
                    print(f"  - proposed: same fix as #{shown[fragment]}")
                else:
                    shown[fragment] = i
                    print(f"  - proposed: {fix}")
    tiny = sorted({t for r in results for t in r.seq_scans if sizes.get(t, 0) <= BIG_TABLE_ROWS})
    if tiny:
        print(
            f"\nSeq Scans on small tables ({', '.join(tiny)}) are the planner's right choice at these sizes "
            "(a handful of pages) and are not flagged."
        )
    if args.plans == "none":
        return
    print(
        "\n### Plans"
        + (" (flagged statements only; --plans all prints every plan)" if args.plans == "flagged" else "")
        + "\n"
    )
    for i, r in enumerate(results, 1):
        if args.plans == "flagged" and not r.flags:
            continue
        print(f"#### {i}. {r.name}\n")
        print(f"params: {r.params}" + (f" ({r.note})" if r.note else "") + "\n")
        print("```text")
        print("\n".join(r.plan))
        print("```\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--candles-per-symbol", type=int, default=1_000_000)
    parser.add_argument(
        "--plans",
        choices=("all", "flagged", "none"),
        default="all",
        help="which full plans to print after the summary (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the database (debugging)")
    args = parser.parse_args()
    from app.lib.log import configure_logging

    configure_logging("ERROR")  # keep stdout markdown only
    db = f"td_meas_plans_{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        from app.lib.migrate import upgrade

        upgrade(_url(db))
        t0 = time.perf_counter()
        timings = loop.run_until_complete(generate(_url(db), args.orders, args.candles_per_symbol))
        timings.append(("total generation", time.perf_counter() - t0))
        results, facts = loop.run_until_complete(collect(_url(db)))

        async def version() -> str:
            c = await asyncpg.connect(_url(db))
            try:
                return await c.fetchval("SHOW server_version")
            finally:
                await c.close()

        facts["pg_version"] = loop.run_until_complete(version())
        report(results, timings, facts, args)
    finally:
        if not args.keep:
            loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()


if __name__ == "__main__":
    main()
