"""The CI latency gate: compare this run's benchmark ratios with the committed baseline.

Every gated benchmark stores `extra_info["ratio"]`: its time divided by a reference measured in the same
run, back to back (a CPU workload of the same kind for the pure cores, /health + one PostgreSQL and one
Redis round trip for endpoints). A busier machine moves both, so the ratio stays put; a handler that got
30% slower moves only its own ratio.

A ratio still depends on the hardware: two machines of the same kind here put the pre-trade check at
0.094 and 0.14 of the same bytecode loop, and /health at 0.027 and 0.088. So the baseline keeps one set
of ratios per machine, keyed by a fingerprint of the CPU and the interpreter:

- on a machine with its own baseline, a benchmark fails when its ratio is more than `--tolerance`
  (30%) above it;
- on a machine with none (CI here runs on the submitting session's machine; a new session may start on
  new hardware) the gate cannot tell hardware from a regression at 30%. It then compares against the
  highest ratio any recorded machine had and fails only beyond `--unknown-tolerance` (100%, a gross
  regression), and says so; `make bench-baseline` records the machine.

    python -m benchmarks.gate check RESULTS.json [RESULTS2.json] [--baseline benchmarks/baseline.json]
    python -m benchmarks.gate update RESULTS.json [RESULTS2.json ...] [--baseline benchmarks/baseline.json]
    python -m benchmarks.gate fingerprint
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import sys
from pathlib import Path

DEFAULT_BASELINE = Path(__file__).with_name("baseline.json")
# CPU features that change which numpy kernels run (and so the cost of the numpy-bound benchmarks).
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "sha_ni", "asimd", "sve")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def machine() -> dict[str, str]:
    """What makes ratios differ between machines: CPU model, cache, SIMD features, cores, interpreter."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "arch": platform.machine(),
        "cpu": info.get("model name") or info.get("CPU part") or platform.processor() or "unknown",
        "cache": info.get("cache size", ""),
        "simd": " ".join(f for f in _SIMD_FLAGS if f in flags),
        "cores": str(os.cpu_count() or 0),
        "python": f"{platform.python_implementation()} {'.'.join(platform.python_version_tuple()[:2])}",
    }


def fingerprint(description: dict[str, str]) -> str:
    canonical = json.dumps(description, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def ratios(results: dict) -> dict[str, float]:
    out = {}
    for bench in results.get("benchmarks", []):
        ratio = bench.get("extra_info", {}).get("ratio")
        if ratio is not None:
            out[bench["name"]] = float(ratio)
    return out


def compare(
    current: dict[str, float], baseline: dict[str, float], tolerance: float
) -> tuple[bool, list[str]]:
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


def load_baseline(path: Path) -> dict[str, dict]:
    """{fingerprint: {"machine": {...}, "measured": date, "ratios": {...}}}; a file that does not
    exist yet is an empty baseline."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    machines = data.get("machines")
    if not isinstance(machines, dict):
        raise SystemExit(f"{path}: expected {{'machines': {{fingerprint: ...}}}}")
    return machines


def widest(machines: dict[str, dict]) -> dict[str, float]:
    """Per benchmark, the highest ratio any recorded machine had: the fallback for an unknown machine."""
    out: dict[str, float] = {}
    for entry in machines.values():
        for name, value in entry["ratios"].items():
            out[name] = max(out.get(name, 0.0), value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["check", "update", "fingerprint"])
    parser.add_argument(
        "results", type=Path, nargs="*", help="one or more runs; check uses each benchmark's best run"
    )
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--tolerance", type=float, default=0.30)
    parser.add_argument("--unknown-tolerance", type=float, default=1.00)
    parser.add_argument("--machine-json", help=argparse.SUPPRESS)  # tests pretend to be another machine
    args = parser.parse_args(argv)

    here = json.loads(args.machine_json) if args.machine_json else machine()
    key = fingerprint(here)
    if args.command == "fingerprint":
        print(key, json.dumps(here, sort_keys=True))
        return 0
    if not args.results:
        parser.error("give at least one results file")
    runs = [ratios(json.loads(path.read_text())) for path in args.results]
    machines = load_baseline(args.baseline)

    if args.command == "update":
        # The baseline is the typical run (median), not the luckiest: a best-of-runs baseline would make
        # ordinary runs look like regressions.
        current = {name: statistics.median(r[name] for r in runs if name in r) for name in set().union(*runs)}
        machines[key] = {
            "machine": here, "measured": dt.date.today().isoformat(), "ratios": dict(sorted(current.items())),
        }
        args.baseline.write_text(json.dumps({"machines": machines}, indent=2, sort_keys=True) + "\n")
        print(f"baseline written for machine {key} ({here['cpu']}): {len(current)} ratios -> {args.baseline}")
        return 0

    # A real regression is slow in every run; noise rarely is. With several runs, judge the best one.
    current = {name: min(r[name] for r in runs if name in r) for name in set().union(*runs)}
    if key in machines:
        print(f"machine {key} ({here['cpu']}): its own baseline of {machines[key]['measured']}")
        ok, lines = compare(current, machines[key]["ratios"], args.tolerance)
        tolerance = args.tolerance
    else:
        print(f"machine {key} ({json.dumps(here, sort_keys=True)}) has no baseline: judging against the "
              f"highest ratio of {len(machines)} recorded machine(s) with +{args.unknown_tolerance:.0%} "
              "(only gross regressions fail here; `make bench-baseline` records this machine)")
        if not machines:
            print("latency gate: no baseline at all; run `make bench-baseline`")
            return 1
        tolerance = args.unknown_tolerance
        ok, lines = compare(current, widest(machines), tolerance)
    print("\n".join(lines))
    print(f"latency gate: {'PASS' if ok else 'FAIL'} (tolerance +{tolerance:.0%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
