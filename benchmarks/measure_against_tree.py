"""A pure workload timed in this tree against another commit's, side by side.

    git worktree add --detach /tmp/ref <commit>      # or: git archive <commit> app | tar -x -C /tmp/ref
    python -m benchmarks.measure_against_tree --workload rules --reference /tmp/ref [--rounds 7]
    python -m benchmarks.measure_against_tree --workload csv --reference /tmp/ref

Workloads: ``rules`` parses and evaluates RULE over 1,000,000 bars (the data of
benchmarks/test_portfolio_bench.py); ``csv`` streams 200,000 one-minute candles through the CSV parser in
64 KiB chunks (the data of benchmarks/test_candles_parse_bench.py). Without ``--reference`` only this
tree is timed. Each round runs one fresh process per tree, the two alternating (so machine load hits
both alike); a process runs the workload REPEATS times after a warm-up and reports its best. The figures
are the median of the rounds' bests and the median of the per-round ratios; the load average is printed
with them. Both trees must give the same result (true bars, or rows parsed).

Separate processes keep each tree's imports apart, but on a loaded machine two processes rarely get
the same share of it. ``--same-process`` (csv only, for a reference tree from before the parser moved
to candle_csv.py, whose candles.py imports nothing of the app) loads the reference parser from its
file into this process and alternates the two on 50,000 candles, ROUNDS_SAME_PROCESS times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RULE = "crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70"
BARS = 1_000_000
REPEATS = 5

_RULES = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from app.domain.backtesting.rules_lang import SERIES, evaluate, parse_condition
rng = np.random.default_rng(3)
close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, {bars})))
series = dict.fromkeys(SERIES, close)
def once():
    return int(evaluate(parse_condition({rule!r}), series).sum())
"""

# The parser moved from candles.py to candle_csv.py; either tree's location is accepted.
_CSV = """
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
try:
    from app.domain.markets.candle_csv import parse_csv_stream
except ImportError:
    from app.domain.markets.candles import parse_csv_stream
from app.domain.markets.synthetic import candles_to_csv, generate_candles
body = candles_to_csv(generate_candles(bars=200_000, seed=20260101, timeframe="1m")).encode()
async def consume():
    async def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]
    count = 0
    async for batch in parse_csv_stream(chunks(), "1m"):
        count += len(batch)
    return count
def once():
    return asyncio.run(consume())
"""

_TIMING = """
once()
best = float("inf")
for _ in range({repeats}):
    started = time.perf_counter()
    out = once()
    best = min(best, time.perf_counter() - started)
print(json.dumps({{"best": best, "result": out}}))
"""

WORKLOADS = {"rules": _RULES, "csv": _CSV}


def run_tree(root: Path, workload: str) -> dict[str, float]:
    code = WORKLOADS[workload].format(bars=BARS, rule=RULE) + _TIMING.format(repeats=REPEATS)
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], check=True, capture_output=True, text=True, cwd=root
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


ROUNDS_SAME_PROCESS = 20


def same_process(reference: Path) -> None:
    import asyncio
    import importlib.util

    from app.domain.markets.candle_csv import parse_csv_stream
    from app.domain.markets.synthetic import candles_to_csv, generate_candles

    spec = importlib.util.spec_from_file_location(
        "reference_candles", reference / "app" / "domain" / "markets" / "candles.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    body = candles_to_csv(generate_candles(bars=50_000, seed=20260101, timeframe="1m")).encode()

    def timed(parse) -> tuple[float, int]:  # type: ignore[no-untyped-def]
        async def consume() -> int:
            async def chunks():  # type: ignore[no-untyped-def]
                for i in range(0, len(body), 64 * 1024):
                    yield body[i : i + 64 * 1024]

            return sum([len(batch) async for batch in parse(chunks(), "1m")])

        started = time.perf_counter()
        rows = asyncio.run(consume())
        return time.perf_counter() - started, rows

    timed(parse_csv_stream), timed(module.parse_csv_stream)
    mine, theirs = [], []
    for i in range(ROUNDS_SAME_PROCESS):
        order = (parse_csv_stream, module.parse_csv_stream)
        (a, rows_a), (b, rows_b) = (timed(f) for f in (order if i % 2 == 0 else order[::-1]))
        if i % 2:
            a, b, rows_a, rows_b = b, a, rows_b, rows_a
        if rows_a != rows_b:
            raise SystemExit(f"results differ: {rows_a} vs {rows_b} rows")
        mine.append(a)
        theirs.append(b)
    ratio = statistics.median(x / y for x, y in zip(mine, theirs, strict=True))
    load = os.getloadavg()
    print(
        f"CSV, 50,000 1m candles, one process, {ROUNDS_SAME_PROCESS} alternating rounds; load {load[0]:.2f}"
    )
    print(f"this tree: median {statistics.median(mine):.3f} s (min {min(mine):.3f})")
    print(f"reference: median {statistics.median(theirs):.3f} s (min {min(theirs):.3f})")
    print(f"this / reference: median of per-round ratios {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="rules")
    parser.add_argument("--same-process", action="store_true", help="csv: both parsers in this process")
    args = parser.parse_args()
    if args.same_process:
        if args.workload != "csv" or args.reference is None:
            raise SystemExit("--same-process needs --workload csv and --reference")
        same_process(args.reference.resolve())
        return
    here = Path(__file__).resolve().parent.parent
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        current = run_tree(here, args.workload)
        mine.append(current["best"])
        if args.reference is not None:
            reference = run_tree(args.reference.resolve(), args.workload)
            if reference["result"] != current["result"]:
                raise SystemExit(f"results differ: {reference['result']} vs {current['result']}")
            theirs.append(reference["best"])
    load = os.getloadavg()
    what = f"rule: {RULE} over {BARS:,} bars" if args.workload == "rules" else "CSV: 200,000 1m candles"
    print(f"{what}; rounds: {args.rounds}; load average {load[0]:.2f} {load[1]:.2f}")
    print(
        f"this tree: median best {statistics.median(mine):.3f} s (min {min(mine):.3f}, max {max(mine):.3f})"
    )
    if theirs:
        ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
        print(
            f"reference: median best {statistics.median(theirs):.3f} s "
            f"(min {min(theirs):.3f}, max {max(theirs):.3f})"
        )
        print(f"this / reference: median of per-round ratios {statistics.median(ratios):.2f}")
    print(f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
