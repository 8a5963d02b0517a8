"""The single-instrument engine's plain-Python reference: `sma_cross` simulated one bar at a time.

It shares the engine's validation, costs and result assembly (`validate_run`, `run_costs`,
`open_trade`, `finish_run`) but none of its vectorised simulation, so the tests and the engine
benchmark can compare the two on random data (tests/unit/test_backtest_engine.py).
"""

from __future__ import annotations

import math

import numpy as np

from app.domain.backtesting.engine import (
    BacktestResult,
    Bars,
    Trade,
    compute_input_hash,
    finish_run,
    open_trade,
    run_costs,
    validate_run,
)
from app.domain.backtesting.exits import Exits
from app.domain.backtesting.periods import infer_periods_per_year
from app.domain.backtesting.strategies import parse_params


def run_backtest_loop(
    bars: Bars,
    *,
    fast: int = 10,
    slow: int = 30,
    allow_short: bool = False,
    initial_cash: float,
    commission: float,
    slippage_bps: float = 0.0,
    lot_size: float = 1.0,
    periods_per_year: int | None = None,
    exits: Exits | None = None,
) -> BacktestResult:
    """sma_cross simulated bar by bar in plain Python: the readable reference for ``run_strategy``.

    SMAs come from a running sum updated once per bar; the signal is decided at each close and acted
    on at the next open. It must produce exactly the trades, equity and metrics of
    ``run_strategy(bars, "sma_cross", ...)``, which the tests check on random data.

    Exits are checked bar by bar after the open's fills: the open against the levels from the best
    price before the bar (a gap fills at the open), then the low (high for a short) against the levels
    with the open counted in the best price, then the target; a position stopped out stays flat until
    the signal changes.
    """
    if periods_per_year is None:
        periods_per_year = infer_periods_per_year(bars.ts)
    exits = exits or Exits()
    sl = exits.stop_loss_pct / 100 if exits.stop_loss_pct is not None else None
    tp = exits.take_profit_pct / 100 if exits.take_profit_pct is not None else None
    tr = exits.trailing_stop_pct / 100 if exits.trailing_stop_pct is not None else None
    slip = slippage_bps / 1e4
    exiting = exits.any
    params = parse_params("sma_cross", {"fast": fast, "slow": slow, "allow_short": allow_short})
    validate_run(
        bars,
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        periods_per_year=periods_per_year,
    )
    costs = run_costs(
        initial_cash=initial_cash,
        commission=commission,
        slippage_bps=slippage_bps,
        lot_size=lot_size,
        allow_short=allow_short,
        periods_per_year=periods_per_year,
        exits=exits,
    )
    input_hash = compute_input_hash(bars, "sma_cross", params, costs)

    ts = bars.ts.tolist()
    opens = bars.open.tolist()
    highs = bars.high.tolist() if exiting else []
    lows = bars.low.tolist() if exiting else []
    closes = bars.close.tolist()
    n = len(closes)
    c = float(commission)
    lot = float(lot_size)
    buy_adj = 1.0 + slippage_bps / 1e4
    sell_adj = 1.0 - slippage_bps / 1e4

    cash = float(initial_cash)
    qty = 0.0
    side = 0
    entry_bar = 0
    entry_px = entry_fee = 0.0
    trades: list[Trade] = []
    equity = [0.0] * n
    position = [0.0] * n

    prefix = [0.0]  # prefix[i] = close[0] + ... + close[i-1]
    prev_fast = prev_slow = None
    wanted = 0  # target decided at the previous close
    blocked = False  # stopped out by an exit: flat until the signal changes
    best = 0.0  # best price since the entry (highest for a long, lowest for a short)

    def exit_trade(bar: int, price: float, reason: str = "signal") -> None:
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
                entry_ts=ts[entry_bar],
                entry_price=entry_px,
                exit_ts=ts[bar],
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

    for t in range(n):
        # 1. At the open: move the position to what was decided at the previous close.
        if t > 0 and side != wanted and not blocked:
            if side != 0:
                exit_trade(t, opens[t] * (buy_adj if side < 0 else sell_adj))
            if wanted != 0:
                price = opens[t] * (buy_adj if wanted > 0 else sell_adj)
                size = math.floor(cash / (price * (1.0 + c)) / lot) * lot
                if size > 0:
                    notional = size * price
                    fee = notional * c
                    cash = cash - notional - fee if wanted > 0 else cash + notional - fee
                    qty, side = float(size), wanted
                    entry_bar, entry_px, entry_fee = t, price, fee
                    best = opens[t]
        # 1b. Exits inside the bar.
        if exiting and side > 0:
            fixed = entry_px * (1 - sl) if sl is not None else -math.inf
            trail = best * (1 - tr) if tr is not None else -math.inf
            trail_in = max(best, opens[t]) * (1 - tr) if tr is not None else -math.inf
            if opens[t] <= max(fixed, trail):
                exit_trade(t, opens[t] * (1 - slip), "trailing_stop" if trail > fixed else "stop_loss")
                blocked = True
            elif lows[t] <= max(fixed, trail_in):
                level = max(fixed, trail_in)
                exit_trade(t, level * (1 - slip), "trailing_stop" if trail_in > fixed else "stop_loss")
                blocked = True
            elif tp is not None and highs[t] >= entry_px * (1 + tp):
                exit_trade(t, entry_px * (1 + tp), "take_profit")
                blocked = True
            else:
                best = max(best, highs[t])
        elif exiting and side < 0:
            fixed = entry_px * (1 + sl) if sl is not None else math.inf
            trail = best * (1 + tr) if tr is not None else math.inf
            trail_in = min(best, opens[t]) * (1 + tr) if tr is not None else math.inf
            if opens[t] >= min(fixed, trail):
                exit_trade(t, opens[t] * (1 + slip), "trailing_stop" if trail < fixed else "stop_loss")
                blocked = True
            elif highs[t] >= min(fixed, trail_in):
                level = min(fixed, trail_in)
                exit_trade(t, level * (1 + slip), "trailing_stop" if trail_in < fixed else "stop_loss")
                blocked = True
            elif tp is not None and lows[t] <= entry_px * (1 - tp):
                exit_trade(t, entry_px * (1 - tp), "take_profit")
                blocked = True
            else:
                best = min(best, lows[t])
        # 2. At the close: mark to market, stop out an exhausted short.
        if side < 0 and cash + (-qty) * closes[t] <= 0.0:
            exit_trade(t, closes[t] * buy_adj, "stop_out")
        position[t] = side * qty
        equity[t] = cash + position[t] * closes[t]
        # 3. Decide the next target from the SMAs including this close.
        prefix.append(prefix[-1] + closes[t])
        cur_fast = (prefix[t + 1] - prefix[t + 1 - fast]) / fast if t + 1 >= fast else None
        cur_slow = (prefix[t + 1] - prefix[t + 1 - slow]) / slow if t + 1 >= slow else None
        if None not in (prev_fast, prev_slow, cur_fast, cur_slow):
            if prev_fast < prev_slow and cur_fast > cur_slow:
                blocked = blocked and wanted == 1
                wanted = 1
            elif prev_fast > prev_slow and cur_fast < cur_slow:
                down = -1 if allow_short else 0
                blocked = blocked and wanted == down
                wanted = down
        prev_fast, prev_slow = cur_fast, cur_slow

    if side != 0:
        trades.append(open_trade(side, qty, entry_bar, ts[entry_bar], entry_px, entry_fee, closes[-1]))
    return finish_run(
        trades=trades,
        ts=bars.ts,
        equity=np.asarray(equity, dtype=np.float64),
        position=np.asarray(position, dtype=np.float64),
        initial_cash=initial_cash,
        periods_per_year=periods_per_year,
        input_hash=input_hash,
    )
