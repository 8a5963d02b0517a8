"""Throughput of the risk jobs (`risk.monitor_all`, `risk.snapshot_equity`) on 10,000 accounts, as markdown.

    python -m benchmarks.measure_monitor [--accounts 10000] [--batch-size 200] [--time-budget 240]

A scratch database (td_meas_*) is filled in SQL: 50 priced instruments with 250 daily candles each,
one user per account, 5 positions per account, 10 orders per account (2 still open), 30 daily equity
snapshots per account and 3-5 enabled limits per account whose values are set from the account's own
figures so that 1 account in 20 is over a limit (violation + critical alert; a breached drawdown stop
also switches the account to reduce_only), 3 in 20 sit at 85% of a limit (warning alert) and the rest
at 50%. The job functions are then called directly (no queue) with a ctx holding the app's engine:
monitor_all to completion (resuming with `start_after` whenever it stops on its time budget), a
second full pass (steady state: alerts are edge-triggered, violations are recorded on every pass),
and snapshot_equity. With `--group-desks N` (default 10), every account is then put in one of N desks
under a firm group, each desk and the firm with a gross, a net, an open-orders and a daily-loss limit,
and the group alert checks are timed (app/domain/risk/group_alerts.py): the sweep's (every group) and the
one after a price of one symbol (the groups of its holders: here every desk and the firm). The database
is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

import asyncpg

from app.lib.db import async_url
from app.lib.settings import Settings
from benchmarks.conftest import _admin, _url

N_SYMBOLS = 50

GEN = """
SET session_replication_role = replica;   -- bulk load: skip FK triggers (consistent by construction)
SET synchronous_commit = off;
SET work_mem = '64MB';
INSERT INTO exchanges (code, name, taker_fee_rate, maker_fee_rate)
VALUES ('MX', 'monitor bench', 0.001, 0.0005);
INSERT INTO instruments (symbol, exchange_code, base_asset, quote_asset, tick_size, lot_size, min_quantity,
                         min_notional, last_price, last_price_at)
SELECT 'M' || lpad(s::text, 2, '0'), 'MX', 'M' || s, 'USD', 0.01, 1, 1, 0, 20 + s * 10, now()
  FROM generate_series(0, {symbols} - 1) s;
INSERT INTO candles (symbol, timeframe, ts, open, high, low, close, volume)
SELECT i.symbol, '1d', date_trunc('day', now()) - d * interval '1 day', c, c + 1, c - 1, c, 10000
  FROM instruments i, generate_series(0, 249) d,
       LATERAL (SELECT round((i.last_price * (1 + 0.08 * sin(d / 7.0 + ascii(right(i.symbol, 1)))
                                             + 0.02 * sin(d * 1.3)))::numeric, 2) AS c) p;
INSERT INTO users (id, email, role)
SELECT md5('mu' || g)::uuid, 'mon' || g || '@bench.example', 'trader'
  FROM generate_series(0, {accounts} - 1) g;
INSERT INTO accounts (id, owner_id, name, base_currency, initial_cash, cash, peak_equity)
SELECT md5('ma' || g)::uuid, md5('mu' || g)::uuid, 'mon ' || g, 'USD', 1000000, 200000 + (g % 100) * 1000, 0
  FROM generate_series(0, {accounts} - 1) g;
INSERT INTO positions (account_id, symbol, quantity, avg_entry_price, realized_pnl)
SELECT md5('ma' || g)::uuid, i.symbol, 10 + (g + k) % 90,
       round(i.last_price * (0.9 + ((g * k) % 20) / 100.0), 2), 0
  FROM generate_series(0, {accounts} - 1) g, generate_series(0, 4) k
  JOIN instruments i ON true
 WHERE i.symbol = 'M' || lpad(((g * 7 + k * 11) % {symbols})::text, 2, '0');
