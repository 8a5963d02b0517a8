"""The latency gate (benchmarks/gate.py): per-round quotients against the reference commit, their median
against the tolerance, the REFERENCE file, the reference worktree (taken from real git repositories,
shallow clones included) and the test-only slowdowns of benchmarks/inject.py."""

import asyncio
import json
import subprocess
import time

import pytest

from benchmarks import gate, inject


def _results(path, **times):
    benchmarks = [{"name": k, "extra_info": {"times_us": v}} for k, v in times.items()]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def _verdicts(reference_runs, candidate_runs, tolerance=0.10):
    return {v.name: v for v in gate.compare(reference_runs, candidate_runs, tolerance)}


def test_calls_are_compared_pair_by_pair():
    # The machine slowed down in the middle of the round: both sides' calls 3 and 4 took 3x longer,
    # so a comparison of the two sides' medians would see noise; pair by pair it is exactly 5% or 20%.
    ref = [{"a": [100, 100, 300, 300, 100], "b": [10, 10, 30, 30, 10]}]
    cand = [{"a": [105, 105, 315, 315, 105], "b": [12, 12, 36, 36, 12]}]
    verdicts = _verdicts(ref, cand)
    assert verdicts["a"].status == "ok" and verdicts["a"].change == pytest.approx(0.05)
    assert verdicts["b"].status == "FAIL" and verdicts["b"].change == pytest.approx(0.2)
    assert verdicts["a"].reference == pytest.approx(0.1) and verdicts["a"].candidate == pytest.approx(0.105)
    ok, text = gate.report(list(verdicts.values()), 1, 0.10)
    assert not ok and "FAIL" in text.splitlines()[-1]


def test_noisy_pairs_are_outvoted_a_steady_slowdown_is_not():
    ref = [{"x": [100.0] * 9}, {"x": [100.0] * 9}]
    noisy = [{"x": [102, 300, 99, 104, 101, 250, 98, 100, 103]},
             {"x": [101, 99, 400, 100, 102, 98, 97, 99, 100]}]
    slow = [{"x": [112, 100, 115, 113, 120, 111, 114, 90, 116]}, {"x": [113] * 9}]
    assert _verdicts(ref, noisy)["x"].status == "ok"
    verdict = _verdicts(ref, slow)["x"]
    assert verdict.status == "FAIL" and verdict.spread == (pytest.approx(0.13), pytest.approx(0.13))
    # The tolerance is strict and the same on every machine.
    assert _verdicts(ref, [{"x": [111.0] * 9}] * 2)["x"].status == "FAIL"
    assert _verdicts(ref, [{"x": [109.0] * 9}] * 2)["x"].status == "ok"


def test_missing_candidate_fails_and_a_benchmark_new_since_the_reference_is_not_judged():
    verdicts = _verdicts([{"x": [1.0]}, {"x": [1.0]}], [{"x": [1.0], "new": [2.0]}, {"new": [2.0]}])
    assert verdicts["x"].status == "FAIL" and "in 1 of the reference's rounds" in verdicts["x"].note
    assert verdicts["new"].status == "new"
    # A re-measurement of only the failing benchmark leaves the others out of its rounds: not a failure.
    again = _verdicts([{"x": [100.0], "y": [100.0]}, {"y": [100.0]}],
                      [{"x": [101.0], "y": [130.0]}, {"y": [104.0]}])
    assert again["x"].status == "ok" and again["y"].change == pytest.approx(0.17)
    ok, _ = gate.report([verdicts["new"]], 2, 0.10)
    assert not ok  # nothing measured on both sides is no evidence of a pass


