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
  ``leverage`` L above 1, buys may also borrow: cash may fall to ``-(L - 1) * V``.
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
bars (fills, exits, equity) is numpy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np

from app.domain.analytics.metrics import performance_metrics, trade_metrics
from app.domain.backtesting.engine import Bars, _equity_returns

ProgressFn = Callable[[float], Any]
Rebalance = Literal["daily", "weekly", "monthly"]
Sizing = Literal["equal_weight", "percent_equity"]
WEIGHT_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioBars:
    """Aligned OHLCV bars: ``ts`` is (n,), every price array (n, m) with one column per symbol.

    Raises ``ValueError`` for shape mismatches, non-finite values, non-positive open/close, unsorted or
    duplicate timestamps, or duplicate symbols.
    """

    symbols: tuple[str, ...]
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "ts", np.ascontiguousarray(self.ts, dtype=np.int64))
        m = len(self.symbols)
        if m == 0 or len(set(self.symbols)) != m:
            raise ValueError("bars: symbols must be non-empty and distinct")
        n = self.ts.size
        if self.ts.ndim != 1 or n == 0:
            raise ValueError("bars: no bars")
        for name in ("open", "high", "low", "close", "volume"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n, m):
                raise ValueError(f"bars: `{name}` must have shape ({n}, {m}), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"bars: `{name}` contains a non-finite value")
            object.__setattr__(self, name, arr)
        if np.any(self.open <= 0.0) or np.any(self.close <= 0.0):
            raise ValueError("bars: open and close prices must be greater than zero")
        if n > 1 and np.any(np.diff(self.ts) <= 0):
            raise ValueError("bars: `ts` must be strictly increasing")

    @property
    def n(self) -> int:
        return int(self.ts.size)

    @property
    def m(self) -> int:
        return len(self.symbols)

    def column(self, j: int) -> Bars:
        """Symbol ``j``'s bars as single-instrument ``Bars`` (what registered strategies take)."""
        return Bars(ts=self.ts, **self.series(j))

    def series(self, j: int) -> dict[str, np.ndarray]:
        """Symbol ``j``'s price arrays by name (what the rules language evaluates over)."""
        return {name: getattr(self, name)[:, j] for name in ("open", "high", "low", "close", "volume")}


@dataclass(frozen=True, slots=True)
class Commission:
    """Fee of one fill: ``max(minimum, fixed + rate * notional)``; nothing for no fill."""

    rate: float = 0.0
    fixed: float = 0.0
    minimum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate", "fixed", "minimum"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"commission `{name}` must be a finite number >= 0")
        if self.rate >= 1.0:
            raise ValueError("commission `rate` must be a fraction below 1")

    def fee(self, notional: np.ndarray) -> np.ndarray:
        notional = np.asarray(notional, dtype=np.float64)
        fee = np.maximum(self.minimum, self.fixed + self.rate * notional)
        return np.where(notional > 0.0, fee, 0.0)

    def max_notional(self, cash: float) -> float:
        """The largest notional whose cost ``notional + fee`` is at most ``cash`` (0 if none)."""
        if cash <= 0.0:
            return 0.0
        # The fee is `minimum` up to the notional where fixed + rate * N reaches it, linear after.
        linear = (cash - self.fixed) / (1.0 + self.rate)
        if self.fixed + self.rate * linear >= self.minimum:
            return max(linear, 0.0)
        return max(cash - self.minimum, 0.0)

    def as_dict(self) -> dict[str, float]:
        return {"rate": self.rate, "fixed": self.fixed, "minimum": self.minimum}


@dataclass(frozen=True, slots=True)
class Exits:
    """Exit levels in percent of the entry (or of the best price since, for the trailing stop)."""

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None

    def __post_init__(self) -> None:
        for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0.0 < v < 100.0):
                raise ValueError(f"`{name}` must be a percentage above 0 and below 100")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.stop_loss_pct, self.take_profit_pct, self.trailing_stop_pct))

    def as_dict(self) -> dict[str, float | None]:
        return {
            "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
            "trailing_stop_pct": self.trailing_stop_pct,
        }