CREATE TEMP TABLE figures AS
SELECT a.id, g.g,
       a.cash + sum(p.quantity * i.last_price) AS equity,
       sum(abs(p.quantity * i.last_price)) AS gross,
       max(abs(p.quantity * i.last_price)) AS largest
  FROM generate_series(0, {accounts} - 1) g(g)
  JOIN accounts a ON a.id = md5('ma' || g.g)::uuid
  JOIN positions p ON p.account_id = a.id
  JOIN instruments i ON i.symbol = p.symbol
 GROUP BY a.id, g.g, a.cash;
-- Peak 10% above equity now: a ~9.09% drawdown for the drawdown stop to measure.
UPDATE accounts a SET peak_equity = round(f.equity * 1.1, 2) FROM figures f WHERE f.id = a.id;
INSERT INTO equity_snapshots (account_id, ts, equity, cash)
SELECT f.id, date_trunc('day', now()) - d * interval '1 day', round(f.equity * (1 + (d % 10) / 100.0), 2), 0
  FROM figures f, generate_series(1, 30) d;
INSERT INTO orders (id, account_id, symbol, side, type, time_in_force, quantity, filled_quantity,
                    avg_fill_price, limit_price, status, reserved_cash, fees, created_at, updated_at)
SELECT gen_random_uuid(), f.id, 'M' || lpad(((f.g * 7) % {symbols})::text, 2, '0'), 'buy', 'limit', 'gtc', 1,
       CASE WHEN k < 2 THEN 0 ELSE 1 END, CASE WHEN k < 2 THEN NULL ELSE 20 END, 20,
       CASE WHEN k < 2 THEN 'accepted' ELSE 'filled' END, 0, 0,
       now() - k * interval '1 day', now() - k * interval '1 day'
  FROM figures f, generate_series(0, 9) k;
-- 3 to 5 limits per account; u = target utilisation (1 in 20 over, 3 in 20 at 85%, the rest at 50%).
INSERT INTO risk_limits (id, account_id, limit_type, value, symbol, warn_at_pct, enabled, auto_reduce_only)
SELECT gen_random_uuid(), f.id, l.t,
       round(CASE l.t WHEN 'max_gross_exposure' THEN f.gross
                      WHEN 'max_leverage' THEN f.gross / f.equity
                      WHEN 'max_position_notional' THEN f.largest
                      WHEN 'max_concentration_pct' THEN f.largest / f.equity * 100
                      ELSE (1 - f.equity / (f.equity * 1.1)) * 100 END
             / CASE WHEN f.g % 20 = 0 THEN 1.05 WHEN f.g % 20 < 4 THEN 0.85 ELSE 0.5 END, 6),
       NULL, 80, true, true
  FROM figures f
  JOIN (VALUES (0, 'max_gross_exposure'), (1, 'max_leverage'), (2, 'max_position_notional'),
               (3, 'max_concentration_pct'), (4, 'max_drawdown_pct')) AS l(n, t)
    ON l.n < 3 + f.g % 3;
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


