"""Portfolio backtest engine (pure numpy, no I/O) implementing DOMAIN.md "Portfolio backtests".

Many symbols on one aligned bar grid share one cash balance. Like the single-instrument engine
(engine.py) it runs in float64 and is deterministic; ``portfolio_input_hash`` fingerprints its inputs.

Execution model (``run_portfolio``):

- A plan decides at bar ``t``'s close; its orders execute at bar ``t+1``'s open. A decision on the
  final bar has no next open and trades nothing.
- ``WeightPlan``: target weights at decision bars (``rebalance_bars`` gives the first bar and the last
  bar of each day/ISO week/calendar month). ``SignalPlan``: a per-bar direction per symbol (from a
  registered strategy or the rules language); it decides at every bar where some symbol's direction
  changes. ``equal_weight`` then splits equity equally among the symbols it holds; ``percent_equity``
  gives each new entry ``percent`` of equity and leaves the other holdings alone.
- At an execution open, ``V = cash + sum(q * open)`` is computed once; the target quantity of symbol i
  is ``w_i * V / open_i`` (floored toward zero to the lot size with ``whole_units``). The differences
  trade **sells before buys**, in symbol order within each side. Sells fill at
  ``open * (1 - slippage)``, buys at ``open * (1 + slippage)``; each fill pays
  ``max(minimum, fixed + rate * notional)`` out of cash. A buy that cash cannot cover is reduced to
  the largest quantity cash covers (``Commission.max_notional``); later buys get what is left. With
  ``leverage`` L above 1, buys may also borrow: cash may fall to ``-(L - 1) * V``. With ``V <= 0``
  (exhausted) every target is 0: positions close as far as cash allows, nothing is bought, and no long
  weight becomes a short position.
- Exits inside a bar (``Exits``, in percent like the paper exchange's ``trail_percent``) apply to every
  open position. Levels: stop ``avg_entry * (1 - sl/100)``, target ``avg_entry * (1 + tp/100)``,
  trailing stop ``extreme * (1 - tr/100)`` where the extreme is the best price since the position
  opened (its entry open, then each bar's open and, after the bar, its high); mirrored for shorts. The
  paper exchange's stop rule (``trading.rules.is_triggered``: a sell stop triggers when the price is
  at or below the stop) is applied to the bar's open first: an open at or beyond the stop fills at the
  open; otherwise a low (high for shorts) at or beyond the stop fills at the stop. Stops fill as market
  orders (slippage against the trader); the target is a resting limit that fills at its price, like
  the paper exchange's resting limits. When one bar reaches both, the stop is taken (pessimistic).
  After an exit a ``WeightPlan`` symbol stays flat until the next decision; a ``SignalPlan`` symbol
  stays flat until its direction changes to a new entry.
- Equity is valued at each bar's close after that bar's fills.
- Trades are round trips per symbol with average-cost accounting: a trade opens when a position leaves
  zero and closes when it returns to zero (a reversal closes one and opens another, the fill's fee
  split by quantity). ``pnl`` is realised PnL net of every fee of the trade; ``entry_price`` /
  ``exit_price`` are quantity-weighted averages of its opening / closing fills; ``quantity`` is its
  largest size. A position still open at the end is marked at the last close (``is_open``).
- Annualisation follows the data's calendar unless ``periods_per_year`` is given
  (``infer_periods_per_year``); with benchmark closes, ``benchmark_metrics`` adds alpha, beta,
  tracking error and information ratio.

Decisions are a short Python loop (one iteration per execution bar); everything across symbols and
bars (fills, exits, equity) is numpy. The value types are in portfolio_model.py, the fills,
accounting and exits in portfolio_book.py; this module re-exports the types.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np

from app.domain.analytics.metrics import performance_metrics, trade_metrics
from app.domain.backtesting.engine import equity_returns
from app.domain.backtesting.exits import Exits
from app.domain.backtesting.periods import infer_periods_per_year
from app.domain.backtesting.portfolio_book import Book, rebalance, run_exits
from app.domain.backtesting.portfolio_model import (
    Commission,
    PortfolioBars,
    PortfolioResult,
    PortfolioTrade,
    SignalPlan,
    Sizing,
    WeightPlan,
)

__all__ = [
    "Commission",
    "Exits",
    "PortfolioBars",
    "PortfolioResult",
    "PortfolioTrade",
    "SignalPlan",
    "Sizing",
    "WeightPlan",
    "benchmark_metrics",
    "check_weights",
    "infer_periods_per_year",
    "portfolio_input_hash",
    "rebalance_bars",
    "run_portfolio",
]

ProgressFn = Callable[[float], Any]
Rebalance = Literal["daily", "weekly", "monthly"]
WEIGHT_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------
# Calendar helpers
# ----------------------------------------------------------------------------------------------


def rebalance_bars(ts: np.ndarray, rebalance: Rebalance) -> np.ndarray:
    """Decision bars of fixed weights: the first bar, then the last bar of each period (DOMAIN.md)."""
    ts = np.asarray(ts, dtype=np.int64)
    n = ts.size
    if rebalance == "daily":
        return np.arange(n)
    if rebalance == "weekly":
        # 1970-01-01 was a Thursday: (days + 3) // 7 numbers the Monday-to-Sunday (ISO) weeks.
        period = (ts // 86_400 + 3) // 7
    elif rebalance == "monthly":
        period = ts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    else:
        raise ValueError(f"unknown rebalance {rebalance!r}")
    last = np.flatnonzero(period[1:] != period[:-1])
    return np.unique(np.concatenate(([0], last, [n - 1])))


def benchmark_metrics(
    returns: np.ndarray, bench: np.ndarray, periods_per_year: int
) -> dict[str, float | None]:
    """alpha, beta, tracking_error, information_ratio over aligned period returns (DOMAIN.md)."""
    r = np.asarray(returns, dtype=np.float64)
    b = np.asarray(bench, dtype=np.float64)
    out: dict[str, float | None] = dict.fromkeys(("alpha", "beta", "tracking_error", "information_ratio"))
    if r.size < 2 or r.shape != b.shape:
        return out
    P = float(periods_per_year)
    var_b = float(np.var(b, ddof=1))
    if var_b > 0.0:
        beta = float(np.cov(r, b, ddof=1)[0, 1]) / var_b
        out["beta"] = beta
        out["alpha"] = float(np.mean(r - beta * b)) * P
    active = r - b
    te = float(np.std(active, ddof=1)) * math.sqrt(P)
    if te > 1e-12 * max(1e-300, float(np.mean(np.abs(active)))) and te > 0.0:
        out["tracking_error"] = te
        out["information_ratio"] = float(np.mean(active)) * P / te
    elif te == 0.0 or te <= 1e-12 * float(np.mean(np.abs(active))):
        out["tracking_error"] = 0.0
    return out


# ----------------------------------------------------------------------------------------------
# Validation and hashing
# ----------------------------------------------------------------------------------------------


def check_weights(weights: np.ndarray, *, allow_short: bool, leverage: float) -> None:
    """ValueError naming the row when a weight row is negative without shorting or over leverage."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite numbers")
    if not allow_short and np.any(w < 0.0):
        raise ValueError("negative weights need `allow_short`")
    gross = np.abs(w).sum(axis=-1)
    if np.any(gross > leverage + WEIGHT_TOLERANCE):
        raise ValueError(f"weights sum to {float(gross.max())!r} (absolute), above the leverage {leverage!r}")


