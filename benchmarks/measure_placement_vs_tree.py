"""Placement cost of this tree against another checkout of the project, side by side in one run.

    python -m benchmarks.measure_placement_vs_tree --other /path/to/other/checkout [--rounds 5] [--orders 1000]

Alternates `python -m benchmarks.measure_placement_roundtrips --repeats 1` in this tree and in the other
one (each on its own scratch database, migrated by its own migrations, with this environment's Python),
and reports each tree's median client CPU and wall time per market order and their ratio. Used to price a
change of the placement write (e.g. the stream seq and the stored order state of migration 0008) against
the commit before it: `git archive <commit> | tar -x -C /tmp/base`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

LINE = re.compile(r"^(kept|read)\s+client CPU\s+([\d.]+) us/order, wall\s+([\d.]+) us/order")


def run(tree: Path, orders: int) -> dict[str, tuple[float, float]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.measure_placement_roundtrips",
            "--orders",
            str(orders),
            "--repeats",
            "1",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    ).stdout
    found = {}
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            found[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--orders", type=int, default=1000)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    results: dict[str, list[dict[str, tuple[float, float]]]] = {"this": [], "other": []}
    for i in range(args.rounds):
        order = (
            [("this", here), ("other", args.other)] if i % 2 == 0 else [("other", args.other), ("this", here)]
        )
        for name, tree in order:
            results[name].append(run(tree, args.orders))
            print(name, results[name][-1], flush=True)
    for mode in ("kept", "read"):
        cpu = {k: statistics.median(r[mode][0] for r in v) for k, v in results.items()}
        wall = {k: statistics.median(r[mode][1] for r in v) for k, v in results.items()}
        print(
            f"{mode}: this CPU {cpu['this']:.1f} us, wall {wall['this']:.1f} us | other CPU {cpu['other']:.1f} us, "
            f"wall {wall['other']:.1f} us | wall ratio this/other {wall['this'] / wall['other']:.3f}, "
            f"CPU ratio {cpu['this'] / cpu['other']:.3f}"
        )


if __name__ == "__main__":
    main()