async def generate(url: str, accounts: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        await conn.execute(GEN.format(accounts=accounts, symbols=N_SYMBOLS))
        await conn.execute("RESET session_replication_role")
        await conn.execute("VACUUM ANALYZE")
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def counts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM accounts) AS accounts,
                   (SELECT count(*) FROM positions) AS positions,
                   (SELECT count(*) FROM risk_limits WHERE enabled) AS limits,
                   (SELECT count(*) FROM orders) AS orders,
                   (SELECT count(*) FROM equity_snapshots) AS snapshots,
                   (SELECT count(*) FROM candles) AS candles,
                   (SELECT count(*) FROM risk_violations) AS violations,
                   (SELECT count(*) FROM risk_alerts WHERE severity = 'warning') AS warnings,
                   (SELECT count(*) FROM risk_alerts WHERE severity = 'critical') AS criticals,
                   (SELECT count(*) FROM accounts WHERE trading_state = 'reduce_only') AS reduce_only
            """
        )
        return dict(row)
    finally:
        await conn.close()


async def run_monitor(
    ctx: dict[str, Any], batch_size: int, budget: float
) -> tuple[dict[str, Any], float, int]:
    from app.domain.risk.tasks import monitor_all_job

    totals = {"accounts": 0, "violations": 0, "alerts": 0, "reduce_only": 0, "failed": 0}
    after: str | None = None
    calls = 0
    t0 = time.perf_counter()
    while True:
        result = await monitor_all_job(
            ctx, batch_size=batch_size, time_budget_seconds=budget, start_after=after
        )
        calls += 1
        for k in totals:
            totals[k] += result[k]
        if result["complete"]:
            break
        after = result["resume_after"]
    return totals, time.perf_counter() - t0, calls


async def sample_accounts(ctx: dict[str, Any], n: int) -> tuple[list[float], list[float], list[int]]:
    """Per-account latency of monitor_account and (for comparison: the only path with VaR) risk_metrics."""
    from app.domain.identity.schemas import Principal
    from app.domain.risk.services import monitor_account, risk_metrics

    ids = [uuid.UUID(hex=hashlib.md5(f"ma{g}".encode()).hexdigest()) for g in range(21, 21 + 20 * n, 20)]
    reader = Principal(
        user_id=uuid.uuid4(), role="risk_manager", key_id=uuid.uuid4(), email="rm@bench.example"
    )
    from benchmarks.explain_plans import sa_capture

    captured, _ = sa_capture(ctx["engine"])
    mon: list[float] = []
    met: list[float] = []
    statements: list[int] = []
    async with ctx["engine"].connect() as conn:
        for account in ids:
            n0 = len(captured)
            t0 = time.perf_counter()
            await monitor_account(conn, account)
            mon.append((time.perf_counter() - t0) * 1000)
            statements.append(len(captured) - n0)
            t0 = time.perf_counter()
            out = await risk_metrics(conn, reader, account)
            met.append((time.perf_counter() - t0) * 1000)
            assert out.var.observations > 0, out.var
            if conn.in_transaction():
                await conn.rollback()
    return mon, met, statements


async def plans(url: str, engine: Any) -> list[Any]:
    """EXPLAIN the batch statements of both jobs at this size (monitor's captured from a real call)."""
    from datetime import UTC, datetime

    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    from app.domain.risk.services import SNAPSHOT_SQL, monitor_all
    from benchmarks.explain_plans import explain, sa_capture

    captured, _ = sa_capture(engine)
    async with engine.connect() as c:
        await monitor_all(c, batch_size=200, time_budget_seconds=0.0)  # reads one batch of ids, checks none
    select_ids = next((s, p) for s, p in captured if s.lstrip().upper().startswith("SELECT ACCOUNTS.ID"))
    compiled = SNAPSHOT_SQL.compile(dialect=dialect())
    values = {"after": uuid.UUID(int=0), "limit": 1000, "ts": datetime.now(UTC)}
    conn = await asyncpg.connect(url)
    try:
        sizes = {
            r["relname"]: float(r["reltuples"])
            for r in await conn.fetch(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
        }
        return [
            await explain(conn, "monitor_all batch select (200 ids)", select_ids[0], select_ids[1], sizes),
            await explain(
                conn,
                "snapshot_equity batch (1,000 accounts, rolled back)",
                str(compiled),
                [values[name] for name in compiled.positiontup],
                sizes,
                rollback=True,
            ),
        ]
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument(
        "--batch-size", type=int, default=200, help="monitor_all batch_size (job default 200)"
    )
    parser.add_argument("--time-budget", type=float, default=240.0, help="monitor_all time_budget_seconds")
    parser.add_argument("--sample", type=int, default=100, help="accounts timed one by one afterwards")
    parser.add_argument("--group-desks", type=int, default=10, help="desks of the group checks (0: none)")
    args = parser.parse_args()
    from app.lib.log import configure_logging

    configure_logging(
        "ERROR"
    )  # the monitor logs each automatic reduce_only switch; keep stdout markdown only
    db = f"td_meas_monitor_{uuid.uuid4().hex[:8]}"
    url = _url(db)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    try:
        from app.domain.risk.tasks import snapshot_equity_job
        from app.lib.db import create_engine
        from app.lib.migrate import upgrade

        upgrade(url)
        gen_s = loop.run_until_complete(generate(url, args.accounts))
        before = loop.run_until_complete(counts(url))
        settings = replace(Settings(), database_url=async_url(url), log_level="ERROR")
        engine = create_engine(settings)
        ctx: dict[str, Any] = {"engine": engine}
        try:
            first, first_s, first_calls = loop.run_until_complete(
                run_monitor(ctx, args.batch_size, args.time_budget)
            )
            after_first = loop.run_until_complete(counts(url))
            second, second_s, second_calls = loop.run_until_complete(
                run_monitor(ctx, args.batch_size, args.time_budget)
            )
            after_second = loop.run_until_complete(counts(url))
            t0 = time.perf_counter()
            snap = loop.run_until_complete(snapshot_equity_job(ctx, batch_size=1000))
            snap_s = time.perf_counter() - t0
            mon_ms, met_ms, stmts = loop.run_until_complete(sample_accounts(ctx, args.sample))
            explained = loop.run_until_complete(plans(url, engine))
            grouped = (
                loop.run_until_complete(time_group_checks(engine, url, args.group_desks))
                if args.group_desks else None
            )
        finally:
            loop.run_until_complete(engine.dispose())

        print(
            f"## Risk jobs on {before['accounts']:,} accounts "
            "(job functions called directly, real PostgreSQL)\n"
        )
        print(
            f"Generated in SQL in {gen_s:.1f} s (incl. VACUUM ANALYZE): {before['accounts']:,} accounts, "
            f"{before['positions']:,} positions over {N_SYMBOLS} priced instruments, "
            f"{before['limits']:,} enabled limits (3-5 per account), {before['orders']:,} orders, "
            f"{before['snapshots']:,} equity snapshots, {before['candles']:,} daily candles "
            "(250 per symbol). Limit values put 1 account in 20 over a limit, "
            "3 in 20 at 85% (warn_at_pct 80), the rest at 50%.\n"
        )
        print(
            "| run | accounts checked | wall time | accounts/s | ms/account | violations | alerts "
            "| -> reduce_only | failed | job calls |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, res, secs, calls in (
            ("monitor_all, 1st pass (alerts fire)", first, first_s, first_calls),
            ("monitor_all, 2nd pass (steady state)", second, second_s, second_calls),
        ):
            print(
                f"| {label} | {res['accounts']:,} | {ms(secs)} | {res['accounts'] / secs:,.0f} | "
                f"{secs * 1000 / max(res['accounts'], 1):.2f} | {res['violations']:,} | {res['alerts']:,} | "
                f"{res['reduce_only']:,} | {res['failed']} | {calls} |"
            )
        print(
            f"| snapshot_equity (batch 1000) | {snap['snapshots']:,} snapshots | {ms(snap_s)} | "
            f"{snap['snapshots'] / snap_s:,.0f} | {snap_s * 1000 / max(snap['snapshots'], 1):.3f} | "
            "— | — | — | — | 1 |"
        )
        print(f"\nPeaks raised by snapshot_equity: {snap['peaks_raised']:,}.\n")
        print("| what the database holds | after 1st pass | after 2nd pass |")
        print("|---|---:|---:|")
        for key, label in (
            ("violations", "risk_violations (post_trade)"),
            ("warnings", "risk_alerts warning"),
            ("criticals", "risk_alerts critical"),
            ("reduce_only", "accounts in reduce_only"),
        ):
            print(f"| {label} | {after_first[key]:,} | {after_second[key]:,} |")
        p = lambda v, q: sorted(v)[min(len(v) - 1, int(round(q * len(v))) - 1)]  # noqa: E731
        print(f"\n| one account at a time ({len(mon_ms)} accounts, after the passes) | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        n_sql = f"{min(stmts)}" if min(stmts) == max(stmts) else f"{min(stmts)}-{max(stmts)}"
        print(
            f"| monitor_account() ({n_sql} SQL statements, "
            "plus BEGIN/COMMIT) | "
            f"{statistics.median(mon_ms):.2f} | {p(mon_ms, 0.99):.2f} |"
        )
        print(
            f"| risk_metrics() (VaR over 250 daily closes x 5 symbols) | {statistics.median(met_ms):.2f} | "
            f"{p(met_ms, 0.99):.2f} |"
        )
        print(
            "\nmonitor_account does not compute VaR (no limit type measures it): the candles only feed "
            "risk_metrics, timed above for comparison.\n"
        )
        print("| batch statement at this size | exec ms | indexes used | seq scans |")
        print("|---|---:|---|---|")
        for e in explained:
            print(
                f"| {e.name} | {e.exec_ms:.2f} | {', '.join(e.indexes) or '—'} | "
                f"{', '.join(e.seq_scans) or '—'} |"
            )
        if grouped is not None:
            print_group_checks(before["accounts"], args.group_desks, *grouped)
    finally:
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        loop.close()


GROUPS = """
INSERT INTO risk_groups (id, name, is_firm) VALUES (md5('firm')::uuid, 'bench firm', true);
INSERT INTO risk_groups (id, name, parent_id)
SELECT md5('desk' || d)::uuid, 'bench desk ' || d, md5('firm')::uuid FROM generate_series(0, {desks} - 1) d;
INSERT INTO risk_group_limits (id, group_id, limit_type, value)
SELECT gen_random_uuid(), g.id, k.kind, 1e15
  FROM risk_groups g CROSS JOIN (VALUES ('max_gross_exposure'), ('max_net_exposure'), ('max_open_orders'),
                                        ('max_daily_loss')) AS k(kind);
UPDATE accounts a
   SET group_id = md5('desk' || (abs(hashtext(a.id::text)) % {desks}))::uuid, group_limited = true;
"""


async def time_group_checks(
    engine: Any, url: str, desks: int, repeats: int = 5
) -> tuple[list[float], list[float], int]:
    """ms per run of the sweep's group check and of the check after a price of one symbol."""
    from app.domain.risk import group_alerts
    from app.domain.risk.post_trade import check_groups_of

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(GROUPS.format(desks=desks))
        await conn.execute("ANALYZE risk_groups; ANALYZE risk_group_limits; ANALYZE accounts")
    finally:
        await conn.close()
    sweep, price = [], []
    async with engine.connect() as sa_conn:
        groups = len(await group_alerts.groups_moved_by(sa_conn, ["M00"]))
        await sa_conn.rollback()
        for _ in range(repeats):
            t0 = time.perf_counter()
            await group_alerts.check_groups(sa_conn)
            sweep.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await check_groups_of(sa_conn, ["M00"])
            price.append((time.perf_counter() - t0) * 1000)
    return sweep, price, groups


def print_group_checks(
    accounts: int, desks: int, sweep: list[float], price: list[float], groups: int
) -> None:
    print(
        f"\n| group alert checks, {accounts:,} accounts in {desks} desks under a firm group, 4 limits each "
        f"({len(sweep)} runs) | median ms | max ms |"
    )
    print("|---|---:|---:|")
    print(f"| the sweep's: every group ({desks + 1}) | {statistics.median(sweep):.0f} | {max(sweep):.0f} |")
    print(
        f"| after a price of M00 (in the background): the {groups} groups of its holders | "
        f"{statistics.median(price):.0f} | "
        f"{max(price):.0f} |"
    )


if __name__ == "__main__":
    main()
