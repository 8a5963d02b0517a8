"""Vectorised backtest engine (pure numpy, no I/O) implementing DOMAIN.md "Backtests".

This is a research simulation and runs in float64 throughout; the paper exchange and account
balances use ``Decimal``. Results are deterministic: the same inputs give bit-identical trades, equity
and metrics, and ``compute_input_hash`` fingerprints those inputs.

Execution model (``run_backtest``):

- ``target[t]`` in {-1, 0, 1} is the position direction wanted after bar ``t``'s close. It is acted on
  at bar ``t+1``'s open, so the position during bar ``i`` follows ``want[i] = target[i-1]``
  (``want[0] = 0``: every run starts flat; ``target[-1]`` is never acted on).
- Buys fill at ``open * (1 + slippage_bps/1e4)``, sells at ``open * (1 - slippage_bps/1e4)``.
  Commission is ``commission * qty * fill_price``, charged on every fill (entry and exit).
- An entry (long or short) takes ``floor(cash / (price * (1 + commission)) / lot_size) * lot_size``.
  A reversal closes first and sizes the new side with the cash after closing.
- The target is a *position*, not a one-shot order: if an entry cannot afford one lot, it is retried
  at each following open while the target still asks for it.
- With ``allow_short=False`` a target of -1 means flat.
- A short whose equity (``cash + position * close``) falls to <= 0 at a bar's close is bought back at
  that close (plus slippage and commission) by a stop-out, like a broker liquidating an exhausted
  account; with no cash left, no further entry can be sized. A long position cannot make equity
  negative (it is bought with cash), so this never applies to longs.
- With ``exits`` (exits.py, the same code as the portfolio engine), a position is also closed inside
  a bar by a stop-loss, take-profit or trailing stop: the bar's open is checked first (a gap through a
  stop fills at the open), then its low / high; a bar that reaches both the stop and the target takes
  the stop. The position then stays flat until the target changes (the next new entry), and the
  trade's ``exit_reason`` says which exit closed it (``signal`` for a target change, ``stop_out`` for
  the exhausted short below).
- A position still open at the last bar stays open: it is marked to market at the last close and
  reported as a trade with ``is_open=True`` and no exit; its ``pnl`` is unrealised and net of the entry
  commission only.
- ``Trade.return_pct`` is ``pnl / (quantity * entry_price)``, a fraction (0.05 = 5 %).
- ``metrics`` are ``performance_metrics`` over the per-bar equity curve (``periods`` = bars - 1,
  annualised by ``periods_per_year``, by default the data's calendar: periods.py),
  ``trade_metrics`` over the *closed* trades (exposure = share of bars ending with a position), plus
  ``final_equity``, ``initial_cash`` and ``open_trades``. If the equity ever reaches <= 0 (only
  through a short), the wealth path is taken as wiped out from that bar on (return -1, then 0).

Only position changes are simulated in Python (few compared to bars); the equity curve and all
per-bar arrays are built with numpy.

The module is one idea, the simulation above, and runs past 500 lines because of this execution model
and the one loop over position changes. Its plain-Python reference lives with the tests
(tests/unit/engine_reference.py); chart downsampling is in downsample.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from app.domain.analytics.metrics import performance_metrics, trade_metrics
from app.domain.backtesting.exits import Exits, first_exits, first_exits_ragged
from app.domain.backtesting.periods import infer_periods_per_year
from app.domain.backtesting.strategies import get_strategy, parse_params

ProgressFn = Callable[[float], Any]


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """OHLCV bars in time order. Arrays are normalised to contiguous int64 (ts) / float64 (prices).

    Raises ``ValueError`` for mismatched lengths, unsorted or duplicate timestamps, non-finite values
    or non-positive open/close prices (sizing divides by them).
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", np.ascontiguousarray(self.ts, dtype=np.int64))
        for name in ("open", "high", "low", "close", "volume"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        n = self.ts.shape
        for name in ("ts", "open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.shape != n:
                raise ValueError(f"bars: `{name}` must be one-dimensional with the same length as `ts`")
            if name != "ts" and not np.all(np.isfinite(arr)):
                raise ValueError(f"bars: `{name}` contains a non-finite value")
        if np.any(self.open <= 0.0) or np.any(self.close <= 0.0):
            raise ValueError("bars: open and close prices must be greater than zero")
        if self.ts.size > 1 and np.any(np.diff(self.ts) <= 0):
            raise ValueError("bars: `ts` must be strictly increasing")

    def __len__(self) -> int:
        return int(self.ts.size)


class Trade(msgspec.Struct, frozen=True, kw_only=True):
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
    # Why the position closed: "signal" (the target changed), "stop_loss", "trailing_stop",
    # "take_profit" (exits inside bars), "stop_out" (an exhausted short bought back); None while open.
    exit_reason: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class BacktestResult:
    trades: list[Trade]
    ts: np.ndarray
    equity: np.ndarray
    metrics: dict[str, float | int | None]
    input_hash: str
    position: np.ndarray = field(repr=False)


# ----------------------------------------------------------------------------------------------
# Input fingerprint
# ----------------------------------------------------------------------------------------------


def _canonical(obj: Any) -> Any:
    return msgspec.to_builtins(obj, order="sorted")


def compute_input_hash(
    bars: Bars, strategy: str, params: Mapping[str, Any] | Any, costs: Mapping[str, Any]
) -> str:
    """sha256 (hex) over the bar arrays (fixed little-endian dtypes), the strategy name and the
    canonical JSON (sorted keys) of params and costs. A params struct hashes like its dict."""
    h = hashlib.sha256()
    h.update(b"tradedesk-backtest-v1\0")
    h.update(len(bars).to_bytes(8, "little"))
    h.update(bars.ts.astype("<i8", copy=False).tobytes())
    for arr in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(arr.astype("<f8", copy=False).tobytes())
    h.update(
        msgspec.json.encode(
            {"strategy": strategy, "params": _canonical(params), "costs": _canonical(costs)}, order="sorted"
        )
    )
    return h.hexdigest()


def run_costs(
    *,
    initial_cash: float,
    commission: float,
    slippage_bps: float,
    lot_size: float,
    allow_short: bool,
    periods_per_year: int,
    exits: Exits | None = None,
) -> dict[str, Any]:
    """The costs part of the input hash. Exits are in it only when some level is given, so a run
    without exits hashes as it always did."""
    costs: dict[str, Any] = {
        "initial_cash": float(initial_cash),
        "commission": float(commission),
        "slippage_bps": float(slippage_bps),
        "lot_size": float(lot_size),
        "allow_short": bool(allow_short),
        "periods_per_year": int(periods_per_year),
    }
    if exits is not None and exits.any:
        costs["exits"] = exits.as_dict()
    return costs


def validate_run(
    bars: Bars,
    *,
    initial_cash: float,
    commission: float,
    slippage_bps: float,
    lot_size: float,
    periods_per_year: int,
) -> None:
    if not isinstance(bars, Bars):
        raise TypeError("bars must be a Bars instance")
    if len(bars) == 0:
        raise ValueError("no bars to backtest")
    if not (math.isfinite(initial_cash) and initial_cash > 0.0):
        raise ValueError("`initial_cash` must be a finite number greater than zero")
    if not (math.isfinite(commission) and 0.0 <= commission < 1.0):
        raise ValueError("`commission` must be a fraction in [0, 1)")
    if not (math.isfinite(slippage_bps) and 0.0 <= slippage_bps < 10_000.0):
        raise ValueError("`slippage_bps` must be in [0, 10000)")
    if not (math.isfinite(lot_size) and lot_size > 0.0):
        raise ValueError("`lot_size` must be greater than zero")
    if (
        isinstance(periods_per_year, bool)
        or int(periods_per_year) != periods_per_year
        or periods_per_year < 1
    ):
        raise ValueError("`periods_per_year` must be a positive integer")


# ----------------------------------------------------------------------------------------------
# Shared result assembly
# ----------------------------------------------------------------------------------------------


def open_trade(side: int, qty: float, bar: int, ts: int, price: float, fee: float, mark: float) -> Trade:
    notional = qty * price
    if side > 0:
        pnl = qty * mark - (notional + fee)
    else:
        pnl = (notional - fee) - qty * mark
    return Trade(
        side="long" if side > 0 else "short",
        quantity=qty,
        entry_ts=ts,
        entry_price=price,
        exit_ts=None,
        exit_price=None,
        pnl=pnl,
        return_pct=pnl / notional,
        commission=fee,
        is_open=True,
        entry_bar=bar,
        exit_bar=None,
    )


def equity_returns(equity: np.ndarray) -> np.ndarray:
    """Per-bar returns of an equity curve that reached <= 0: wiped out at the first such bar."""
    ruined = int(np.flatnonzero(equity <= 0.0)[0])
    r = np.zeros(equity.size - 1)
    if ruined > 0:
        r[: ruined - 1] = equity[1:ruined] / equity[: ruined - 1] - 1.0
        r[ruined - 1] = -1.0
    return r


def finish_run(
    *,
    trades: list[Trade],
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    initial_cash: float,
    periods_per_year: int,
    input_hash: str,
) -> BacktestResult:
    if np.all(equity > 0.0):
        metrics = performance_metrics(equity=equity, periods_per_year=periods_per_year)
    else:
        metrics = performance_metrics(returns=equity_returns(equity), periods_per_year=periods_per_year)
    closed = [t.pnl for t in trades if not t.is_open]
    metrics.update(
        trade_metrics(
            closed,
            periods_in_market=int(np.count_nonzero(position)),
            total_periods=int(position.size),
        )
    )
    metrics["open_trades"] = sum(1 for t in trades if t.is_open)
    metrics["initial_cash"] = float(initial_cash)
    metrics["final_equity"] = float(equity[-1])
    metrics["periods_per_year"] = int(periods_per_year)
    return BacktestResult(
        trades=trades,
        ts=ts,
        equity=equity,
        metrics=metrics,
        input_hash=input_hash,
        position=position,
    )


# ----------------------------------------------------------------------------------------------
# Vectorised engine
# ----------------------------------------------------------------------------------------------


def run_backtest(
    bars: Bars,
    target: np.ndarray,
    *,
    initial_cash: float,
    commission: float,
    slippage_bps: float = 0.0,
    lot_size: float = 1.0,
    allow_short: bool = False,
    periods_per_year: int | None = None,
    exits: Exits | None = None,
    progress: ProgressFn | None = None,
    input_hash: str | None = None,
) -> BacktestResult:
    """Simulate ``target`` (see the module docstring for the execution rules) over ``bars``.

    ``periods_per_year`` defaults to the data's calendar (``infer_periods_per_year``); ``exits`` adds
    stop-loss, take-profit and trailing-stop exits inside bars (exits.py).

    ``input_hash`` is stored as given; when omitted it is computed over the bars, the target array and
    the costs (use ``run_strategy`` to hash by strategy name and params instead).
    ``progress(fraction)`` is called with non-decreasing values in [0, 1]; it ends with 1.0.
    Raises ``ValueError`` for invalid costs or a target that is not in {-1, 0, 1} per bar.
    """
    if periods_per_year is None:
        periods_per_year = infer_periods_per_year(bars.ts) if isinstance(bars, Bars) else 252
    validate_run(
        bars,
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        periods_per_year=periods_per_year,
    )
    tgt = np.asarray(target)
    if tgt.shape != bars.close.shape:
        raise ValueError(f"target has shape {tgt.shape}, expected {bars.close.shape}")
    if tgt.size and not np.all((tgt == -1) | (tgt == 0) | (tgt == 1)):
        raise ValueError("target values must be -1, 0 or 1")
    costs = run_costs(
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        allow_short=allow_short,
        periods_per_year=periods_per_year,
        exits=exits,
    )
    if input_hash is None:
        digest = hashlib.sha256(tgt.astype("<i1").tobytes()).hexdigest()
        input_hash = compute_input_hash(bars, "<target>", {"target_sha256": digest}, costs)
    if progress is not None:
        progress(0.0)

    n = len(bars)
    want = np.zeros(n, dtype=np.int8)
    want[1:] = tgt[:-1]
    if not allow_short:
        want[want < 0] = 0
    seg_starts = (np.flatnonzero(np.diff(want)) + 1).tolist()
    seg_ends = seg_starts[1:] + [n]

    open_ = bars.open
    close = bars.close
    ts = bars.ts
    exiting = exits is not None and exits.any
    c = float(commission)
    cf = 1.0 + c
    lot = float(lot_size)
    buy_adj = 1.0 + slippage_bps / 1e4
    sell_adj = 1.0 - slippage_bps / 1e4
    if exiting:
        # The exits of every position entered at its segment's start, found in one batch (an entry
        # delayed by cash is scanned on its own below): (exit bar or -1, price, reason) per segment.
        starts = np.asarray(seg_starts, dtype=np.int64)
        side_at = want[starts].astype(np.float64)
        held = np.flatnonzero(side_at != 0.0)
        found = first_exits_ragged(
            open_,
            bars.high,
            bars.low,
            starts[held],
            np.asarray(seg_ends, dtype=np.int64)[held],
            side_at[held],
            open_[starts[held]] * np.where(side_at[held] > 0, buy_adj, sell_adj),
            exits,  # type: ignore[arg-type]
            slippage_bps / 1e4,
        )
        planned: list[list[Any]] = []
        for fill, values in zip((-1, 0.0, ""), found, strict=True):
            column = np.full(starts.size, fill, dtype=values.dtype)
            column[held] = values
            planned.append(column.tolist())

    cash = float(initial_cash)
    qty = 0.0  # unsigned size of the open position
    side = 0
    entry_bar = entry_px = entry_fee = 0
    # State changes (bar, cash, signed position) that hold from that bar's close on; the last one
    # recorded for a bar wins, so a reversal's close-then-open collapses correctly.
    ev_bar = [0]
    ev_cash = [cash]
    ev_pos = [0.0]
    trades: list[Trade] = []

    def close_position(bar: int, price: float, reason: str = "signal") -> None:
        nonlocal cash, qty, side
        notional = qty * price
        fee = notional * c
        entry_notional = qty * entry_px
        if side > 0:
            cash = cash + notional - fee
            pnl = (notional - fee) - (entry_notional + entry_fee)
        else:
            cash = cash - notional - fee
            pnl = (entry_notional - entry_fee) - (notional + fee)
        trades.append(
            Trade(
                side="long" if side > 0 else "short",
                quantity=qty,
                entry_ts=int(ts[entry_bar]),
                entry_price=entry_px,
                exit_ts=int(ts[bar]),
                exit_price=price,
                pnl=pnl,
                return_pct=pnl / entry_notional,
                commission=entry_fee + fee,
                is_open=False,
                entry_bar=entry_bar,
                exit_bar=bar,
                exit_reason=reason,
            )
        )
        qty = 0.0
        side = 0
        ev_bar.append(bar)
        ev_cash.append(cash)
        ev_pos.append(0.0)

    def next_affordable(first: int, cash: float, adj: float) -> int:
        """First bar >= first whose open affords one lot with ``cash`` (n if none).

        Uses the scalar sizing's float operations elementwise, so the answer agrees bit for bit with
        the loop reference. The search grows its window geometrically, so its cost is proportional to
        the distance to the answer; with the cache below, a drained account costs one scan in total
        instead of one per segment.
        """
        pos, width = first, 256
        while pos < n:
            stop = min(n, pos + width)
            sizes = np.floor(cash / (open_[pos:stop] * adj * cf) / lot) * lot
            hit = np.flatnonzero(sizes > 0.0)
            if hit.size:
                return pos + int(hit[0])
            pos, width = stop, width * 4
        return n

    # side -> (cash, bar): with this cash, no open in [searched-from, bar) affords a lot. Cash only
    # changes through a fill, so the answer stays valid until then.
    affordable: dict[int, tuple[float, int]] = {}
    report_every = max(1, len(seg_starts) // 50)
    for k, start in enumerate(seg_starts):
        if progress is not None and k % report_every == 0:
            progress(0.9 * start / n)
        v = int(want[start])
        end = seg_ends[k]
        if side == v:
            continue
        if side != 0:
            close_position(start, float(open_[start]) * (buy_adj if side < 0 else sell_adj))
        if v == 0:
            continue
        adj = buy_adj if v > 0 else sell_adj
        bar = start
        price = float(open_[start]) * adj
        size = math.floor(cash / (price * cf) / lot) * lot
        if size <= 0.0 and cash > 0.0 and start + 1 < end:
            # Unaffordable now: enter at the first later open of this segment that affords one lot.
            cached = affordable.get(v)
            if cached is None or cached[0] != cash or cached[1] < start + 1:
                cached = (cash, next_affordable(start + 1, cash, adj))
                affordable[v] = cached
            if cached[1] < end:
                bar = cached[1]
                price = float(open_[bar]) * adj
                size = math.floor(cash / (price * cf) / lot) * lot
        if size <= 0.0:
            continue
        notional = size * price
        fee = notional * c
        cash = cash - notional - fee if v > 0 else cash + notional - fee
        qty, side = float(size), v
        entry_bar, entry_px, entry_fee = bar, price, fee
        ev_bar.append(bar)
        ev_cash.append(cash)
        ev_pos.append(v * qty)
        # An exit inside a bar ends the position before that bar's close; the position then stays
        # flat until the target changes (the next segment).
        exit_end, exit_px, exit_why = end, 0.0, ""
        if exiting and bar == start:
            if planned[0][k] >= 0:
                exit_end, exit_px, exit_why = planned[0][k], planned[1][k], planned[2][k]
        elif exiting:
            hits = first_exits(
                open_[bar:end, None],
                bars.high[bar:end, None],
                bars.low[bar:end, None],
                np.array([float(v)]),
                np.array([price]),
                open_[bar : bar + 1],
                exits,  # type: ignore[arg-type]
                slippage_bps / 1e4,
            )
            if hits.cols.size:
                exit_end, exit_px, exit_why = (
                    bar + int(hits.rows[0]),
                    float(hits.price[0]),
                    str(hits.reason[0]),
                )
        if v < 0:
            marked = cash + (-qty) * close[bar:exit_end]
            ruin = np.flatnonzero(marked <= 0.0)
            if ruin.size:
                stop_bar = bar + int(ruin[0])
                close_position(stop_bar, float(close[stop_bar]) * buy_adj, "stop_out")
                continue
        if exit_end < end:
            close_position(exit_end, exit_px, exit_why)

    bar_arr = np.asarray(ev_bar, dtype=np.int64)
    last_of_bar = np.append(bar_arr[1:] != bar_arr[:-1], True)
    bar_arr = bar_arr[last_of_bar]
    lengths = np.diff(np.append(bar_arr, n))
    cash_curve = np.repeat(np.asarray(ev_cash)[last_of_bar], lengths)
    position = np.repeat(np.asarray(ev_pos)[last_of_bar], lengths)
    equity = cash_curve + position * close

    if side != 0:
        trades.append(
            open_trade(side, qty, entry_bar, int(ts[entry_bar]), entry_px, entry_fee, float(close[-1]))
        )
    result = finish_run(
        trades=trades,
        ts=ts,
        equity=equity,
        position=position,
        initial_cash=initial_cash,
        periods_per_year=periods_per_year,
        input_hash=input_hash,
    )
    if progress is not None:
        progress(1.0)
    return result


def run_strategy(
    bars: Bars,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    initial_cash: float,
    commission: float,
    slippage_bps: float = 0.0,
    lot_size: float = 1.0,
    periods_per_year: int | None = None,
    exits: Exits | None = None,
    progress: ProgressFn | None = None,
    warmup: int = 0,
) -> BacktestResult:
    """Parse params, compute the strategy's signals and run them; the input hash covers the strategy
    name, the parsed params (defaults filled in) and the costs (with the exits and the periods per
    year, inferred from the bars when not given). ``allow_short`` comes from the params (strategies
    without it are long/flat). ``warmup``: the first bars are history only: the signals are computed
    over every bar (so indicators start warm and a position the strategy holds coming in is its target
    from the first traded bar), and the run trades and is measured on the bars after them."""
    spec = get_strategy(strategy)
    parsed = parse_params(strategy, dict(params) if params is not None else None)
    allow_short = bool(getattr(parsed, "allow_short", False))
    if periods_per_year is None:
        periods_per_year = infer_periods_per_year(bars.ts) if isinstance(bars, Bars) else 252
    costs = run_costs(
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        allow_short=allow_short,
        periods_per_year=periods_per_year,
        exits=exits,
    )
    validate_run(
        bars,
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        periods_per_year=periods_per_year,
    )
    input_hash = compute_input_hash(bars, strategy, parsed, costs)
    target = spec.signals(bars, parsed)
    if warmup:
        if not 0 < warmup < len(bars):
            raise ValueError("warmup must leave at least one bar to trade")
        columns = ("ts", "open", "high", "low", "close", "volume")
        bars = Bars(**{k: getattr(bars, k)[warmup:] for k in columns})
        target = target[warmup:]
    return run_backtest(
        bars,
        target,
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        allow_short=allow_short,
        periods_per_year=periods_per_year,
        exits=exits,
        progress=progress,
        input_hash=input_hash,
    )