def portfolio_input_hash(bars: PortfolioBars, allocation: Mapping[str, Any], costs: Mapping[str, Any]) -> str:
    """sha256 over the symbols, the bar arrays (fixed little-endian dtypes) and the canonical JSON of
    the allocation and the costs; a benchmark's closes are part of ``costs`` via the caller."""
    h = hashlib.sha256()
    h.update(b"tradedesk-portfolio-v1\0")
    h.update(msgspec.json.encode(list(bars.symbols)))
    h.update(bars.ts.astype("<i8", copy=False).tobytes())
    for arr in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(arr.astype("<f8", copy=False).tobytes())
    h.update(
        msgspec.json.encode(
            {"allocation": msgspec.to_builtins(allocation), "costs": msgspec.to_builtins(costs)},
            order="sorted",
        )
    )
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# The simulation
# ----------------------------------------------------------------------------------------------


def run_portfolio(
    bars: PortfolioBars,
    plan: WeightPlan | SignalPlan,
    *,
    initial_cash: float,
    commission: Commission | None = None,
    slippage_bps: float = 0.0,
    allow_short: bool = False,
    leverage: float = 1.0,
    whole_units: bool = False,
    lot_size: Sequence[float] | np.ndarray | None = None,
    exits: Exits | None = None,
    periods_per_year: int | None = None,
    benchmark_close: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    input_hash: str | None = None,
) -> PortfolioResult:
    """Simulate ``plan`` over ``bars`` (rules in the module docstring).

    Raises ``ValueError`` for invalid costs, weights (negative without ``allow_short``, absolute sum
    above ``leverage``) or plan shapes.
    """
    commission = commission or Commission()
    exits = exits or Exits()
    n, m = bars.n, bars.m
    if not (math.isfinite(initial_cash) and initial_cash > 0.0):
        raise ValueError("`initial_cash` must be a finite number greater than zero")
    if not (math.isfinite(slippage_bps) and 0.0 <= slippage_bps < 10_000.0):
        raise ValueError("`slippage_bps` must be in [0, 10000)")
    if not (math.isfinite(leverage) and leverage > 0.0):
        raise ValueError("`leverage` must be greater than zero")
    lot = np.ones(m) if lot_size is None else np.asarray(lot_size, dtype=np.float64)
    if lot.shape != (m,) or np.any(~np.isfinite(lot)) or np.any(lot <= 0.0):
        raise ValueError("`lot_size` must give one positive size per symbol")
    if periods_per_year is None:
        periods_per_year = infer_periods_per_year(bars.ts)
    if (
        isinstance(periods_per_year, bool)
        or int(periods_per_year) != periods_per_year
        or periods_per_year < 1
    ):
        raise ValueError("`periods_per_year` must be a positive integer")
    periods_per_year = int(periods_per_year)

    if isinstance(plan, WeightPlan):
        dbars = np.asarray(plan.decision_bars, dtype=np.int64)
        weights = np.asarray(plan.weights, dtype=np.float64)
        if weights.shape != (dbars.size, m):
            raise ValueError(f"weights must have shape ({dbars.size}, {m})")
        if dbars.size and (np.any(np.diff(dbars) <= 0) or dbars[0] < 0 or dbars[-1] >= n):
            raise ValueError("decision bars must be strictly increasing bar indices")
        check_weights(weights, allow_short=allow_short, leverage=leverage)
        keep = dbars < n - 1
        exec_bars, rows = dbars[keep] + 1, weights[keep]
        direction = None
    else:
        direction = np.asarray(plan.direction)
        if direction.shape != (n, m):
            raise ValueError(f"direction must have shape ({n}, {m})")
        direction = np.clip(direction.astype(np.int8), -1 if allow_short else 0, 1)
        if plan.sizing == "percent_equity":
            if not (math.isfinite(plan.percent) and 0.0 < plan.percent <= 100.0 * leverage):
                raise ValueError("`percent` must be above 0 and at most 100 times the leverage")
        elif plan.sizing != "equal_weight":
            raise ValueError(f"unknown sizing {plan.sizing!r}")
        prev = np.vstack([np.zeros((1, m), dtype=np.int8), direction[:-1]])
        changed = np.flatnonzero(np.any(direction != prev, axis=1))
        exec_bars = changed[changed < n - 1] + 1
        rows = None

    slip = slippage_bps / 1e4
    book = Book(bars, float(initial_cash))
    blocked = np.zeros(m, dtype=bool)  # signal plans: stopped out, waiting for a new entry
    change_bars: list[int] = [0]
    change_q: list[np.ndarray] = [book.q.copy()]
    change_cash: list[float] = [book.cash]

    def record(bar: int, q: np.ndarray | None = None, cash: float | None = None) -> None:
        """The state holding from ``bar``'s close (the book's current one unless given)."""
        q = book.q.copy() if q is None else q
        cash = book.cash if cash is None else cash
        if change_bars[-1] == bar:
            change_q[-1], change_cash[-1] = q, cash
        else:
            change_bars.append(bar)
            change_q.append(q)
            change_cash.append(cash)

    bounds = np.append(exec_bars, n).tolist()
    report_every = max(1, len(exec_bars) // 50)
    for k, e in enumerate(exec_bars.tolist()):
        if progress is not None and k % report_every == 0:
            progress(0.9 * e / n)
        if direction is None:
            w = rows[k]  # type: ignore[index]
        else:
            now, before = direction[e - 1], direction[e - 2] if e >= 2 else np.zeros(m, dtype=np.int8)
            entering = (now != 0) & (now != before)
            blocked &= ~entering
            active = (now != 0) & ~blocked
            if plan.sizing == "equal_weight":  # type: ignore[union-attr]
                count = int(active.sum())
                w = np.where(active, now / max(count, 1), 0.0)
            else:
                pct = plan.percent / 100.0  # type: ignore[union-attr]
                w = np.where(now != before, np.where(active, now * pct, 0.0), np.nan)
        rebalance(
            book, e, w, commission=commission, slip=slip, whole_units=whole_units, lot=lot, leverage=leverage
        )
        record(e)
        if exits.any:
            run_exits(
                book,
                e,
                int(bounds[k + 1]),
                exits,
                slip,
                commission,
                record,
                blocked,
                block=direction is not None,
            )

    # Equity: cash and quantities are constant from each change bar's close to the next one's.
    cb = np.asarray(change_bars, dtype=np.int64)
    qs = np.asarray(change_q)
    cash_at = np.asarray(change_cash)
    equity = np.empty(n)
    cash_curve = np.empty(n)
    ends = np.append(cb[1:], n)
    for i in range(cb.size):
        a, b = int(cb[i]), int(ends[i])
        cash_curve[a:b] = cash_at[i]
        equity[a:b] = cash_at[i] + (bars.close[a:b] @ qs[i] if np.any(qs[i]) else 0.0)

    trades = book.trades()
    if input_hash is None:
        alloc: dict[str, Any] = (
            {"decision_bars": plan.decision_bars, "weights": plan.weights}
            if isinstance(plan, WeightPlan)
            else {
                "direction": hashlib.sha256(np.asarray(plan.direction).astype("<i1").tobytes()).hexdigest(),
                "sizing": plan.sizing,
                "percent": plan.percent,
            }
        )
        alloc = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in alloc.items()}
        input_hash = portfolio_input_hash(
            bars,
            alloc,
            {
                "initial_cash": float(initial_cash),
                "commission": commission.as_dict(),
                "slippage_bps": float(slippage_bps),
                "allow_short": allow_short,
                "leverage": float(leverage),
                "whole_units": whole_units,
                "lot_size": lot.tolist(),
                "exits": exits.as_dict(),
                "periods_per_year": periods_per_year,
            },
        )

    if np.all(equity > 0.0):
        metrics = performance_metrics(equity=equity, periods_per_year=periods_per_year)
        returns = equity[1:] / equity[:-1] - 1.0
    else:
        returns = equity_returns(equity)
        metrics = performance_metrics(returns=returns, periods_per_year=periods_per_year)
    closed = [t.pnl for t in trades if not t.is_open]
    held = np.zeros(n, dtype=bool)
    for i in range(cb.size):
        held[int(cb[i]) : int(ends[i])] = bool(np.any(qs[i]))
    metrics.update(trade_metrics(closed, periods_in_market=int(held.sum()), total_periods=n))
    metrics["open_trades"] = sum(1 for t in trades if t.is_open)
    metrics["fills"] = book.fills
    metrics["initial_cash"] = float(initial_cash)
    metrics["final_equity"] = float(equity[-1])
    metrics["periods_per_year"] = periods_per_year
    bench_equity = None
    if benchmark_close is not None:
        bc = np.asarray(benchmark_close, dtype=np.float64)
        if bc.shape != (n,) or np.any(~np.isfinite(bc)) or np.any(bc <= 0.0):
            raise ValueError("benchmark closes must be positive, one per bar")
        metrics.update(benchmark_metrics(returns, bc[1:] / bc[:-1] - 1.0, periods_per_year))
        bench_equity = float(initial_cash) * (bc / bc[0])
    if progress is not None:
        progress(1.0)
    return PortfolioResult(
        trades=trades,
        ts=bars.ts,
        equity=equity,
        cash=cash_curve,
        change_bars=cb,
        quantities=qs,
        metrics=metrics,
        input_hash=input_hash,
        fills=book.fills,
        periods_per_year=periods_per_year,
        benchmark_equity=bench_equity,
    )
