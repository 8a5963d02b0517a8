"""The rules language over 1,000,000 bars, this tree against another commit's, side by side.

    git worktree add --detach /tmp/rules-ref <commit>      # or: git archive <commit> app | tar -x -C DIR
    python -m benchmarks.measure_rules_lang --reference /tmp/rules-ref [--rounds 7]

Without ``--reference`` only this tree is timed. Each round runs one fresh process per tree, the two
alternating (so machine load hits both alike); a process parses and evaluates RULE over the same
1,000,000 bars (the data of benchmarks/test_portfolio_bench.py) five times after a warm-up and reports
its best. The figures are the median of the rounds' bests and the median of the per-round ratios; the
load average is printed with them. Both trees must give the same result (the count of true bars).
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

_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from app.domain.backtesting.rules_lang import SERIES, evaluate, parse_condition
rng = np.random.default_rng(3)
close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, {bars})))
series = dict.fromkeys(SERIES, close)
evaluate(parse_condition({rule!r}), series)
best = float("inf")
for _ in range({repeats}):
    started = time.perf_counter()
    out = evaluate(parse_condition({rule!r}), series)
    best = min(best, time.perf_counter() - started)
print(json.dumps({{"best": best, "true": int(out.sum())}}))
"""


def run_tree(root: Path) -> dict[str, float]:
    code = _CHILD.format(bars=BARS, rule=RULE, repeats=REPEATS)
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], check=True, capture_output=True, text=True, cwd=root
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        current = run_tree(here)
        mine.append(current["best"])
        if args.reference is not None:
            reference = run_tree(args.reference.resolve())
            if reference["true"] != current["true"]:
                raise SystemExit(f"results differ: {reference['true']} vs {current['true']} true bars")
            theirs.append(reference["best"])
    load = os.getloadavg()
    print(f"rule: {RULE}\nbars: {BARS:,}; rounds: {args.rounds}; load average {load[0]:.2f} {load[1]:.2f}")
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
