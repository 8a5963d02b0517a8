"""Our API against a FastAPI peer and a bare-ASGI floor, on the same database, server and load.

    python -m benchmarks.peers.run_peers --db-url postgresql://postgres@127.0.0.1:5432/postgres \
        [--duration 10 --concurrency 32 --rounds 1 --apps ours,fastapi,floor]

Steps: (re)create the database ``td_peers`` on the server of ``--db-url``, migrate it with Alembic, seed
it (benchmarks/peers/seed.py), then for each app start it under granian with identical settings (one
worker, uvloop, no websockets, a free port on 127.0.0.1), wait for ``/health``, run every scenario with
`app.tools.loadtest.run_load`, stop it. Prints a markdown table and writes
``benchmarks/results/peers-<date>-<HHMM>.json``.

Besides req/s and latency, each row reports the server's CPU milliseconds per request (user + system
time of the granian process tree over the measured phase only). On a shared 2-core box the generator,
PostgreSQL and anything else running compete for the same cores, so req/s moves with the neighbours;
CPU per request is the steadier measure of what the framework itself costs. When PostgreSQL runs on
the same host, each row also reports its backends' CPU per request (every ``postgres`` process, read
from /proc): how much database work an app's statements cause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.tools.loadtest import cpu_seconds_between, cpu_seconds_by_command, process_tree_cpu_seconds, run_load
from benchmarks.peers.seed import plain_url, seed

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DB_NAME = "td_peers"
APPS = {
    "ours": "app.server.asgi:app",
    # Ours under uvicorn as `tradedesk serve --server uvicorn` runs it (httptools, uvloop): which server
    # serves the whole API best. Not in the default set; ask for it with --apps ours,ours-uvicorn.
    "ours-uvicorn": "app.server.asgi:app",
    "fastapi": "benchmarks.peers.fastapi_app:app",
    "floor": "benchmarks.peers.raw_asgi_app:app",
}
SCENARIOS = ("health", "orders-list", "place-order")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(plain_url(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


async def recreate_database(server_url: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        # FORCE: a previous run's server that was killed hard may still hold connections.
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One app under granian, in its own process group so that stopping it stops its workers too."""

    def __init__(self, name: str, target: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.target = name, target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.name.endswith("-uvicorn"):
            cmd = [sys.executable, "-m", "uvicorn", "--workers", "1", "--loop", "uvloop", "--http", "httptools"]
            cmd += ["--ws", "websockets-sansio", "--lifespan", "on", "--no-access-log", "--no-proxy-headers"]
            cmd += ["--no-server-header", "--log-level", "warning"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port), self.target]
        else:
            granian = Path(sys.executable).with_name("granian")
            cmd = [str(granian)] if granian.exists() else [sys.executable, "-m", "granian"]
            cmd += ["--interface", "asgi", "--workers", "1", "--loop", "uvloop", "--no-ws"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port), self.target]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    async def wait_healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                line = await asyncio.wait_for(reader.readline(), 2)
                writer.close()
                if line.split()[1:2] == [b"200"]:
                    return
            except (OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after {within:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return process_tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def app_env(db_url: str, redis_url: str, run_id: str, pool_size: int = 8) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        # A namespace of our own: other runs and test suites may share this Redis.
        TRADEDESK_REDIS_PREFIX=f"tdpeers-{run_id}",
        TRADEDESK_QUEUE_NAME=f"tdpeers-{run_id}",
        TRADEDESK_ADMIN_API_KEY=f"td_peers_admin_{secrets.token_urlsafe(24)}",
        TRADEDESK_ACCESS_LOG="false",
        TRADEDESK_ENV="bench",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    for kind in ("READ", "WRITE", "ORDERS", "ANONYMOUS"):
        env[f"RATE_LIMIT_{kind}_PER_MINUTE"] = "100000000"
    # Same pool and key memo for every app (the peers read these names too): `pool_size` connections,
    # all kept open. (SQLAlchemy closes overflow connections when they are returned; with 10 + 10 our
    # placement and the FastAPI peer reconnected ~45 times a second under 32 clients, the floor never.)
    # Ours places orders and lists them on its own asyncpg pool (app/lib/db.py: create_order_pool), the
    # same size. The default, 8, is the app's own default: with 20 busy connections on a 2-core box
    # PostgreSQL spent 0.35-0.47 ms of CPU per placement, with 6-12 0.27-0.36 ms (docs/BENCHMARKS.md).
    env.setdefault("DB_POOL_SIZE", str(pool_size))
    env.setdefault("DB_MAX_OVERFLOW", "0")
    env.setdefault("DB_ORDER_POOL_SIZE", str(pool_size))
    env.setdefault("API_KEY_CACHE_SECONDS", "1.0")
    return env


async def bench_app(
    server: Server, scenarios: list[str], args: argparse.Namespace, fixture: dict[str, Any]
) -> list[dict[str, Any]]:
    results = []
    headers = {"Authorization": f"Bearer {fixture['api_key']}"}
    for scenario in scenarios:
        cpu: dict[str, Any] = {}

        def on_measure(starting: bool, cpu: dict[str, Any] = cpu) -> None:
            phase = "start" if starting else "end"
            cpu[phase] = server.cpu_seconds()
            cpu[f"db_{phase}"] = cpu_seconds_by_command("postgres")  # the backends, when PostgreSQL is local

        try:
            report = await run_load(
                server.url,
                scenario=scenario,
                concurrency=args.concurrency,
                duration=args.duration,
                headers=headers,
                # Placement: client i trades seeded account i mod --accounts; reads stay on the one with history.
                account=",".join(fixture["account_ids"]) if scenario == "place-order" else fixture["account_id"],
                symbol=fixture["symbol"],
                quantity="1",
                warmup=args.warmup,
                on_measure=on_measure,
            )
        except Exception as exc:  # one broken scenario must not cost the whole comparison
            report = {
                "scenario": scenario,
                "failed": f"{type(exc).__name__}: {exc}",
                "requests": 0,
                "rps": 0.0,
            }
        if report.get("requests") and "end" in cpu:
            report["server_cpu_s"] = cpu["end"] - cpu["start"]
            report["server_cpu_ms_per_req"] = 1000 * report["server_cpu_s"] / report["requests"]
            db_cpu = cpu_seconds_between(cpu["db_start"], cpu["db_end"])
            if db_cpu > 0:
                report["db_cpu_s"] = db_cpu
                report["db_cpu_ms_per_req"] = 1000 * db_cpu / report["requests"]
        report["app"] = server.name
        results.append(report)
        lat = report.get("latency_ms", {})
        print(
            f"  {server.name:8} {scenario:12} {report['rps']:>9,.0f} req/s  p50 {_ms(lat.get('p50'))}"
            f"  p99 {_ms(lat.get('p99'))}  errors {_errors(report)}",
            flush=True,
        )
    return results


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _errors(report: dict[str, Any]) -> str:
    if report.get("failed"):
        return f"FAILED ({report['failed']})"
    errs = {**report.get("errors", {}), **report.get("exceptions", {})}
    return ", ".join(f"{k}: {v}" for k, v in errs.items()) or "0"


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (an actual run, so its latencies belong to it)."""
    ordered = sorted(runs, key=lambda r: r.get("rps", 0.0))
    return ordered[(len(ordered) - 1) // 2]


def markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    apps: list[str],
    scenarios: list[str],
    drifted: frozenset[str] = frozenset(),
) -> str:
    out = [
        "| scenario | app | req/s | p50 ms | p99 ms | server CPU ms/req | db CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for scenario in scenarios:
        for app in apps:
            r = summary.get(app, {}).get(scenario)
            if r is None:
                continue
            lat = r.get("latency_ms", {})
            cpu = r.get("server_cpu_ms_per_req")
            out.append(
                f"| {scenario} | {app} | {r.get('rps', 0.0):,.0f} | {_fmt(lat.get('p50'))} "
                f"| {_fmt(lat.get('p99'))} "
                f"| {_fmt(cpu, 3)} | {_fmt(r.get('db_cpu_ms_per_req'), 3)} | {_errors(r)} |"
            )
    if "ours" in apps:
        out += [
            "",
            "| scenario | req/s ours/fastapi | req/s ours/floor "
            "| CPU/req ours/fastapi | CPU/req ours/floor |",
        ]
        out.append("|---|---:|---:|---:|---:|")
        for scenario in scenarios:
            ours = summary.get("ours", {}).get(scenario)
            cells = []
            for key in ("rps", "server_cpu_ms_per_req"):
                for peer in ("fastapi", "floor"):
                    cell = _ratio(ours, summary.get(peer, {}).get(scenario), key)
                    if scenario == "place-order" and {"ours", peer} & drifted and cell != "-":
                        cell += "†"
                    cells.append(cell)
            out.append(f"| {scenario} | " + " | ".join(cells) + " |")
        out.append("")
        out.append("Ratios of runs with errors are marked `*` (a 404 or 500 is cheaper than the real work);")
        out.append("`†` marks placements by an app whose stored positions/cash no longer match its fills.")
    return "\n".join(out)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _ratio(ours: dict | None, peer: dict | None, key: str) -> str:
    if not ours or not peer or not ours.get(key) or not peer.get(key):
        return "-"
    flag = "*" if ours.get("error_count") or peer.get("error_count") or ours.get("failed") else ""
    return f"{ours[key] / peer[key]:.2f}{flag}"


# Cash and positions must equal a replay of the fills. A fast app that loses updates under concurrency
# is not faster, it is wrong: every app's writes are checked against this after its runs.
SQL_DRIFT = """
SELECT coalesce((SELECT sum(CASE WHEN side = 'buy' THEN quantity ELSE -quantity END)
                   FROM fills WHERE account_id = $1 AND symbol = $2), 0)
       - coalesce((SELECT quantity FROM positions WHERE account_id = $1 AND symbol = $2), 0) AS quantity,
       (SELECT a.initial_cash + coalesce(sum(CASE WHEN f.side = 'buy' THEN -(f.quantity * f.price) - f.fee
                                                  ELSE f.quantity * f.price - f.fee END), 0) - a.cash
          FROM accounts a LEFT JOIN fills f ON f.account_id = a.id
         WHERE a.id = $1 GROUP BY a.id) AS cash
"""


async def ledger_drift(db_url: str, fixture: dict[str, Any]) -> dict[str, Decimal]:
    conn = await asyncpg.connect(db_url)
    try:
        total = {"quantity": Decimal(0), "cash": Decimal(0)}
        for account_id in fixture["account_ids"]:
            row = await conn.fetchrow(SQL_DRIFT, uuid.UUID(account_id), fixture["symbol"])
            total["quantity"] += row["quantity"]
            total["cash"] += row["cash"]
    finally:
        await conn.close()
    return total


async def run_all(
    args: argparse.Namespace, db_url: str, fixture: dict[str, Any]
) -> tuple[dict[str, list], dict[str, dict[str, str]]]:
    apps = args.apps.split(",")
    scenarios = args.scenarios.split(",")
    run_id = uuid.uuid4().hex[:8]
    env = app_env(db_url, args.redis_url, run_id, args.pool_size)
    runs: dict[str, list] = {app: [] for app in apps}
    drift = {app: {"quantity": Decimal(0), "cash": Decimal(0)} for app in apps}
    with tempfile.TemporaryDirectory(prefix="td-peers-") as tmp:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", flush=True)
            for app in apps:
                before = await ledger_drift(db_url, fixture)
                # Every app starts from a fresh checkpoint: a timed one (every checkpoint_timeout, 5 min
                # by default) would otherwise land inside some app's measured phase and not another's.
                await checkpoint(db_url)
                server = Server(app, APPS[app], env, Path(tmp))
                server.start()
                try:
                    await server.wait_healthy()
                    runs[app].extend(await bench_app(server, scenarios, args, fixture))
                except RuntimeError as exc:
                    print(f"  {app}: {exc}", file=sys.stderr, flush=True)
                    runs[app].extend({"app": app, "scenario": s, "failed": str(exc)[:500]} for s in scenarios)
                finally:
                    server.stop()
                after = await ledger_drift(db_url, fixture)
                delta = {k: after[k] - before[k] for k in after}
                for key, value in delta.items():
                    drift[app][key] += value
                if any(delta.values()):
                    print(
                        f"  {app}: LEDGER DRIFT (fills vs stored): position {_dec(delta['quantity'])}"
                        f", cash {_dec(delta['cash'])}",
                        flush=True,
                    )
    return runs, {app: {k: _dec(v) for k, v in d.items()} for app, d in drift.items()}


async def checkpoint(db_url: str) -> None:
    conn = await asyncpg.connect(plain_url(db_url))
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:  # CHECKPOINT needs a superuser (or pg_checkpoint on 15+)
        print("  (no CHECKPOINT privilege: a timed checkpoint may land inside a measured phase)", flush=True)
    finally:
        await conn.close()


def _dec(value: Decimal) -> str:
    return format(value.normalize(), "f")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark our API against a FastAPI peer and a raw floor.")
    parser.add_argument(
        "--db-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help=f"any database on the PostgreSQL server to use; {DB_NAME} is (re)created there",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each measured run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat all apps N times; the median run is kept"
    )
    parser.add_argument("--apps", default="ours,fastapi,floor", help=f"any of {', '.join(APPS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--orders", type=int, default=100_000, help="historical orders seeded")
    parser.add_argument(
        "--accounts", type=int, default=1,
        help="place-order spreads clients over this many accounts, one each (1: every client queues on one account's lock)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=8,
        help="database connections per app (ours: the order pool), the same for every app",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default benchmarks/results/peers-<UTC date>-<HHMM>.json, never an earlier run's file)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.apps.split(",")) - set(APPS)
    if unknown:
        parser.error(f"unknown app(s) {', '.join(sorted(unknown))}; choose from {', '.join(APPS)}")

    from app.lib.migrate import upgrade

    db_url = with_database(args.db_url, DB_NAME)
    print(f"database {DB_NAME}: recreate, migrate, seed {args.orders:,} orders", flush=True)
    asyncio.run(recreate_database(args.db_url))
    upgrade(db_url)
    fixture = asyncio.run(seed(db_url, orders=args.orders, accounts=args.accounts))

    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runs, drift = runner.run(run_all(args, db_url, fixture))

    apps, scenarios = args.apps.split(","), args.scenarios.split(",")
    summary = {
        app: {s: median_run([r for r in runs[app] if r.get("scenario") == s]) for s in scenarios}
        for app in apps
    }
    broken = {app: d for app, d in drift.items() if any(Decimal(v) != 0 for v in d.values())}
    table = markdown(summary, apps, scenarios, frozenset(broken))
    if broken:
        table += "\n\nLedger drift (fills replayed minus stored, after all runs; must be 0): " + ", ".join(
            f"{app}: position {d['quantity']}, cash {d['cash']}" for app, d in broken.items()
        )
    print()
    print(table)

    import granian

    now = datetime.now(UTC)
    out = args.out or RESULTS / f"peers-{now:%Y-%m-%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created_at": now.isoformat(),
        "settings": {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "orders_seeded": fixture["orders"],
            "accounts": len(fixture["account_ids"]),
            "server": "granian --interface asgi --workers 1 --loop uvloop --no-ws"
            + (" (ours-uvicorn: uvicorn --loop uvloop --http httptools)" if "ours-uvicorn" in apps else ""),
            "pool_size": args.pool_size,
            "load_client": "app.tools.loadtest raw HTTP/1.1 keep-alive",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "granian": granian.__version__,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "summary": summary,
        "ledger_drift": drift,
        "runs": runs,
        "markdown": table,
    }
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
