"""The portfolio engine against vectorbt's `Portfolio.from_orders` on the same data, side by side.

vectorbt is a benchmark peer only, never a dependency of the application: it lives in its own virtual
environment next to the project's (numba and pandas are large, and vectorbt pins them).

    .tools/bin/uv venv .venv-vectorbt --python .venv/bin/python
    .tools/bin/uv pip install --python .venv-vectorbt/bin/python "vectorbt>=0.26" msgspec
    .venv-vectorbt/bin/python -m benchmarks.measure_vectorbt_portfolio

Both simulate 500 symbols x 2,520 weekday daily bars with equal target weights decided at the last
bar of each month and executed at the next open, sells before buys (vectorbt: `call_seq="auto"`),
shared cash, a 5 bp commission and 1 bp slippage, fractional units. vectorbt is timed after a warm-up
call that compiles its numba kernels; each side's best of ROUNDS runs is reported, in one process.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np

from app.domain.backtesting.portfolio import Commission, run_portfolio
from benchmarks.portfolio_data import INITIAL_CASH, monthly_equal_weights, synthetic_portfolio

ROUNDS = 5
FEE_RATE = 0.0005
SLIPPAGE_BPS = 1.0


def best_of(fn, rounds: int = ROUNDS) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    import pandas as pd
    import vectorbt as vbt

    bars = synthetic_portfolio()
    plan = monthly_equal_weights(bars)
    commission = Commission(rate=FEE_RATE)

    def ours():
        return run_portfolio(
            bars, plan, initial_cash=INITIAL_CASH, commission=commission, slippage_bps=SLIPPAGE_BPS
        )

    # vectorbt's inputs: the target weight on each execution bar (decision + 1), NaN elsewhere.
    index = pd.to_datetime(bars.ts, unit="s")
    size = np.full((bars.n, bars.m), np.nan)
    executions = plan.decision_bars[plan.decision_bars < bars.n - 1] + 1
    size[executions] = 1.0 / bars.m
    size_df = pd.DataFrame(size, index=index, columns=list(bars.symbols))
    open_df = pd.DataFrame(bars.open, index=index, columns=list(bars.symbols))
    close_df = pd.DataFrame(bars.close, index=index, columns=list(bars.symbols))

    def theirs():
        return vbt.Portfolio.from_orders(
            close=close_df,
            size=size_df,
            size_type="targetpercent",
            price=open_df,
            fees=FEE_RATE,
            slippage=SLIPPAGE_BPS / 1e4,
            init_cash=INITIAL_CASH,
            cash_sharing=True,
            group_by=True,
            call_seq="auto",
            freq="1D",
        )

    started = time.perf_counter()
    theirs()  # compiles the numba kernels
    warmup = time.perf_counter() - started
    ours()
    ours_best, result = best_of(ours)
    theirs_best, pf = best_of(theirs)
    ours_final = float(result.equity[-1])
    theirs_final = float(np.asarray(pf.value()).ravel()[-1])
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {cpu}")
    print(f"data: {bars.m} symbols x {bars.n} bars, {executions.size} monthly rebalances")
    print(
        f"tradedesk run_portfolio       best of {ROUNDS}: {ours_best:.3f} s  final equity {ours_final:,.2f}"
    )
    print(
        f"vectorbt from_orders (warm)   best of {ROUNDS}: {theirs_best:.3f} s  "
        f"final value  {theirs_final:,.2f}"
    )
    print(f"vectorbt first call (numba compile included): {warmup:.1f} s")
    print(
        f"ratio vectorbt / tradedesk: {theirs_best / ours_best:.2f}x; final values differ by "
        f"{abs(theirs_final / ours_final - 1) * 100:.3f} %"
    )


if __name__ == "__main__":
    main()
