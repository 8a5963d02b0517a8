"""The latency gate's verdicts: within tolerance passes, a 30%+ slowdown fails, a missing benchmark fails,
and with two runs the best one counts."""

import json

from benchmarks.gate import compare, main


def _results(path, **ratios):
    path.write_text(json.dumps({"benchmarks": [{"name": k, "extra_info": {"ratio": v}} for k, v in ratios.items()]}))
    return path


def test_compare_tolerance_and_missing():
    ok, _ = compare({"a": 1.29, "b": 0.5}, {"a": 1.0, "b": 1.0}, 0.30)
    assert ok
    ok, lines = compare({"a": 1.31, "b": 1.0}, {"a": 1.0, "b": 1.0}, 0.30)
    assert not ok and any("FAIL" in line and line.startswith("a") for line in lines)
    ok, _ = compare({"b": 1.0}, {"a": 1.0, "b": 1.0}, 0.30)
    assert not ok


def test_check_uses_best_of_runs(tmp_path):
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"x": 1.0}))
    noisy = _results(tmp_path / "r1.json", x=1.6)
    clean = _results(tmp_path / "r2.json", x=1.1)
    assert main(["check", str(noisy), "--baseline", str(baseline)]) == 1
    assert main(["check", str(noisy), str(clean), "--baseline", str(baseline)]) == 0
    slow = _results(tmp_path / "r3.json", x=1.5)
    assert main(["check", str(noisy), str(slow), "--baseline", str(baseline)]) == 1


def test_update_writes_baseline(tmp_path):
    baseline = tmp_path / "base.json"
    main(["update", str(_results(tmp_path / "r.json", y=2.5)), "--baseline", str(baseline)])
    assert json.loads(baseline.read_text()) == {"y": 2.5}
