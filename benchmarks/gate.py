"""The CI latency gate: this tree against the reference commit, measured side by side in one run.

`benchmarks/REFERENCE` names one commit. `run` checks it out in a temporary git worktree (a shallow
clone is deepened first) and replaces that tree's `benchmarks/` with this tree's, so both sides run the
same benchmark code and only `app/` and `migrations/` differ. It then starts two pytest processes over
`benchmarks/test_gate_bench.py`, one per tree, both with this tree's interpreter and venv, each with its
working directory and PYTHONPATH set to its tree and its own fresh database migrated by its own
migrations. The two take turns (benchmarks/baton.py): one test's set-up at a time, then one timed call
at a time, reference, candidate, reference, candidate, ... Call i of the candidate and call i of the
reference ran a millisecond apart, under the same neighbours, on the same machine.

A benchmark's change is the median over all its pairs of candidate call / reference call, minus 1; it
fails above `--tolerance` (10%, the same on every machine). Each process runs `--rounds` rounds of every
benchmark of its group, spread over its run (the pure cores and the endpoints are two groups, each with
its own process pair: PROCESS_GROUPS); when a benchmark fails, `--extra-processes` more process pairs
measure the failing benchmarks again and all pairs are judged together: a regression stays slow, a noisy
stretch is outvoted.

Moving the reference forward is a deliberate commit: `make bench-reference` writes HEAD into
benchmarks/REFERENCE (review, commit it on its own). Slow drift over many commits accumulates against
a fixed reference instead of hiding in per-commit noise.

    python -m benchmarks.gate run [--rounds 4] [--processes 1] [--extra-processes 1] [--tolerance 0.10]
                                  [-k EXPR] [--inject-candidate SPEC] [--out DIR]
    python -m benchmarks.gate check --reference R1.json [R2.json ...] --candidate C1.json [C2.json ...]
    python -m benchmarks.gate set-reference [COMMIT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FILE = Path(__file__).with_name("REFERENCE")
GATE_BENCH = "benchmarks/test_gate_bench.py"
# Each process pair runs one group (pytest -k). The pure cores (test_core_*) run in processes without the
# app loaded: next to the app's heap and connections an injected 15% slowdown of the pre-trade check
# measured +6.4% (and -4.2% next to /health), on its own +11.9% to +13.0%.
PROCESS_GROUPS = (("core", "cores"), ("not core", "app"))
WORKTREE_PREFIX = "tradedesk-gate-ref-"
REFERENCE_COMMENT = (
    "# The latency gate's reference commit (benchmarks/gate.py). Move it forward on purpose, in a commit of\n"
    "# its own: `make bench-reference` writes HEAD here.\n"
)
# What the benchmark processes must not inherit from the caller: the gate sets them per side.
# The PYTEST_XDIST_* ones: run from a pytest-xdist process (the gate's own tests under `make test`), the
# benchmark processes would inherit its worker identity, and pytest-benchmark turns itself off under xdist.
_SIDE_ENV = ("PYTHONPATH", "TRADEDESK_BENCH_TREE", "TRADEDESK_BENCH_INJECT", "TRADEDESK_BENCH_BATON",
             "TRADEDESK_BENCH_ROUNDS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
             "PYTEST_XDIST_TESTRUNUID")
# Test-suite plugins the benchmarks do not use; importing them (faker, hypothesis) costs seconds per process.
_UNUSED_PLUGINS = ("-p", "no:faker", "-p", "no:hypothesispytest", "-p", "no:schemathesis", "-p", "no:anyio")


class GateError(Exception):
    """A setup problem the gate cannot judge past (no reference commit, no git): exit 2 with a message."""

    @property
    def message(self) -> str:
        return str(self.args[0])


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=check)


def read_reference(path: Path = REFERENCE_FILE) -> str:
    """The commit hash in REFERENCE: the one line that is not blank and not a `#` comment."""
    if not path.exists():
        raise GateError(f"{path} is missing; `make bench-reference` writes HEAD into it")
    lines = [line.strip() for line in path.read_text().splitlines()]
    hashes = [line for line in lines if line and not line.startswith("#")]
    if len(hashes) != 1 or len(hashes[0]) != 40 or any(c not in "0123456789abcdef" for c in hashes[0]):
        raise GateError(f"{path} must hold exactly one full 40-character commit hash, found {hashes!r}")
    return hashes[0]


def write_reference(commit: str, path: Path = REFERENCE_FILE) -> None:
    path.write_text(REFERENCE_COMMENT + commit + "\n")


def ensure_commit(repo: Path, commit: str) -> None:
    """Make sure the clone has `commit`: a shallow clone (CI checkouts often are) is deepened first."""
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0:
        return
    shallow = _git(repo, "rev-parse", "--is-shallow-repository", check=False).stdout.strip() == "true"
    if shallow:
        print(f"latency gate: shallow clone without reference {commit[:12]}; running git fetch --unshallow",
              flush=True)
        fetched = _git(repo, "fetch", "--unshallow", "--quiet", check=False)
        if fetched.returncode == 0 and _git(repo, "cat-file", "-e", f"{commit}^{{commit}}",
                                            check=False).returncode == 0:
            return
        raise GateError(
            f"latency gate: the reference commit {commit} is not in this shallow clone and "
            f"`git fetch --unshallow` could not get it ({fetched.stderr.strip() or 'not on the remote'}); "
            "clone with full history (no --depth)"
        )
    raise GateError(
        f"latency gate: the reference commit {commit} (benchmarks/REFERENCE) is not in this repository; "
        "fetch it, or move the reference with `make bench-reference`"
    )


@contextlib.contextmanager
def reference_tree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary worktree of `commit` whose benchmarks/ is this tree's; removed on the way out."""
    ensure_commit(repo, commit)
    _prune_stale_worktrees(repo)
    path = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    try:
        added = _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit, check=False)
        if added.returncode != 0:
            raise GateError(f"latency gate: git worktree add failed: {added.stderr.strip()}")
        shutil.rmtree(path / "benchmarks", ignore_errors=True)
        shutil.copytree(repo / "benchmarks", path / "benchmarks",
                        ignore=shutil.ignore_patterns("__pycache__", "results", "*.pyc"))
        yield path
    finally:
        _git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)


