"""The portfolio rules of DOMAIN.md simulated bar by bar and symbol by symbol in plain Python.

It is the readable reference that ``app.domain.backtesting.portfolio.run_portfolio`` (vectorised) is
checked against on random data: same equity, cash, fills and trades to 1e-9. Nothing here is numpy
beyond reading the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.domain.backtesting.portfolio import Commission, Exits, PortfolioBars, SignalPlan, WeightPlan


@dataclass
class RefTrade:
    symbol: str
    side: str
    entry_bar: int
    exit_bar: int | None
    quantity: float
    entry_price: float
    exit_price: float | None
    pnl: float
    commission: float
    exit_reason: str | None


@dataclass
class _Position:
    q: float = 0.0
    avg: float = 0.0
    extreme: float = 0.0
    side: int = 0
    bar: int = 0
    real: float = 0.0
    fee: float = 0.0
    entry_notional: float = 0.0
    entry_qty: float = 0.0
    exit_notional: float = 0.0
    exit_qty: float = 0.0
    peak: float = 0.0


@dataclass
class RefResult:
    equity: list[float]
    cash: list[float]
    trades: list[RefTrade]
    fills: int
    quantities: list[list[float]] = field(default_factory=list)


def _fee(c: Commission, notional: float) -> float:
    return max(c.minimum, c.fixed + c.rate * notional) if notional > 0 else 0.0


def reference_portfolio(
    bars: PortfolioBars,
    plan: WeightPlan | SignalPlan,
    *,
    initial_cash: float,
    commission: Commission,
    slippage_bps: float = 0.0,
    allow_short: bool = False,
    leverage: float = 1.0,
    whole_units: bool = False,
    lot_size: list[float] | None = None,
    exits: Exits | None = None,
) -> RefResult:
    exits = exits or Exits()
    n, m = bars.n, bars.m
    opens = bars.open.tolist()
    highs = bars.high.tolist()
    lows = bars.low.tolist()
    closes = bars.close.tolist()
    lots = lot_size or [1.0] * m
    slip = slippage_bps / 1e4
    cash = float(initial_cash)
    pos = [_Position() for _ in range(m)]
    trades: list[RefTrade] = []
    fills = 0
    blocked = [False] * m

    schedule: dict[int, list[float]] = {}
    if isinstance(plan, WeightPlan):
        for d, w in zip(plan.decision_bars.tolist(), plan.weights.tolist(), strict=True):
            if d + 1 < n:
                schedule[d + 1] = w
        direction = None
    else:
        direction = [
            [max(min(int(v), 1), -1 if allow_short else 0) for v in row] for row in plan.direction.tolist()
        ]

    def close_trade(i: int, bar: int, reason: str) -> None:
        p = pos[i]
        trades.append(
            RefTrade(
                symbol=bars.symbols[i],
                side="long" if p.side > 0 else "short",
                entry_bar=p.bar,
                exit_bar=bar,
                quantity=p.peak,
                entry_price=p.entry_notional / p.entry_qty,
                exit_price=p.exit_notional / p.exit_qty,
                pnl=p.real,
                commission=p.fee,
                exit_reason=reason,
            )
        )

    def fill(i: int, dq: float, price: float, fee: float, bar: int, reason: str = "signal") -> None:
        nonlocal cash, fills
        fills += 1
        cash -= dq * price + fee
        p = pos[i]
        side = (p.q > 0) - (p.q < 0)
        size = abs(dq)
        closing = min(size, abs(p.q)) if side * dq < 0 else 0.0
        opening = size - closing
        fee_close = fee * (closing / size)
        fee_open = fee - fee_close
        if closing > 0:
            p.real += side * (price - p.avg) * closing - fee_close
            p.fee += fee_close
            p.exit_notional += closing * price
            p.exit_qty += closing
            before = p.q
            p.q -= side * closing
            if abs(p.q) <= 1e-12 * abs(before):
                p.q = 0.0
                close_trade(i, bar, reason)
        if opening > 0:
            direction_ = 1 if dq > 0 else -1
            if p.q == 0.0:
                pos[i] = p = _Position(side=direction_, bar=bar, extreme=opens[bar][i])
            p.avg = (p.avg * abs(p.q) + price * opening) / (abs(p.q) + opening)
            p.q += direction_ * opening
            p.real -= fee_open
            p.fee += fee_open
            p.entry_notional += opening * price
            p.entry_qty += opening
            p.peak = max(p.peak, abs(p.q))

    def rebalance(bar: int, weights: list[float | None]) -> None:
        nonlocal cash
        o = opens[bar]
        value = cash + sum(pos[i].q * o[i] for i in range(m))
        if value <= 0:  # exhausted: every target 0
            value, weights = 0.0, [0.0] * m
        delta = []
        for i in range(m):
            w = weights[i]
            if w is None:
                delta.append(0.0)
                continue
            target = w * value / o[i]
            if whole_units:
                target = math.copysign(math.floor(abs(target) / lots[i]) * lots[i], target) if target else 0.0
            delta.append(target - pos[i].q)
        for i in range(m):
            if delta[i] < 0:
                price = o[i] * (1 - slip)
                fill(i, delta[i], price, _fee(commission, -delta[i] * price), bar)
        for i in range(m):
            if delta[i] > 0:
                price = o[i] * (1 + slip)
                qty = delta[i]
                budget = cash + (leverage - 1.0) * value
                if qty * price + _fee(commission, qty * price) > budget:
                    qty = min(qty, commission.max_notional(budget) / price)
                    if whole_units:
                        qty = math.floor(qty / lots[i]) * lots[i]
                if qty > 0:
                    fill(i, qty, price, _fee(commission, qty * price), bar)

    def check_exit(i: int, t: int) -> None:
        p = pos[i]
        s = 1 if p.q > 0 else -1
        o, hi, lo = opens[t][i], highs[t][i], lows[t][i]
        if s > 0:
            stop = p.avg * (1 - exits.stop_loss_pct / 100) if exits.stop_loss_pct is not None else -math.inf
            trail = (lambda e: e * (1 - exits.trailing_stop_pct / 100)) if exits.trailing_stop_pct else None
            gap_level = max(stop, trail(p.extreme)) if trail else stop
            in_level = max(stop, trail(max(p.extreme, o))) if trail else stop
            tp = p.avg * (1 + exits.take_profit_pct / 100) if exits.take_profit_pct is not None else math.inf
            if o <= gap_level:
                level, price = gap_level, o * (1 - slip)
            elif lo <= in_level:
                level, price = in_level, in_level * (1 - slip)
            elif hi >= tp:
                fill(i, -p.q, tp, _fee(commission, p.q * tp), t, "take_profit")
                blocked[i] = direction is not None
                return
            else:
                p.extreme = max(p.extreme, hi)
                return
        else:
            stop = p.avg * (1 + exits.stop_loss_pct / 100) if exits.stop_loss_pct is not None else math.inf
            trail = (lambda e: e * (1 + exits.trailing_stop_pct / 100)) if exits.trailing_stop_pct else None
            gap_level = min(stop, trail(p.extreme)) if trail else stop
            in_level = min(stop, trail(min(p.extreme, o))) if trail else stop
            tp = p.avg * (1 - exits.take_profit_pct / 100) if exits.take_profit_pct is not None else -math.inf
            if o >= gap_level:
                level, price = gap_level, o * (1 + slip)
            elif hi >= in_level:
                level, price = in_level, in_level * (1 + slip)
            elif lo <= tp:
                fill(i, -p.q, tp, _fee(commission, -p.q * tp), t, "take_profit")
                blocked[i] = direction is not None
                return
            else:
                p.extreme = min(p.extreme, lo)
                return
        reason = "stop_loss" if level == stop else "trailing_stop"
        fill(i, -p.q, price, _fee(commission, abs(p.q) * price), t, reason)
        if direction is not None:
            blocked[i] = True

    equity: list[float] = []
    cash_curve: list[float] = []
    quantities: list[list[float]] = []
    for t in range(n):
        if direction is None:
            if t in schedule:
                rebalance(t, schedule[t])
        elif t >= 1:
            now = direction[t - 1]
            before = direction[t - 2] if t >= 2 else [0] * m
            if now != before:
                for i in range(m):
                    if now[i] != 0 and now[i] != before[i]:
                        blocked[i] = False
                active = [now[i] != 0 and not blocked[i] for i in range(m)]
                if plan.sizing == "equal_weight":
                    count = sum(active)
                    weights: list[float | None] = [now[i] / count if active[i] else 0.0 for i in range(m)]
                else:
                    weights = [
                        (now[i] * plan.percent / 100 if active[i] else 0.0) if now[i] != before[i] else None
                        for i in range(m)
                    ]
                rebalance(t, weights)
        if exits.any:
            for i in range(m):
                if pos[i].q != 0.0:
                    check_exit(i, t)
        equity.append(cash + sum(pos[i].q * closes[t][i] for i in range(m)))
        cash_curve.append(cash)
        quantities.append([p.q for p in pos])
    for i in range(m):
        p = pos[i]
        if p.q != 0.0:
            pnl = p.real + p.side * (closes[-1][i] - p.avg) * abs(p.q)
            trades.append(
                RefTrade(
                    symbol=bars.symbols[i],
                    side="long" if p.side > 0 else "short",
                    entry_bar=p.bar,
                    exit_bar=None,
                    quantity=p.peak,
                    entry_price=p.entry_notional / p.entry_qty,
                    exit_price=None,
                    pnl=pnl,
                    commission=p.fee,
                    exit_reason=None,
                )
            )
    return RefResult(equity=equity, cash=cash_curve, trades=trades, fills=fills, quantities=quantities)
