"""Desk-scale risk, two revisions side by side on one database: sweep, post-trade check, stress test.

    python -m benchmarks.measure_desk_risk_ab [--base main] [--accounts 10000] [--rounds 3]
        [--base-without-index NAME ...]

Builds the scratch database of benchmarks/measure_desk_risk.py (10,000 accounts x 5 positions, limits at
50%, 85% and 105%), runs the first sweep (alerts fire, stops switch), then alternates, round after round,
a process running the code of `--base` (extracted with `git archive` into a temporary directory) and one
running the working tree. Each process times, on the same data:

1. a full `monitor_all` pass (steady state: the violations are recorded again, no alert fires);
2. `post_trade.check_holders` for five symbols, each held by about 1,000 accounts with limits;
3. `stress_test` as a risk manager over every account with 20 scenarios (19 shocks, one historical window).

Each is timed in wall time and in CPU time of the measuring process (`time.process_time`: the Python
side alone, less sensitive to a busy machine than wall time; PostgreSQL's own work is not in it).

Every pass writes the same rows whichever code runs it, so the data stays comparable. The database has the
working tree's schema; `--base-without-index NAME` drops an index the working tree added before each base
run (and creates it again, from `pg_indexes`, before each run of the working tree). Prints the medians
per revision and their ratios as markdown, and the load average at the start and the end. The database
and the extracted tree are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg

from benchmarks.conftest import _admin, _url

ROOT = Path(__file__).resolve().parent.parent

WORKER = r'''
import asyncio, json, sys, time, uuid
from dataclasses import replace
import msgspec
from app.lib.db import async_url, create_engine
from app.lib.log import configure_logging
from app.lib.settings import Settings

configure_logging("ERROR")
url, scenarios = sys.argv[1], json.loads(sys.argv[2])

async def main():
    from app.domain.identity.schemas import Principal
    from app.domain.risk.post_trade import check_holders
    from app.domain.risk.schemas import StressRequest
    from app.domain.risk.services import monitor_all
    from app.domain.risk.stress_service import stress_test

    engine = create_engine(replace(Settings(), database_url=async_url(url), log_level="ERROR"))
    out = {}
    async with engine.connect() as conn:
        t0, c0 = time.perf_counter(), time.process_time()
        swept = await monitor_all(conn, batch_size=500, time_budget_seconds=3000)
        out["sweep_s"], out["sweep_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        out["swept"] = [swept["accounts"], swept["violations"], swept["alerts"], swept["reduce_only"]]
        out["post_ms"], out["post_cpu_ms"] = [], []
        for k in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            counts = await check_holders(conn, f"M{k:02d}")
            out["post_ms"].append((time.perf_counter() - t0) * 1000)
            out["post_cpu_ms"].append((time.process_time() - c0) * 1000)
        out["post_accounts"] = counts["accounts"]
        request = msgspec.convert({"scenarios": scenarios}, StressRequest)
        reader = Principal(user_id=uuid.uuid4(), role="risk_manager", key_id=uuid.uuid4(),
                           email="rm@b.example")
        t0, c0 = time.perf_counter(), time.process_time()
        result = await stress_test(conn, reader, request)
        out["stress_s"], out["stress_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        body = msgspec.json.encode(result)
        out["encode_s"] = time.perf_counter() - t0
        figures = [[r.firm_pnl, [(a.pnl, len(a.breaches)) for a in r.accounts]] for r in result.results]
        out["stress_digest"] = __import__("hashlib").sha256(msgspec.json.encode(figures)).hexdigest()[:16]
        out["stress_bytes"] = len(body)
    await engine.dispose()
    print(json.dumps(out))

asyncio.run(main())
'''


async def _index_ddl(url: str, names: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1)", names)
        return {r["indexname"]: r["indexdef"] for r in rows}
    finally:
        await conn.close()


async def _sql(url: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("ANALYZE positions")
    finally:
        await conn.close()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _extract(rev: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "app"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def _run(code_dir: Path, script: Path, url: str, scenarios: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    done = subprocess.run(
        [sys.executable, str(script), url, scenarios],
        env=env, cwd=str(ROOT), check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="main")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-without-index", action="append", default=[])
    args = parser.parse_args()

    from app.lib.migrate import upgrade
    from benchmarks.measure_desk_risk import scenarios
    from benchmarks.measure_monitor import generate

    db = f"td_meas_deskab_{uuid.uuid4().hex[:8]}"
    url = _url(db)
    scen = json.dumps(scenarios(20))
    start_load = _load()
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
    try:
        with tempfile.TemporaryDirectory(prefix="td_base_") as tmp:
            base_dir = Path(tmp) / "base"
            base_dir.mkdir()
            _extract(args.base, base_dir)
            script = Path(tmp) / "worker.py"
            script.write_text(WORKER)
            upgrade(url)
            asyncio.run(generate(url, args.accounts))
            _run(ROOT, script, url, scen)  # the first pass: alerts and stops, then steady state
            indexes = asyncio.run(_index_ddl(url, args.base_without_index))
            runs: dict[str, list[dict]] = {"base": [], "head": []}
            for _ in range(args.rounds):
                asyncio.run(_sql(url, [f'DROP INDEX IF EXISTS "{name}"' for name in indexes]))
                runs["base"].append(_run(base_dir, script, url, scen))
                asyncio.run(_sql(url, list(indexes.values())))
                runs["head"].append(_run(ROOT, script, url, scen))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    def med(rev: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[rev])

    def post(rev: str, key: str = "post_ms") -> float:
        return statistics.median(t for r in runs[rev] for t in r[key])

    print(f"Load average (1, 5, 15 min): {start_load} at the start, {_load()} at the end. "
          f"{args.rounds} rounds, base `{args.base}` then the working tree in each.\n")
    print("| measure | base | working tree | base / working tree |")
    print("|---|---:|---:|---:|")
    rows = [
        (f"sweep, {args.accounts:,} accounts (s)", med("base", "sweep_s"), med("head", "sweep_s")),
        ("post-trade check, ~1,000 holders (ms, median of 5 symbols x rounds)", post("base"), post("head")),
        ("sweep: CPU of the Python process (s)", med("base", "sweep_cpu_s"), med("head", "sweep_cpu_s")),
        ("post-trade check: CPU of the Python process (ms)", post("base", "post_cpu_ms"),
         post("head", "post_cpu_ms")),
        ("stress, 20 scenarios (s, service call)", med("base", "stress_s"), med("head", "stress_s")),
        ("stress: CPU of the Python process (s)", med("base", "stress_cpu_s"), med("head", "stress_cpu_s")),
        ("stress response JSON encode (s)", med("base", "encode_s"), med("head", "encode_s")),
    ]
    for label, b, h in rows:
        print(f"| {label} | {b:,.3f} | {h:,.3f} | {b / h:.1f}x |")
    same = {json.dumps([r["swept"], r["stress_digest"]]) for rev in runs for r in runs[rev]}
    verdict = "yes" if len(same) == 1 else "NO"
    print(f"\nSame counts and stress figures from both revisions in every round: {verdict}", end=" ")
    print(f"({', '.join(sorted(same))}).")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