def _prune_stale_worktrees(repo: Path) -> None:
    """A gate killed by SIGKILL leaves a worktree entry whose directory is gone: prune those."""
    listing = _git(repo, "worktree", "list", "--porcelain", check=False).stdout
    paths = [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")]
    if any(WORKTREE_PREFIX in p and not Path(p).exists() for p in paths):
        _git(repo, "worktree", "prune", check=False)


@dataclass(frozen=True)
class Side:
    name: str  # "reference" or "candidate"
    tree: Path
    inject: str = ""


class SideFailed(Exception):
    """A benchmark process died or stopped answering: its results cannot be judged."""


class _Turns:
    """The gate's end of the baton socket (benchmarks/baton.py): one text line per message."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.settimeout(timeout)
        self.sock = sock
        self.reader = sock.makefile("r", encoding="utf-8")

    def expect(self, word: str) -> list[str]:
        try:
            line = self.reader.readline()
        except TimeoutError as error:
            raise SideFailed(f"no {word!r} within {self.sock.gettimeout():.0f} s") from error
        parts = line.split()
        if not parts or parts[0] != word:
            raise SideFailed(f"expected {word!r}, got {line.strip()!r} (the process exited?)")
        return parts[1:]

    def turn(self) -> bool:
        """Let the process run until it yields (True) or ends, closing its socket (False)."""
        try:
            self.sock.sendall(b"go\n")
            line = self.reader.readline()
        except TimeoutError as error:
            raise SideFailed(f"a turn took longer than {self.sock.gettimeout():.0f} s") from error
        except OSError:
            return False
        if line.strip() not in ("yield", ""):
            raise SideFailed(f"unexpected message {line.strip()!r}")
        return line.strip() == "yield"


def _start(side: Side, out: Path, baton: str, args: argparse.Namespace,
           select: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in _SIDE_ENV}
    # TRADEDESK_BENCH_TREE: benchmarks/conftest.py checks that `app` is imported from this tree.
    env.update(PYTHONPATH=str(side.tree), TRADEDESK_BENCH_TREE=str(side.tree),
               TRADEDESK_BENCH_BATON=f"{baton}|{side.name}", TRADEDESK_BENCH_ROUNDS=str(args.rounds))
    if side.inject:
        env["TRADEDESK_BENCH_INJECT"] = side.inject
    command = [
        sys.executable, "-m", "pytest", GATE_BENCH, "-c", str(ROOT / "pyproject.toml"),
        "--rootdir", str(side.tree),
        "-p", "benchmarks.baton", "-p", "no:xdist", "-p", "no:cacheprovider", *_UNUSED_PLUGINS,
        "-o", "timeout=0",  # a test's wall time includes the other side's turns; the gate times turns
        "-q", "--benchmark-json", str(out),
    ]
    if select:
        command += ["-k", select]
    out.unlink(missing_ok=True)
    with out.with_suffix(".log").open("w") as log:
        return subprocess.Popen(command, cwd=side.tree, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_pair(sides: Sequence[Side], index: int | str, out_dir: Path, args: argparse.Namespace,
             select: str | None = None) -> list[dict]:
    """One process per side, alive together, taking turns test by test; their pytest-benchmark JSONs."""
    outs = [out_dir / f"{side.name}-{index}.json" for side in sides]
    with tempfile.TemporaryDirectory(prefix="tradedesk-gate-") as tmp:
        address = str(Path(tmp) / "baton.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(len(sides))
        server.settimeout(args.timeout)
        procs = [_start(side, out, address, args, select) for side, out in zip(sides, outs, strict=True)]
        try:
            _take_turns(server, sides, args.timeout)
            for proc in procs:
                proc.wait(timeout=args.timeout)
        except SideFailed as error:
            raise GateError(f"latency gate: {error}; logs in {out_dir}/*-{index}.log") from error
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            server.close()
    for side, out, proc in zip(sides, outs, procs, strict=True):
        if proc.returncode not in (0, 5):  # 5: `-k` selected none of this file's benchmarks
            tail = "\n".join(out.with_suffix(".log").read_text().strip().splitlines()[-15:])
            print(f"latency gate: the {side.name} run exited with {proc.returncode}:\n{tail}", flush=True)
    return [json.loads(out.read_text()) if out.exists() else {} for out in outs]


def _take_turns(server: socket.socket, sides: Sequence[Side], timeout: float) -> None:
    """Hand the baton to each side in turn until both have finished (closed their socket)."""
    turns: dict[str, _Turns] = {}
    while len(turns) < len(sides):
        try:
            conn, _ = server.accept()
        except TimeoutError as error:
            raise SideFailed(f"a benchmark process did not start within {timeout:.0f} s") from error
        link = _Turns(conn, timeout)
        turns[link.expect("hello")[0]] = link
    running = [side.name for side in sides]
    while running:
        for name in list(running):
            if not turns[name].turn():
                running.remove(name)


Times = dict[str, list[float]]  # benchmark -> per-call times (us) of one round, in turn order


def rounds_of(results: dict, count: int | None = None) -> list[Times]:
    """Per in-process round, {benchmark: call times} (names without their `[round]` suffix); `count`
    rounds, empty where a round measured nothing, so both sides' rounds stay aligned."""
    by_round: dict[int, Times] = {}
    for bench in results.get("benchmarks", []):
        times = bench.get("extra_info", {}).get("times_us")
        if times:
            index = int((bench.get("params") or {}).get("gate_round", 0))
            by_round.setdefault(index, {})[bench["name"].split("[", 1)[0]] = [float(t) for t in times]
    if count is None:
        count = max(by_round, default=-1) + 1
    return [by_round.get(i, {}) for i in range(count)]


@dataclass(frozen=True)
class Verdict:
    name: str
    reference: float | None  # median call time on the reference, ms
    candidate: float | None
    change: float | None  # median over all calls of candidate call i / reference call i, minus 1
    spread: tuple[float, float] | None  # lowest and highest per-round median quotient, minus 1
    status: str  # "ok", "FAIL", "new"
    note: str = ""


def compare(reference_runs: Sequence[Times], candidate_runs: Sequence[Times],
            tolerance: float) -> list[Verdict]:
    """Per benchmark, the median of the per-pair quotients candidate call / reference call, the calls of
    a pair having run one after the other. A benchmark the candidate did not measure in a round where the
    reference did fails; one the reference never measured (new, or its set-up does not run against the
    reference's API) is not judged. Rounds that measured neither side of it (a re-measurement of other
    benchmarks) are left out."""
    names = sorted(set().union(*reference_runs, *candidate_runs))
    verdicts = []
    for name in names:
        ref_calls = [t for r in reference_runs for t in r.get(name, [])]
        cand_calls = [t for c in candidate_runs for t in c.get(name, [])]
        ref_ms = statistics.median(ref_calls) / 1000 if ref_calls else None
        cand_ms = statistics.median(cand_calls) / 1000 if cand_calls else None
        both = [(ref[name], cand[name]) for ref, cand in zip(reference_runs, candidate_runs, strict=True)
                if name in ref and name in cand]
        lost = sum(name in ref and name not in cand
                   for ref, cand in zip(reference_runs, candidate_runs, strict=True))
        if lost:
            note = f"not measured in {lost} of the reference's rounds"
            verdicts.append(Verdict(name, ref_ms, cand_ms, None, None, "FAIL", note))
        elif not both:
            verdicts.append(Verdict(name, None, cand_ms, None, None, "new",
                                    "not measured on the reference: judged once REFERENCE moves past it"))
        else:
            round_quotients = [[c / r for r, c in zip(ref_times, cand_times, strict=False)]
                               for ref_times, cand_times in both]
            change = statistics.median([q for quotients in round_quotients for q in quotients]) - 1
            per_round = [statistics.median(quotients) - 1 for quotients in round_quotients]
            verdicts.append(Verdict(name, ref_ms, cand_ms, change, (min(per_round), max(per_round)),
                                    "FAIL" if change > tolerance else "ok"))
    return verdicts


def report(verdicts: Sequence[Verdict], rounds: int, tolerance: float) -> tuple[bool, str]:
    def num(value: float | None, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"

    lines = [f"{'benchmark':34} {'ref ms':>8} {'cand ms':>8} {'change':>8} {'rounds min..max':>17}"]
    for v in verdicts:
        spread = f"{v.spread[0]:+.1%}..{v.spread[1]:+.1%}" if v.spread else ""
        lines.append(f"{v.name:34} {num(v.reference, '8.3f')} {num(v.candidate, '8.3f')} "
                     f"{num(v.change, '+8.1%')} {spread:>17}  {v.status} {v.note}".rstrip())
    judged = [v for v in verdicts if v.status != "new"]
    ok = bool(judged) and all(v.status == "ok" for v in judged)
    if not judged:
        lines.append("latency gate: nothing was measured on both sides")
    lines.append(f"latency gate: {'PASS' if ok else 'FAIL'} ({rounds} rounds; change = median of per-call "
                 f"quotients candidate/reference; tolerance +{tolerance:.0%})")
    return ok, "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so the reference worktree is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    commit = read_reference(args.reference_file)
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"latency gate: {ROOT} against reference {commit[:12]}: {args.processes} process pair(s) of "
          f"{args.rounds} rounds", flush=True)
    reference_runs: list[Times] = []
    candidate_runs: list[Times] = []
    with reference_tree(ROOT, commit) as ref_tree:
        sides = (Side("reference", ref_tree), Side("candidate", ROOT, args.inject_candidate))

        def measure(pairs: int, select: str | None) -> list[Verdict]:
            for _ in range(pairs):
                index = len(reference_runs) // args.rounds + 1
                reference_rounds: list[Times] = [{} for _ in range(args.rounds)]
                candidate_rounds: list[Times] = [{} for _ in range(args.rounds)]
                for group, label in PROCESS_GROUPS:
                    chosen = f"({group}) and ({select})" if select else group
                    reference, candidate = run_pair(sides, f"{index}-{label}", out_dir, args, chosen)
                    for merged, results in ((reference_rounds, reference), (candidate_rounds, candidate)):
                        for into, measured in zip(merged, rounds_of(results, args.rounds), strict=True):
                            into.update(measured)
                reference_runs.extend(reference_rounds)
                candidate_runs.extend(candidate_rounds)
                elapsed = time.monotonic() - started
                print(f"latency gate: process pair {index} done at {elapsed:.0f} s", flush=True)
            return compare(reference_runs, candidate_runs, args.tolerance)

        verdicts = measure(args.processes, args.select)
        failing = [v.name for v in verdicts if v.status == "FAIL"]
        if args.extra_processes and failing:
            print(report(verdicts, len(reference_runs), args.tolerance)[1])
            print(f"latency gate: measuring {', '.join(failing)} in {args.extra_processes} more process "
                  "pair(s) to tell a regression from noise", flush=True)
            # Only the failing benchmarks: what passed stays judged on the first pairs; CI time stays short.
            again = " or ".join(failing)
            verdicts = measure(args.extra_processes,
                               f"({args.select}) and ({again})" if args.select else again)
    ok, text = report(verdicts, len(reference_runs), args.tolerance)
    print(text)
    summary = {"reference": commit, "tolerance": args.tolerance, "pass": ok, "rounds": len(reference_runs),
               "seconds": round(time.monotonic() - started), "inject_candidate": args.inject_candidate,
               "verdicts": [v.__dict__ for v in verdicts]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"latency gate: {time.monotonic() - started:.0f} s; results and logs in {out_dir}")
    return 0 if ok else 1


def check(args: argparse.Namespace) -> int:
    if len(args.reference) != len(args.candidate):
        raise GateError("give as many --reference files as --candidate files (one process pair each)")
    reference_runs: list[Times] = []
    candidate_runs: list[Times] = []
    for ref_path, cand_path in zip(args.reference, args.candidate, strict=True):
        reference, candidate = json.loads(ref_path.read_text()), json.loads(cand_path.read_text())
        count = max(len(rounds_of(reference)), len(rounds_of(candidate)))
        reference_runs.extend(rounds_of(reference, count))
        candidate_runs.extend(rounds_of(candidate, count))
    verdicts = compare(reference_runs, candidate_runs, args.tolerance)
    ok, text = report(verdicts, len(reference_runs), args.tolerance)
    print(text)
    return 0 if ok else 1


def set_reference(args: argparse.Namespace) -> int:
    resolved = _git(ROOT, "rev-parse", "--verify", f"{args.commit}^{{commit}}", check=False)
    if resolved.returncode != 0:
        raise GateError(f"not a commit: {args.commit}")
    commit = resolved.stdout.strip()
    write_reference(commit, args.reference_file)
    print(f"{args.reference_file} -> {commit}; commit it on its own (`git commit {args.reference_file}`)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-file", type=Path, default=REFERENCE_FILE)
    parser.add_argument("--tolerance", type=float, default=0.10)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="measure the reference commit and this tree, judge")
    run_parser.add_argument("--rounds", type=int, default=4, help="rounds of every benchmark per process")
    run_parser.add_argument("--processes", type=int, default=1, help="process pairs (reference + candidate)")
    run_parser.add_argument("--extra-processes", type=int, default=1,
                            help="more process pairs when a benchmark fails, judged with the first ones")
    run_parser.add_argument("--timeout", type=float, default=600, help="seconds a process may take per turn")
    run_parser.add_argument("--out", type=Path, default=ROOT / ".benchmarks" / "gate")
    run_parser.add_argument("-k", dest="select", help="pytest -k expression: only these benchmarks")
    run_parser.add_argument("--inject-candidate", default="",
                            help="test-only slowdowns for the candidate side (benchmarks/inject.py), "
                                 "e.g. orders_list_sleep_ms=2 or pre_trade_slowdown=0.15")
    check_parser = commands.add_parser("check", help="judge earlier runs' result files (a pair per round)")
    check_parser.add_argument("--reference", type=Path, nargs="+", required=True)
    check_parser.add_argument("--candidate", type=Path, nargs="+", required=True)
    ref_parser = commands.add_parser("set-reference", help="write a commit (default HEAD) into REFERENCE")
    ref_parser.add_argument("commit", nargs="?", default="HEAD")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": run, "check": check, "set-reference": set_reference}[args.command](args)
    except GateError as error:
        print(error.message, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
