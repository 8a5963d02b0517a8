"""Parity of a stop-loss exit between the portfolio engine and the paper exchange's stop logic.

The same bars are fed to the paper exchange's matching rules (`trading.rules.match` with a resting sell
stop) as the replay path of DOMAIN.md (open; low then high for an up bar, high then low for a down
bar; close). Both must exit on the same bar, and on a bar that opens through the stop both fill at
the open. Inside a bar they differ by design: the discrete replay path jumps from the open to the
low, so the exchange fills at the low, while the engine fills at the stop level that a continuous
market crosses on its way there (the conventional backtest assumption); the test checks that the
engine's price is never better than the stop and the exchange's never better than the engine's.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pytest

from app.domain.backtesting.portfolio import Exits, PortfolioBars, WeightPlan, run_portfolio
from app.domain.trading.rules import OrderView, match, round_to_tick

TICK = Decimal("0.0001")


def replay_path(o: float, h: float, lo: float, c: float) -> list[float]:
    return [o, lo, h, c] if c >= o else [o, h, lo, c]


def exchange_stop_exit(
    bars: PortfolioBars, entry_bar: int, qty: float, stop: Decimal
) -> tuple[int, Decimal] | None:
    order = OrderView(
        side="sell",
        type="stop",
        tif="gtc",
        quantity=Decimal(repr(float(qty))),
        filled_quantity=Decimal(0),
        stop_price=stop,
    )
    for t in range(entry_bar, bars.n):
        path = replay_path(bars.open[t, 0], bars.high[t, 0], bars.low[t, 0], bars.close[t, 0])
        if t == entry_bar:
            path = path[1:]  # the stop is placed once the entry filled at this open
        for price in path:
            res = match(
                order,
                Decimal(repr(float(price))),
                None,
                slippage_bps=0,
                tick_size=TICK,
                lot_size=TICK,
                immediate=False,
            )
            if res.filled:
                return t, res.fill_price
    return None


def tick_bars(seed: int, n: int = 60) -> PortfolioBars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.015, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    on_tick = lambda a: np.round(a, 4)  # noqa: E731  (prices on the exchange's tick grid)
    return PortfolioBars(
        symbols=("X",),
        ts=1_704_067_200 + 86_400 * np.arange(n),
        open=on_tick(open_)[:, None],
        high=on_tick(high)[:, None],
        low=on_tick(low)[:, None],
        close=on_tick(close)[:, None],
        volume=np.ones((n, 1)),
    )


@pytest.mark.parametrize("seed", range(40))
def test_stop_loss_exit_matches_the_paper_exchange(seed):
    bars = tick_bars(seed)
    res = run_portfolio(
        bars,
        WeightPlan(np.array([0]), np.array([[1.0]])),
        initial_cash=10_000.0,
        exits=Exits(stop_loss_pct=4),
    )
    trade = res.trades[0]
    entry = trade.entry_price
    level = entry * 0.96
    stop = round_to_tick(Decimal(repr(level)), TICK, ROUND_FLOOR)
    # A low between the tick-rounded stop and the exact level would trigger only the engine: skip it.
    if np.any((bars.low[:, 0] > float(stop)) & (bars.low[:, 0] <= level)):
        pytest.skip("a low falls between the tick-rounded stop and the exact level")
    exchange = exchange_stop_exit(bars, trade.entry_bar, trade.quantity, stop)
    if exchange is None:
        assert trade.is_open and trade.exit_reason is None
        return
    bar, price = exchange
    assert (trade.exit_bar, trade.exit_reason) == (bar, "stop_loss")
    opened_through = bars.open[bar, 0] <= level
    if opened_through:
        assert float(price) == bars.open[bar, 0]
        assert trade.exit_price == pytest.approx(float(price), rel=1e-12)  # an average over its fills
    else:
        assert trade.exit_price == pytest.approx(level, rel=1e-12)
        assert float(price) <= trade.exit_price  # the exchange fills at the path's low