def test_check_command_reads_result_files(tmp_path, capsys):
    refs = [_results(tmp_path / f"r{i}.json", x=[100.0, 200.0]) for i in range(2)]
    good = [_results(tmp_path / f"g{i}.json", x=[105.0, 210.0]) for i in range(2)]
    slow = [_results(tmp_path / f"s{i}.json", x=[130.0, 260.0]) for i in range(2)]
    assert gate.main(["check", "--reference", *map(str, refs), "--candidate", *map(str, good)]) == 0
    assert gate.main(["check", "--reference", *map(str, refs), "--candidate", *map(str, slow)]) == 1
    assert "+30.0%" in capsys.readouterr().out
    assert gate.main(["check", "--reference", str(refs[0]), "--candidate", *map(str, good)]) == 2


def test_reference_file_round_trip_and_bad_content(tmp_path):
    path = tmp_path / "REFERENCE"
    head = subprocess.run(["git", "-C", str(gate.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert gate.main(["--reference-file", str(path), "set-reference"]) == 0
    assert path.read_text().startswith("#") and gate.read_reference(path) == head
    for bad in ("", "abc123\n", f"{head}\n{head}\n", "# only a comment\n"):
        path.write_text(bad)
        with pytest.raises(gate.GateError):
            gate.read_reference(path)
    with pytest.raises(gate.GateError, match="missing"):
        gate.read_reference(tmp_path / "absent")


def test_the_committed_reference_is_a_commit_of_this_repository():
    commit = gate.read_reference()
    gate.ensure_commit(gate.ROOT, commit)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with two commits of app/code.py (v1, v2) and an uncommitted benchmark file."""
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@example.com"}.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "repo"
    (path / "app").mkdir(parents=True)
    (path / "benchmarks").mkdir()

    def git(*args):
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    commits = []
    for version in ("v1", "v2"):
        (path / "app" / "code.py").write_text(version)
        (path / "benchmarks" / "bench.py").write_text(f"committed {version}")
        git("add", "-A")
        git("commit", "-q", "-m", version)
        commits.append(git("rev-parse", "HEAD"))
    (path / "benchmarks" / "bench.py").write_text("working copy")
    return path, commits, git


def test_reference_tree_has_the_reference_app_and_this_trees_benchmarks_and_is_removed(repo):
    path, (first, _), git = repo
    with gate.reference_tree(path, first) as tree:
        assert (tree / "app" / "code.py").read_text() == "v1"
        assert (tree / "benchmarks" / "bench.py").read_text() == "working copy"
        assert str(tree) in git("worktree", "list")
    assert not tree.exists()
    assert str(tree) not in git("worktree", "list")
    assert (path / "app" / "code.py").read_text() == "v2"


def test_shallow_clone_is_deepened_and_a_missing_commit_is_a_clear_error(repo, tmp_path):
    path, (first, _), _ = repo
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{path}", str(clone)], check=True)
    assert subprocess.run(["git", "-C", str(clone), "cat-file", "-e", first]).returncode != 0
    gate.ensure_commit(clone, first)  # fetches the history
    with gate.reference_tree(clone, first) as tree:
        assert (tree / "app" / "code.py").read_text() == "v1"
    with pytest.raises(gate.GateError, match="make bench-reference"):
        gate.ensure_commit(clone, "0" * 40)


def test_inject_spec_rejects_unknown_names():
    assert inject.parse("orders_list_sleep_ms=2, pre_trade_slowdown=0.15") == {
        "orders_list_sleep_ms": 2.0, "pre_trade_slowdown": 0.15}
    assert inject.parse("") == {}
    with pytest.raises(ValueError, match="unknown injection"):
        inject.parse("health_sleep_ms=2")


def test_slowed_function_takes_the_given_fraction_longer():
    def work():
        time.sleep(0.01)
        return 42

    slow = inject.slowed(work, 0.5)
    for _ in range(3):
        start = time.perf_counter()
        assert slow() == 42
        assert time.perf_counter() - start >= 0.015  # at least 1.5x the 10 ms the call itself took


def test_orders_list_middleware_delays_only_the_orders_list():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])

    assert inject.wrap_app(app, {}) is app
    slow = inject.wrap_app(app, {"orders_list_sleep_ms": 50})

    def elapsed(method, path):
        start = time.perf_counter()
        asyncio.run(slow({"type": "http", "method": method, "path": path}, None, None))
        return time.perf_counter() - start

    assert elapsed("GET", "/api/v1/accounts/abc/orders") >= 0.05
    assert elapsed("POST", "/api/v1/accounts/abc/orders") < 0.04
    assert elapsed("GET", "/api/v1/accounts/abc/orders/validate") < 0.04
    assert seen == ["/api/v1/accounts/abc/orders"] * 2 + ["/api/v1/accounts/abc/orders/validate"]


def test_rounds_of_groups_by_round_and_keeps_both_sides_aligned():
    results = {"benchmarks": [
        {"name": "test_a[0]", "params": {"gate_round": 0}, "extra_info": {"times_us": [1.0, 2.0]}},
        {"name": "test_a[2]", "params": {"gate_round": 2}, "extra_info": {"times_us": [3.0]}},
        {"name": "test_b", "params": None, "extra_info": {"times_us": [5.0]}},
        {"name": "test_untimed", "extra_info": {}},
    ]}
    assert len(gate.rounds_of(results)) == 3
    assert gate.rounds_of(results, 4) == [{"test_a": [1.0, 2.0], "test_b": [5.0]}, {}, {"test_a": [3.0]}, {}]


_TINY_BENCH = '''
import os, time

def _log(name):
    with open(os.environ["TURNS_LOG"], "a") as f:
        f.write(f"{os.environ['SIDE']} {name}\\n")

def test_one(benchmark, gate_round):
    _log(f"one[{gate_round}]")
    time.sleep(0.05)  # a side that did not wait for its turn would interleave its lines here
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info["times_us"] = [1.0 + gate_round]

def test_two(benchmark, gate_round):
    from benchmarks import baton

    _log(f"two[{gate_round}]")
    for call in range(2):
        baton.pass_turn()  # what harness.turn_times does before each timed call
        _log(f"two[{gate_round}] call {call}")
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info["times_us"] = [2.0]
'''

_TINY_CONFTEST = '''
import os, pytest

@pytest.fixture
def gate_round(request):
    return getattr(request, "param", 0)

def pytest_generate_tests(metafunc):
    metafunc.parametrize("gate_round", range(int(os.environ["TRADEDESK_BENCH_ROUNDS"])))

def pytest_configure(config):
    os.environ["SIDE"] = os.environ["TRADEDESK_BENCH_BATON"].rpartition("|")[2]
'''


def test_run_pair_alternates_the_two_processes_test_by_test(tmp_path, monkeypatch):
    sides = []
    for name in ("reference", "candidate"):
        tree = tmp_path / name
        (tree / "benchmarks").mkdir(parents=True)
        (tree / "benchmarks" / "__init__.py").write_text("")
        (tree / "benchmarks" / "baton.py").write_text((gate.ROOT / "benchmarks" / "baton.py").read_text())
        (tree / "benchmarks" / "conftest.py").write_text(_TINY_CONFTEST)
        (tree / "benchmarks" / "test_gate_bench.py").write_text(_TINY_BENCH)
        sides.append(gate.Side(name, tree))
    log = tmp_path / "turns.log"
    monkeypatch.setenv("TURNS_LOG", str(log))
    args = gate.build_parser().parse_args(["run", "--rounds", "2", "--timeout", "60"])
    reference, candidate = gate.run_pair(sides, 1, tmp_path, args)
    steps = ["one[0]", "one[1]"] + [f"two[{r}]{call}" for r in (0, 1) for call in ("", " call 0", " call 1")]
    turns = [f"{side} {step}" for step in steps for side in ("reference", "candidate")]
    assert log.read_text().split("\n")[:-1] == turns
    assert gate.rounds_of(reference) == [{"test_one": [1.0], "test_two": [2.0]},
                                         {"test_one": [2.0], "test_two": [2.0]}]
    assert gate.rounds_of(candidate) == gate.rounds_of(reference)
