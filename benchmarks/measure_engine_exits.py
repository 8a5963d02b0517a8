"""The one-instrument engine without exits against another tree's engine.py, and its cost with exits.

    git show <commit>:app/domain/backtesting/engine.py > /tmp/ref_engine.py
    python -m benchmarks.measure_engine_exits --reference /tmp/ref_engine.py [--rounds 11]

The workload is benchmarks/test_engine_bench.py's: `sma_cross` (10/30) over 1,000,000 one-minute bars,
about 20,000 round trips. The reference engine is loaded from its file into this process (it imports the
strategies and metrics of this tree, which the comparison leaves alone) and the two engines alternate,
ROUNDS times each, timed in process CPU time (`time.process_time`); both must give the same trades.
Then the same run with exits (stop-loss 0.3 %, take-profit 1 %, trailing stop 0.6 %, as in the
benchmark) is timed on its own. The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

from app.domain.backtesting.engine import run_strategy
from app.domain.backtesting.exits import Exits
from benchmarks.test_engine_bench import COSTS, PARAMS, synthetic_bars


def load_reference(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reference_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def cpu(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.process_time()
    out = fn()
    return time.process_time() - started, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, help="another tree's engine.py")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    bars = synthetic_bars(1_000_000)
    costs = {**COSTS, "periods_per_year": 252}

    def mine():  # type: ignore[no-untyped-def]
        return run_strategy(bars, "sma_cross", PARAMS, **costs)

    if args.reference is not None:
        ref = load_reference(args.reference)
        ref_bars = ref.Bars(**{k: getattr(bars, k) for k in ("ts", "open", "high", "low", "close", "volume")})

        def theirs():  # type: ignore[no-untyped-def]
            return ref.run_strategy(ref_bars, "sma_cross", PARAMS, **costs)

        mine(), theirs()
        a, b = [], []
        for i in range(args.rounds):
            pair = (mine, theirs) if i % 2 == 0 else (theirs, mine)
            (t1, o1), (t2, o2) = cpu(pair[0]), cpu(pair[1])
            if i % 2:
                t1, t2, o1, o2 = t2, t1, o2, o1
            key = [(t.entry_bar, t.exit_bar, t.quantity) for t in o1.trades]  # type: ignore[attr-defined]
            if key != [(t.entry_bar, t.exit_bar, t.quantity) for t in o2.trades]:  # type: ignore[attr-defined]
                raise SystemExit("the two engines trade differently")
            a.append(t1)
            b.append(t2)
        load = os.getloadavg()
        print(f"sma_cross, 1,000,000 bars, no exits, {args.rounds} alternating rounds, load {load[0]:.2f}")
        print(f"this tree: median {statistics.median(a):.3f} s CPU (min {min(a):.3f})")
        print(f"reference: median {statistics.median(b):.3f} s CPU (min {min(b):.3f})")
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(f"this / reference: median of per-round ratios {ratio:.3f}")

    exits = Exits(stop_loss_pct=0.3, take_profit_pct=1.0, trailing_stop_pct=0.6)
    times, out = [], None
    for _ in range(3):
        t, out = cpu(lambda: run_strategy(bars, "sma_cross", PARAMS, exits=exits, **costs))
        times.append(t)
    reasons: dict[str, int] = {}
    for trade in out.trades:  # type: ignore[attr-defined]
        if trade.exit_reason:
            reasons[trade.exit_reason] = reasons.get(trade.exit_reason, 0) + 1
    print(
        f"with exits (stop-loss 0.3 %, take-profit 1 %, trailing 0.6 %): best {min(times):.3f} s CPU of 3, "
        f"{len(out.trades):,} trades {reasons}; load {os.getloadavg()[0]:.2f}"  # type: ignore[attr-defined]
    )


if __name__ == "__main__":
    main()
