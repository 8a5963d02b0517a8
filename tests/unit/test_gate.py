"""The latency gate's verdicts: within tolerance passes, a 30%+ slowdown fails, a missing benchmark fails,
with two runs the best one counts, and baselines are kept per machine (an unknown machine is judged
only for gross regressions against the highest recorded ratio)."""

import json

from benchmarks.gate import compare, fingerprint, machine, main

THIS = json.dumps({"arch": "x86_64", "cpu": "Test CPU A", "cache": "1 MB", "simd": "avx2", "cores": "2",
                   "python": "CPython 3.11"})
OTHER = json.dumps({"arch": "x86_64", "cpu": "Test CPU B", "cache": "32 MB", "simd": "avx512f", "cores": "2",
                    "python": "CPython 3.11"})


def _results(path, **ratios):
    benchmarks = [{"name": k, "extra_info": {"ratio": v}} for k, v in ratios.items()]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def _baseline(path, **per_machine):
    machines = {
        fingerprint(json.loads(desc)): {"machine": json.loads(desc), "measured": "2026-11-29", "ratios": r}
        for desc, r in per_machine.values()
    }
    path.write_text(json.dumps({"machines": machines}))
    return path


def _check(tmp_path, baseline, *runs, as_machine=THIS):
    files = [_results(tmp_path / f"r{i}.json", **run) for i, run in enumerate(runs)]
    return main(["check", *map(str, files), "--baseline", str(baseline), "--machine-json", as_machine])


def test_compare_tolerance_and_missing():
    ok, _ = compare({"a": 1.29, "b": 0.5}, {"a": 1.0, "b": 1.0}, 0.30)
    assert ok
    ok, lines = compare({"a": 1.31, "b": 1.0}, {"a": 1.0, "b": 1.0}, 0.30)
    assert not ok and any("FAIL" in line and line.startswith("a") for line in lines)
    ok, _ = compare({"b": 1.0}, {"a": 1.0, "b": 1.0}, 0.30)
    assert not ok


def test_check_uses_best_of_runs(tmp_path):
    baseline = _baseline(tmp_path / "base.json", a=(THIS, {"x": 1.0}))
    assert _check(tmp_path, baseline, {"x": 1.6}) == 1
    assert _check(tmp_path, baseline, {"x": 1.6}, {"x": 1.1}) == 0
    assert _check(tmp_path, baseline, {"x": 1.6}, {"x": 1.5}) == 1


def test_known_machine_is_judged_against_its_own_ratios(tmp_path):
    # The other machine's higher ratio must not widen this machine's 30% window.
    baseline = _baseline(tmp_path / "base.json", a=(THIS, {"x": 1.0}), b=(OTHER, {"x": 3.0}))
    assert _check(tmp_path, baseline, {"x": 1.25}) == 0
    assert _check(tmp_path, baseline, {"x": 1.4}) == 1
    assert _check(tmp_path, baseline, {"x": 3.5}, as_machine=OTHER) == 0
    assert _check(tmp_path, baseline, {"x": 4.0}, as_machine=OTHER) == 1


def test_unknown_machine_fails_only_gross_regressions_against_the_widest_ratio(tmp_path):
    baseline = _baseline(tmp_path / "base.json", b=(OTHER, {"x": 1.0, "y": 2.0}))
    assert _check(tmp_path, baseline, {"x": 1.9, "y": 3.9}) == 0  # hardware differences up to 2x pass
    assert _check(tmp_path, baseline, {"x": 2.1, "y": 2.0}) == 1  # beyond 2x fails
    assert _check(tmp_path, baseline, {"x": 1.0}) == 1  # a benchmark that stopped running fails
    empty = tmp_path / "none.json"
    assert _check(tmp_path, empty, {"x": 1.0}) == 1  # no baseline at all: nothing to judge by


def test_update_records_this_machine_and_keeps_the_others(tmp_path):
    baseline = _baseline(tmp_path / "base.json", b=(OTHER, {"y": 9.0}))
    run = _results(tmp_path / "r.json", y=2.5)
    assert main(["update", str(run), "--baseline", str(baseline), "--machine-json", THIS]) == 0
    machines = json.loads(baseline.read_text())["machines"]
    assert machines[fingerprint(json.loads(THIS))]["ratios"] == {"y": 2.5}
    assert machines[fingerprint(json.loads(OTHER))]["ratios"] == {"y": 9.0}
    assert _check(tmp_path, baseline, {"y": 2.6}) == 0


def test_fingerprint_tells_machines_apart_and_is_stable():
    here = machine()
    assert fingerprint(here) == fingerprint(dict(here))
    assert {"arch", "cpu", "cache", "simd", "cores", "python"} <= set(here)
    assert fingerprint(json.loads(THIS)) != fingerprint(json.loads(OTHER))


def test_update_records_the_median_of_several_runs(tmp_path):
    baseline = tmp_path / "base.json"
    runs = [_results(tmp_path / f"u{i}.json", z=v) for i, v in enumerate((1.0, 1.4, 1.2))]
    assert main(["update", *map(str, runs), "--baseline", str(baseline), "--machine-json", THIS]) == 0
    assert json.loads(baseline.read_text())["machines"][fingerprint(json.loads(THIS))]["ratios"] == {"z": 1.2}