@dataclass(frozen=True, slots=True, eq=False)
class WeightPlan:
    """Target weights (k, m) decided at ``decision_bars`` (k,), strictly increasing."""

    decision_bars: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class SignalPlan:
    """Direction per bar and symbol (n, m) in {-1, 0, 1}, held from the bar it is decided at."""

    direction: np.ndarray
    sizing: Sizing = "equal_weight"
    percent: float = 10.0


class PortfolioTrade(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    side: str  # "long" | "short"
    quantity: float
    entry_ts: int
    entry_price: float
    exit_ts: int | None
    exit_price: float | None
    pnl: float
    return_pct: float
    commission: float
    is_open: bool
    entry_bar: int
    exit_bar: int | None
    exit_reason: str | None  # "signal" | "stop_loss" | "trailing_stop" | "take_profit" | None (open)


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioResult:
    trades: list[PortfolioTrade]
    ts: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    # Position changes: quantities (k, m) holding from change_bars[i]'s close until the next change.
    change_bars: np.ndarray
    quantities: np.ndarray
    metrics: dict[str, float | int | None]
    input_hash: str
    fills: int
    periods_per_year: int
    benchmark_equity: np.ndarray | None = field(default=None, repr=False)

    def positions_at(self, bars: np.ndarray) -> np.ndarray:
        """Quantities held at the close of each of ``bars`` (k, m)."""
        idx = np.searchsorted(self.change_bars, np.asarray(bars), side="right") - 1
        return self.quantities[np.maximum(idx, 0)] * (idx >= 0)[:, None]


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


def infer_periods_per_year(ts: np.ndarray) -> int:
    """Bars per year from the data's calendar: 252 for weekday-only daily bars, 365 for daily bars
    with weekends, else the bar count of an average (365.25-day) year over the data's span."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size < 2:
        return 252
    step = int(np.median(np.diff(ts)))
    if step == 86_400:
        weekday = (ts // 86_400 + 3) % 7  # 0 = Monday
        return 365 if np.any(weekday >= 5) else 252
    span = float(ts[-1] - ts[0] + step)
    return max(1, round(ts.size * 365.25 * 86_400 / span))


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


class _Book:
    """Per-symbol position and round-trip accounting, updated a vector of fills at a time."""

    def __init__(self, bars: PortfolioBars, cash: float) -> None:
        m = bars.m
        self.bars = bars
        self.cash = cash
        self.q = np.zeros(m)
        self.avg = np.zeros(m)  # average entry price of the open position
        self.extreme = np.zeros(m)  # best price since the position opened (trailing stop)
        self.t_side = np.zeros(m)
        self.t_bar = np.zeros(m, dtype=np.int64)
        self.t_real = np.zeros(m)  # realised PnL net of fees so far
        self.t_fee = np.zeros(m)
        self.t_entry_notional = np.zeros(m)
        self.t_entry_qty = np.zeros(m)
        self.t_exit_notional = np.zeros(m)
        self.t_exit_qty = np.zeros(m)
        self.t_peak = np.zeros(m)
        self.fills = 0
        # Closed round trips, in batches: (symbols, exit bars, snapshots of their accounting, reasons).
        self.closed: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def fill(
        self,
        idx: np.ndarray,
        dq: np.ndarray,
        price: np.ndarray,
        fee: np.ndarray,
        bar: int | np.ndarray,
        reason: str | np.ndarray = "signal",
    ) -> None:
        """Apply fills of signed quantity ``dq`` at ``price`` with ``fee`` to symbols ``idx`` at ``bar``.

        ``bar`` may give one bar per fill for fills that only close positions (exits inside bars).
        """
        if idx.size == 0:
            return
        self.fills += int(idx.size)
        q = self.q[idx]
        side = np.sign(q)
        size = np.abs(dq)
        closing = np.where(side * dq < 0.0, np.minimum(size, np.abs(q)), 0.0)
        opening = size - closing
        fee_close = fee * (closing / size)
        fee_open = fee - fee_close
        self.cash -= float(np.sum(dq * price)) + float(np.sum(fee))

        # Closing part (reduce, close, or the first half of a reversal).
        c = closing > 0.0
        if np.any(c):
            ci = idx[c]
            self.t_real[ci] += side[c] * (price[c] - self.avg[ci]) * closing[c] - fee_close[c]
            self.t_fee[ci] += fee_close[c]
            self.t_exit_notional[ci] += closing[c] * price[c]
            self.t_exit_qty[ci] += closing[c]
            self.q[ci] -= side[c] * closing[c]
            # A position is closed when what is left is below rounding of its size.
            flat = np.abs(self.q[ci]) <= 1e-12 * np.maximum(np.abs(q[c]), 1e-300)
            if np.any(flat):
                fi = ci[flat]
                self.q[fi] = 0.0
                why = np.full(fi.size, reason, dtype=object) if isinstance(reason, str) else reason[c][flat]
                at = np.full(fi.size, bar) if np.ndim(bar) == 0 else np.asarray(bar)[c][flat]
                self.closed.append((fi, at, self._snapshot(fi), why))
        # Opening part (from flat, an increase, or the second half of a reversal).
        o = opening > 0.0
        if np.any(o):
            oi = idx[o]
            new = self.q[oi] == 0.0
            direction = np.sign(dq[o])
            if np.any(new):
                ni = oi[new]
                self.t_side[ni] = direction[new]
                self.t_bar[ni] = bar
                for arr in (
                    self.t_real,
                    self.t_fee,
                    self.t_entry_notional,
                    self.t_entry_qty,
                    self.t_exit_notional,
                    self.t_exit_qty,
                    self.t_peak,
                ):
                    arr[ni] = 0.0
                self.avg[ni] = 0.0
                self.extreme[ni] = self.bars.open[bar, ni]
            held = np.abs(self.q[oi])
            self.avg[oi] = (self.avg[oi] * held + price[o] * opening[o]) / (held + opening[o])
            self.q[oi] += direction * opening[o]
            self.t_real[oi] -= fee_open[o]
            self.t_fee[oi] += fee_open[o]
            self.t_entry_notional[oi] += opening[o] * price[o]
            self.t_entry_qty[oi] += opening[o]
            self.t_peak[oi] = np.maximum(self.t_peak[oi], np.abs(self.q[oi]))

    def _snapshot(self, i: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                self.t_side[i],
                self.t_bar[i].astype(np.float64),
                self.t_real[i],
                self.t_fee[i],
                self.t_entry_notional[i],
                self.t_entry_qty[i],
                self.t_exit_notional[i],
                self.t_exit_qty[i],
                self.t_peak[i],
            ],
            axis=1,
        )

    def trades(self) -> list[PortfolioTrade]:
        bars = self.bars
        ts = bars.ts
        rows: list[tuple[int, int, PortfolioTrade]] = []
        if self.closed:
            idx = np.concatenate([c[0] for c in self.closed])
            at = np.concatenate([c[1] for c in self.closed]).astype(np.int64)
            snap = np.concatenate([c[2] for c in self.closed])
            why = np.concatenate([c[3] for c in self.closed])
            t_bar = snap[:, 1].astype(np.int64)
            columns = zip(
                idx.tolist(),
                at.tolist(),
                t_bar.tolist(),
                ts[t_bar].tolist(),
                ts[at].tolist(),
                snap[:, 0].tolist(),
                snap[:, 2].tolist(),
                snap[:, 3].tolist(),
                (snap[:, 4] / snap[:, 5]).tolist(),
                (snap[:, 6] / snap[:, 7]).tolist(),
                snap[:, 4].tolist(),
                snap[:, 8].tolist(),
                why.tolist(),
                strict=True,
            )
            for (
                i,
                exit_bar,
                entry_bar,
                entry_ts,
                exit_ts,
                side,
                real,
                fee,
                entry_px,
                exit_px,
                en,
                peak,
                reason,
            ) in columns:
                trade = PortfolioTrade(
                    symbol=bars.symbols[i],
                    side="long" if side > 0 else "short",
                    quantity=peak,
                    entry_ts=entry_ts,
                    entry_price=entry_px,
                    exit_ts=exit_ts,
                    exit_price=exit_px,
                    pnl=real,
                    return_pct=real / en,
                    commission=fee,
                    is_open=False,
                    entry_bar=entry_bar,
                    exit_bar=exit_bar,
                    exit_reason=str(reason),
                )
                rows.append((entry_bar, i, trade))
        last = bars.close[-1]
        for i in np.flatnonzero(self.q != 0.0).tolist():
            side = float(self.t_side[i])
            pnl = float(self.t_real[i] + side * (last[i] - self.avg[i]) * abs(self.q[i]))
            en = float(self.t_entry_notional[i])
            rows.append(
                (
                    int(self.t_bar[i]),
                    i,
                    PortfolioTrade(
                        symbol=bars.symbols[i],
                        side="long" if side > 0 else "short",
                        quantity=float(self.t_peak[i]),
                        entry_ts=int(ts[int(self.t_bar[i])]),
                        entry_price=en / float(self.t_entry_qty[i]),
                        exit_ts=None,
                        exit_price=None,
                        pnl=pnl,
                        return_pct=pnl / en,
                        commission=float(self.t_fee[i]),
                        is_open=True,
                        entry_bar=int(self.t_bar[i]),
                        exit_bar=None,
                        exit_reason=None,
                    ),
                )
            )
        # Closed trades by exit, then open ones; ties by entry bar and symbol order: deterministic.
        return [t for _, _, t in sorted(rows, key=lambda r: (r[2].is_open, r[2].exit_bar or 0, r[0], r[1]))]


def _rebalance(
    book: _Book,
    bar: int,
    w: np.ndarray,
    *,
    commission: Commission,
    slip: float,
    whole_units: bool,
    lot: np.ndarray,
    leverage: float,
) -> None:
    """Trade to target weights ``w`` (NaN = leave as is) at ``bar``'s open: sells, then buys.

    Buys may spend cash down to ``-(leverage - 1) * V`` (borrowing; none without leverage).
    """
    o = book.bars.open[bar]
    value = book.cash + float(book.q @ o)
    keep = np.isnan(w)
    target = np.where(keep, book.q, np.where(keep, 0.0, w) * value / o)
    if whole_units:
        target = np.where(keep, target, np.sign(target) * np.floor(np.abs(target) / lot) * lot)
    delta = target - book.q
    sells = np.flatnonzero(delta < 0.0)
    if sells.size:
        price = o[sells] * (1.0 - slip)
        book.fill(sells, delta[sells], price, commission.fee(-delta[sells] * price), bar)
    buys = np.flatnonzero(delta > 0.0)
    if buys.size == 0:
        return
    price = o[buys] * (1.0 + slip)
    want = delta[buys]
    cost = want * price + commission.fee(want * price)
    credit = (leverage - 1.0) * value
    over = np.flatnonzero(np.cumsum(cost) > book.cash + credit)
    full = buys.size if over.size == 0 else int(over[0])
    if full:
        book.fill(buys[:full], want[:full], price[:full], commission.fee(want[:full] * price[:full]), bar)
    # What cash cannot cover, one symbol at a time in symbol order (usually only the last buy or two).
    for k in range(full, buys.size):
        qty = min(float(want[k]), commission.max_notional(book.cash + credit) / float(price[k]))
        if whole_units:
            qty = math.floor(qty / float(lot[buys[k]])) * float(lot[buys[k]])
        if qty <= 0.0:
            continue
        one = np.array([qty])
        book.fill(buys[k : k + 1], one, price[k : k + 1], commission.fee(one * price[k]), bar)


def _scan_exits(
    book: _Book, a: int, b: int, exits: Exits, slip: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First exit bar in [a, b) of every open position: (symbols, bars, prices, reasons).

    Updates ``book.extreme`` for the positions that survive the segment.
    """
    cols = np.flatnonzero(book.q != 0.0)
    empty = np.empty(0, dtype=np.int64)
    if cols.size == 0:
        return empty, empty, np.empty(0), np.empty(0, dtype=object)
    bars = book.bars
    s = np.sign(book.q[cols])
    opens = bars.open[a:b, cols]
    adverse = np.where(s > 0, bars.low[a:b, cols], bars.high[a:b, cols])
    favourable = np.where(s > 0, bars.high[a:b, cols], bars.low[a:b, cols])
    avg = book.avg[cols]
    L = b - a
    # Signed space: multiplying by s turns every short comparison into the long one.
    neg_inf = np.full(cols.size, -np.inf)
    fixed = s * avg * (1.0 - s * exits.stop_loss_pct / 100.0) if exits.stop_loss_pct is not None else neg_inf
    ext_after = np.maximum.accumulate(s * favourable, axis=0)  # signed best price through each bar
    ext0 = s * book.extreme[cols]
    ext_before = np.vstack([ext0[None, :], np.maximum(ext_after[:-1], ext0)]) if L > 1 else ext0[None, :]
    if exits.trailing_stop_pct is not None:
        f = exits.trailing_stop_pct / 100.0
        # Signed level of extreme * (1 - s f): s * e * (1 - s f) = (s e) * (1 - s f).
        gap_trail = ext_before * (1.0 - s * f)
        in_trail = np.maximum(ext_before, s * opens) * (1.0 - s * f)
    else:
        gap_trail = in_trail = np.full((L, cols.size), -np.inf)
    gap_stop = np.maximum(fixed, gap_trail)
    in_stop = np.maximum(fixed, in_trail)
    sO, sA, sF = s * opens, s * adverse, s * favourable
    gap = sO <= gap_stop
    inside = sA <= in_stop
    if exits.take_profit_pct is not None:
        target = s * avg * (1.0 + s * exits.take_profit_pct / 100.0)
        profit = sF >= target
    else:
        target = np.full(cols.size, np.inf)
        profit = np.zeros_like(gap)
    hit = gap | inside | profit
    any_hit = hit.any(axis=0)
    first = np.argmax(hit, axis=0)
    survivors = ~any_hit
    book.extreme[cols[survivors]] = s[survivors] * np.maximum(ext0[survivors], ext_after[-1, survivors])
    if not np.any(any_hit):
        return empty, empty, np.empty(0), np.empty(0, dtype=object)
    j = np.flatnonzero(any_hit)
    r = first[j]
    sj = s[j]
    is_gap = gap[r, j]
    is_stop = is_gap | inside[r, j]
    stop_level = np.where(is_gap, gap_stop[r, j], in_stop[r, j])
    stop_px = np.where(is_gap, opens[r, j], sj * in_stop[r, j]) * (1.0 - sj * slip)
    price = np.where(is_stop, stop_px, sj * target[j])
    trailing_binds = stop_level > fixed[j]
    reason = np.where(is_stop, np.where(trailing_binds, "trailing_stop", "stop_loss"), "take_profit")
    return cols[j], a + r, price, reason.astype(object)


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
    book = _Book(bars, float(initial_cash))
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
        _rebalance(
            book, e, w, commission=commission, slip=slip, whole_units=whole_units, lot=lot, leverage=leverage
        )
        record(e)
        if exits.any:
            _run_exits(
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
        returns = _equity_returns(equity)
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


def _run_exits(
    book: _Book,
    a: int,
    b: int,
    exits: Exits,
    slip: float,
    commission: Commission,
    record: Callable[..., None],
    blocked: np.ndarray,
    *,
    block: bool,
) -> None:
    """Close every position whose exit level is reached in [a, b): one batch of fills, then the cash
    and quantities after each exit bar recorded for the equity curve."""
    sym, bar, price, reason = _scan_exits(book, a, b, exits, slip)
    if sym.size == 0:
        return
    order = np.lexsort((sym, bar))
    sym, bar, price, reason = sym[order], bar[order], price[order], reason[order]
    held = book.q[sym].copy()
    fee = commission.fee(np.abs(held) * price)
    cash = book.cash + np.cumsum(held * price - fee)  # cash after each fill, in bar order
    book.fill(sym, -held, price, fee, bar, reason)
    book.cash = float(cash[-1])
    # Each position exits once per segment, so the quantities after exit bar k are the final ones
    # with the positions that exit later still held.
    ends = np.append(np.flatnonzero(bar[1:] != bar[:-1]), bar.size - 1)
    for end in ends.tolist():
        q = book.q.copy()
        q[sym[end + 1 :]] = held[end + 1 :]
        record(int(bar[end]), q, float(cash[end]))
    if block:
        blocked[sym] = True
