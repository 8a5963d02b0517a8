"""The CI latency gate: compare this run's benchmark ratios with the committed baseline.

Every gated benchmark stores `extra_info["ratio"]`: its time divided by a reference measured in the same
run, back to back (the CPU calibration loop, or /health for endpoints). A slower or busier machine moves
both, so the ratio stays put; a handler that got 30% slower moves only its own ratio.

    python -m benchmarks.gate check RESULTS.json [--baseline benchmarks/baseline.json] [--tolerance 0.30]
    python -m benchmarks.gate update RESULTS.json [--baseline benchmarks/baseline.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_BASELINE = Path(__file__).with_name("baseline.json")


def ratios(results: dict) -> dict[str, float]:
    out = {}
    for bench in results.get("benchmarks", []):
        ratio = bench.get("extra_info", {}).get("ratio")
        if ratio is not None:
            out[bench["name"]] = float(ratio)
    return out


def compare(current: dict[str, float], baseline: dict[str, float], tolerance: float) -> tuple[bool, list[str]]:
    ok = True
    lines = [f"{'benchmark':52} {'baseline':>10} {'now':>10} {'change':>8}"]
    for name in sorted(baseline):
        base = baseline[name]
        now = current.get(name)
        if now is None:
            ok = False
            lines.append(f"{name:52} {base:10.3f} {'missing':>10} {'':>8}  FAIL (not measured)")
            continue
        change = now / base - 1
        verdict = "FAIL" if change > tolerance else "ok"
        ok = ok and verdict == "ok"
        lines.append(f"{name:52} {base:10.3f} {now:10.3f} {change:+8.1%}  {verdict}")
    for name in sorted(set(current) - set(baseline)):
        lines.append(f"{name:52} {'(new)':>10} {current[name]:10.3f}")
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "update"])
    parser.add_argument("results", type=Path, nargs="+", help="one or more runs; check uses each benchmark's best run")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--tolerance", type=float, default=0.30)
    args = parser.parse_args(argv)
    runs = [ratios(json.loads(path.read_text())) for path in args.results]
    # A real regression is slow in every run; noise rarely is. With several runs, judge the best one.
    current = {name: min(r[name] for r in runs if name in r) for name in set().union(*runs)}
    if args.command == "update":
        args.baseline.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")
        print(f"baseline written: {len(current)} ratios -> {args.baseline}")
        return 0
    baseline = json.loads(args.baseline.read_text())
    ok, lines = compare(current, baseline, args.tolerance)
    print("\n".join(lines))
    print(f"latency gate: {'PASS' if ok else 'FAIL'} (tolerance +{args.tolerance:.0%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
