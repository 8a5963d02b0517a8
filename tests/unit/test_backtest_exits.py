"""Exits inside bars for the one-instrument engine (engine.py with exits.py), and annualisation by the
data's calendar.

Hand-computed cases are exact (every price is a float the arithmetic reproduces); random data is
checked against the plain-Python loop reference (tests/unit/engine_reference.py) and against the
portfolio engine on one symbol, which shares the exit code.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.backtesting.engine import Bars, run_backtest, run_strategy
from app.domain.backtesting.exits import Exits, first_exits, first_exits_ragged
from app.domain.backtesting.periods import infer_periods_per_year
from app.domain.backtesting.portfolio import PortfolioBars, SignalPlan, run_portfolio
from app.domain.backtesting.strategies import get_strategy, parse_params
from tests.unit.engine_reference import run_backtest_loop

DAY = 86_400
MONDAY = 1_704_067_200  # 2024-01-01


def bars(opens, highs, lows, closes, *, step: int = DAY, start: int = MONDAY) -> Bars:
    n = len(opens)
    return Bars(
        ts=start + step * np.arange(n),
        open=opens,
        high=highs,
        low=lows,
        close=closes,
        volume=np.ones(n),
    )


def long_run(b: Bars, exits: Exits | None, target=None, **kw):
    t = np.ones(len(b), dtype=np.int8) if target is None else np.asarray(target, dtype=np.int8)
    return run_backtest(b, t, initial_cash=1000.0, commission=0.0, exits=exits, **kw)


def summary(res) -> list[tuple]:
    return [
        (t.side, t.entry_bar, t.entry_price, t.exit_bar, t.exit_price, t.quantity, t.exit_reason)
        for t in res.trades
    ]


# Entry at bar 1's open (100): 10 units with 1000 of cash.
#                 0      1      2      3      4      5
OPENS = [100.0, 100.0, 98.0, 97.0, 99.0, 99.0]
HIGHS = [101.0, 101.0, 99.0, 98.0, 100.0, 100.0]
LOWS = [99.0, 99.0, 96.0, 94.0, 98.0, 98.0]
CLOSES = [100.0, 99.0, 97.0, 96.0, 99.0, 99.0]


def test_stop_loss_inside_a_bar_fills_at_the_stop_and_stays_flat():
    res = long_run(bars(OPENS, HIGHS, LOWS, CLOSES), Exits(stop_loss_pct=5))
    # stop = 100 * 0.95 = 95: bar 2's low 96 does not reach it, bar 3's low 94 does.
    assert summary(res) == [("long", 1, 100.0, 3, 95.0, 10.0, "stop_loss")]
    assert res.trades[0].pnl == -50.0
    # Flat from bar 3's close on although the target still says long: cash 950.
    assert res.position.tolist() == [0.0, 10.0, 10.0, 0.0, 0.0, 0.0]
    assert res.equity.tolist() == [1000.0, 990.0, 970.0, 950.0, 950.0, 950.0]


def test_a_gap_through_the_stop_fills_at_the_open():
    o = [100.0, 100.0, 98.0, 93.0, 99.0, 99.0]
    res = long_run(bars(o, HIGHS, [99.0, 99.0, 96.0, 92.0, 98.0, 98.0], CLOSES), Exits(stop_loss_pct=5))
    assert summary(res) == [("long", 1, 100.0, 3, 93.0, 10.0, "stop_loss")]


def test_a_bar_reaching_both_stop_and_target_takes_the_stop():
    h = [101.0, 101.0, 106.0, 98.0, 100.0, 100.0]
    res = long_run(bars(OPENS, h, LOWS, CLOSES), Exits(stop_loss_pct=5, take_profit_pct=5))
    # Bar 2: high 106 >= 105 (target) and low... 96 > 95: the target alone fills, at its level.
    assert summary(res) == [("long", 1, 100.0, 2, 105.0, 10.0, "take_profit")]
    low = [99.0, 99.0, 94.0, 94.0, 98.0, 98.0]
    res = long_run(bars(OPENS, h, low, CLOSES), Exits(stop_loss_pct=5, take_profit_pct=5))
    # Bar 2 reaches both 105 and 95: the stop is taken (DOMAIN.md: the pessimistic assumption).
    assert summary(res) == [("long", 1, 100.0, 2, 95.0, 10.0, "stop_loss")]


def test_take_profit_fills_at_its_level_without_slippage():
    h = [101.0, 101.0, 111.0, 98.0, 100.0, 100.0]
    res = long_run(bars(OPENS, h, LOWS, CLOSES), Exits(take_profit_pct=10), slippage_bps=10.0)
    # Entry at 100 * 1.001 (slippage); target = entry * 1.1.
    (t,) = res.trades
    assert (t.exit_bar, t.exit_reason) == (2, "take_profit")
    assert t.entry_price == 100.0 * 1.001
    assert t.exit_price == 100.0 * 1.001 * (1.0 + 10.0 / 100.0)


def test_trailing_stop_follows_the_highest_high_and_the_open():
    # best: entry open 100, bar 1 high 110 -> 110; trail 10 %: stop 99 for bar 2.
    o = [100.0, 100.0, 105.0, 100.0, 100.0]
    h = [100.0, 110.0, 106.0, 101.0, 101.0]
    lo = [100.0, 100.0, 98.5, 99.0, 99.0]
    c = [100.0, 105.0, 100.0, 100.0, 100.0]
    res = long_run(bars(o, h, lo, c), Exits(trailing_stop_pct=10))
    assert summary(res) == [("long", 1, 100.0, 2, 110.0 * 0.9, 10.0, "trailing_stop")]
    # A bar that opens above the best so far raises the stop before its low: best 112, stop 100.8.
    o2 = [100.0, 100.0, 112.0, 100.0, 100.0]
    h2 = [100.0, 110.0, 112.0, 101.0, 101.0]
    lo2 = [100.0, 100.0, 100.5, 99.0, 99.0]
    res = long_run(bars(o2, h2, lo2, c), Exits(trailing_stop_pct=10))
    assert summary(res) == [("long", 1, 100.0, 2, 112.0 * (1.0 - 10.0 / 100.0), 10.0, "trailing_stop")]


def test_the_tighter_level_names_the_reason():
    o = [100.0, 100.0, 105.0, 100.0, 100.0]
    h = [100.0, 110.0, 106.0, 101.0, 101.0]
    lo = [100.0, 100.0, 90.0, 99.0, 99.0]
    c = [100.0, 105.0, 100.0, 100.0, 100.0]
    # Stop-loss 5 % (95) below the trail (99): the trailing stop binds.
    res = long_run(bars(o, h, lo, c), Exits(stop_loss_pct=5, trailing_stop_pct=10))
    assert summary(res)[0][3:] == (2, 99.0, 10.0, "trailing_stop")
    # Stop-loss 0.5 % (99.5) above the trail: the stop-loss binds.
    res = long_run(bars(o, h, lo, c), Exits(stop_loss_pct=0.5, trailing_stop_pct=10))
    assert summary(res)[0][3:] == (2, 100.0 * (1.0 - 0.5 / 100.0), 10.0, "stop_loss")


def test_an_exit_on_the_entry_bar():
    res = long_run(bars(OPENS, HIGHS, [99.0, 94.0, 96.0, 94.0, 98.0, 98.0], CLOSES), Exits(stop_loss_pct=5))
    assert summary(res) == [("long", 1, 100.0, 1, 95.0, 10.0, "stop_loss")]
    assert res.position.tolist() == [0.0] * 6


def test_stops_fill_with_slippage_against_the_trader():
    res = long_run(bars(OPENS, HIGHS, LOWS, CLOSES), Exits(stop_loss_pct=5), slippage_bps=20.0)
    (t,) = res.trades
    entry = 100.0 * (1.0 + 20.0 / 1e4)
    assert t.entry_price == entry
    assert t.exit_price == entry * (1.0 - 5.0 / 100.0) * (1.0 - 20.0 / 1e4)


def test_short_exits_are_mirrored():
    # Short from bar 1's open 100: stop 105 above, target 90 below.
    o = [100.0, 100.0, 102.0, 101.0, 100.0]
    h = [101.0, 101.0, 104.0, 106.0, 101.0]
    lo = [99.0, 99.0, 101.0, 100.0, 99.0]
    c = [100.0, 101.0, 103.0, 102.0, 100.0]
    target = -np.ones(5, dtype=np.int8)
    res = long_run(bars(o, h, lo, c), Exits(stop_loss_pct=5, take_profit_pct=10), target, allow_short=True)
    assert summary(res) == [("short", 1, 100.0, 3, 105.0, 10.0, "stop_loss")]
    lo2 = [99.0, 99.0, 89.0, 100.0, 99.0]
    res = long_run(bars(o, h, lo2, c), Exits(stop_loss_pct=5, take_profit_pct=10), target, allow_short=True)
    assert summary(res) == [("short", 1, 100.0, 2, 100.0 * (1.0 - 10.0 / 100.0), 10.0, "take_profit")]
    # Trailing: lowest low 99 (bar 1), trail 2 % -> 100.98; bar 2 opens at 102 above it: the open.
    res = long_run(bars(o, h, lo, c), Exits(trailing_stop_pct=2), target, allow_short=True)
    assert summary(res) == [("short", 1, 100.0, 2, 102.0, 10.0, "trailing_stop")]


def test_after_an_exit_the_next_entry_waits_for_the_signal_to_change():
    # Target long, long, long, flat, long, long: stopped at bar 3, flat at bar 4 (target 0 from bar 3's
    # close), in again at bar 5's open.
    res = long_run(bars(OPENS, HIGHS, LOWS, CLOSES), Exits(stop_loss_pct=5), [1, 1, 1, 0, 1, 1])
    assert summary(res)[0] == ("long", 1, 100.0, 3, 95.0, 10.0, "stop_loss")
    second = res.trades[1]
    assert (second.entry_bar, second.entry_price, second.is_open, second.exit_reason) == (5, 99.0, True, None)
    assert second.quantity == 9.0  # floor(950 / 99)


def test_signal_exits_say_so_and_no_exits_changes_nothing():
    b = gbm(400, 3)
    plain = run_strategy(b, "sma_cross", {"fast": 5, "slow": 20}, initial_cash=10_000.0, commission=0.001)
    none = run_strategy(
        b, "sma_cross", {"fast": 5, "slow": 20}, initial_cash=10_000.0, commission=0.001, exits=Exits()
    )
    assert plain.trades == none.trades and plain.input_hash == none.input_hash
    assert np.array_equal(plain.equity, none.equity)
    assert {t.exit_reason for t in plain.trades if not t.is_open} == {"signal"}


def test_exits_are_part_of_the_input_hash_and_runs_are_deterministic():
    b = gbm(400, 4)
    kw = {"initial_cash": 10_000.0, "commission": 0.001}
    base = run_strategy(b, "sma_cross", {"fast": 5, "slow": 20}, **kw)
    hashes = {base.input_hash}
    for exits in (
        Exits(stop_loss_pct=2),
        Exits(stop_loss_pct=3),
        Exits(take_profit_pct=2),
        Exits(trailing_stop_pct=2),
    ):
        one = run_strategy(b, "sma_cross", {"fast": 5, "slow": 20}, exits=exits, **kw)
        two = run_strategy(b, "sma_cross", {"fast": 5, "slow": 20}, exits=exits, **kw)
        assert one.input_hash == two.input_hash
        assert one.trades == two.trades and np.array_equal(one.equity, two.equity)
        assert one.metrics == two.metrics
        hashes.add(one.input_hash)
    assert len(hashes) == 5


def test_exit_levels_are_validated():
    for bad in (-1.0, 0.0, 100.0, float("nan")):
        with pytest.raises(ValueError, match="stop_loss_pct"):
            Exits(stop_loss_pct=bad)


# ---------------------------------------------------------------------------------------------- random data


def gbm(n: int, seed: int, step: int = DAY) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return Bars(
        ts=MONDAY + step * np.arange(n), open=open_, high=high, low=low, close=close, volume=np.ones(n)
    )


EXIT_CASES = [
    Exits(stop_loss_pct=2),
    Exits(take_profit_pct=3),
    Exits(trailing_stop_pct=2.5),
    Exits(stop_loss_pct=3, take_profit_pct=4),
    Exits(stop_loss_pct=1.5, take_profit_pct=6, trailing_stop_pct=3),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exits", EXIT_CASES, ids=lambda e: repr(e.as_dict()))
@pytest.mark.parametrize("allow_short", [False, True])
def test_engine_matches_the_loop_reference_with_exits(seed, exits, allow_short):
    b = gbm(600, seed)
    kw = {"initial_cash": 10_000.0, "commission": 0.001, "slippage_bps": 5.0, "lot_size": 0.5}
    params = {"fast": 5, "slow": 20, "allow_short": allow_short}
    vec = run_strategy(b, "sma_cross", params, exits=exits, **kw)
    loop = run_backtest_loop(b, fast=5, slow=20, allow_short=allow_short, exits=exits, **kw)
    assert vec.trades == loop.trades
    assert np.array_equal(vec.position, loop.position)
    np.testing.assert_allclose(vec.equity, loop.equity, rtol=1e-12)
    assert vec.input_hash == loop.input_hash
    reasons = {t.exit_reason for t in vec.trades if not t.is_open}
    assert reasons - {"signal"}, "the case must exercise the exits"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exits", EXIT_CASES, ids=lambda e: repr(e.as_dict()))
def test_engine_exits_match_the_portfolio_engine_on_one_symbol(seed, exits):
    """One exit implementation: a long/flat strategy on one symbol, whole units, no costs, gives the
    same round trips in both engines (entry bar and price, exit bar, price and reason, quantity)."""
    b = gbm(600, seed)
    params = parse_params("sma_cross", {"fast": 5, "slow": 20})
    single = run_strategy(
        b, "sma_cross", {"fast": 5, "slow": 20}, initial_cash=10_000.0, commission=0.0, exits=exits
    )
    pb = PortfolioBars(
        symbols=("X",),
        ts=b.ts,
        **{k: getattr(b, k)[:, None] for k in ("open", "high", "low", "close", "volume")},
    )
    direction = get_strategy("sma_cross").signals(b, params)[:, None]
    multi = run_portfolio(pb, SignalPlan(direction), initial_cash=10_000.0, whole_units=True, exits=exits)
    # Bars, quantities and reasons exactly; prices to rounding (the portfolio's are averages, notional
    # over quantity).
    key = lambda t: (t.side, t.entry_bar, t.exit_bar, t.quantity, t.exit_reason)  # noqa: E731
    assert [key(t) for t in single.trades] == [key(t) for t in multi.trades]
    for one, other in zip(single.trades, multi.trades, strict=True):
        assert one.entry_price == pytest.approx(other.entry_price, rel=1e-13)
        assert (one.exit_price is None) == (other.exit_price is None)
        if one.exit_price is not None:
            assert one.exit_price == pytest.approx(other.exit_price, rel=1e-13)
    assert [t.exit_reason for t in single.trades if t.exit_reason not in (None, "signal")]


# ---------------------------------------------------------------------------------------------- calendar


def test_annualisation_follows_the_calendar_unless_given():
    seven_days = gbm(60, 1)  # daily bars with weekends
    weekdays = gbm(60, 1)
    weekdays = Bars(
        ts=np.array([t for t in MONDAY + DAY * np.arange(84) if (t // DAY + 3) % 7 < 5][:60]),
        open=weekdays.open,
        high=weekdays.high,
        low=weekdays.low,
        close=weekdays.close,
        volume=weekdays.volume,
    )
    hourly = gbm(500, 1, step=3_600)
    kw = {"initial_cash": 1000.0, "commission": 0.0}
    for b, expected in ((seven_days, 365), (weekdays, 252), (hourly, round(365.25 * 24))):
        assert infer_periods_per_year(b.ts) == expected
        res = run_strategy(b, "buy_and_hold", {}, **kw)
        assert res.metrics["periods_per_year"] == expected
        r = res.equity[1:] / res.equity[:-1] - 1.0
        assert res.metrics["annual_volatility"] == pytest.approx(
            np.std(r, ddof=1) * np.sqrt(expected), rel=1e-9
        )
    given = run_strategy(seven_days, "buy_and_hold", {}, periods_per_year=252, **kw)
    inferred = run_strategy(seven_days, "buy_and_hold", {}, **kw)
    assert given.metrics["periods_per_year"] == 252
    assert given.input_hash != inferred.input_hash


@pytest.mark.parametrize("exits", EXIT_CASES, ids=lambda e: repr(e.as_dict()))
def test_exits_of_retried_entries_match_the_reference(exits):
    """A violent series and a tiny account: entries wait for an affordable open (scanned on their own,
    not in the batch of entries at a segment's start) and shorts can be stopped out."""
    rng = np.random.default_rng(11)
    n = 3000
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.08, n)))
    open_ = np.concatenate(([50.0], close[:-1])) * np.exp(rng.normal(0.0, 0.05, n))
    b = Bars(
        ts=np.arange(n) * 60,
        open=open_,
        high=np.maximum(open_, close) * 1.01,
        low=np.minimum(open_, close) * 0.99,
        close=close,
        volume=np.ones(n),
    )
    params = {"fast": 2, "slow": 6, "allow_short": True}
    costs = {"initial_cash": 60.0, "commission": 0.001, "slippage_bps": 3.0}
    vec = run_strategy(b, "sma_cross", params, exits=exits, **costs)
    ref = run_backtest_loop(b, **params, exits=exits, **costs)
    assert vec.trades == ref.trades
    np.testing.assert_array_equal(vec.equity, ref.equity)
    target = get_strategy("sma_cross").signals(b, parse_params("sma_cross", params))
    changes = set((np.flatnonzero(np.diff(target)) + 2).tolist())
    retried = [t for t in vec.trades if t.entry_bar not in changes]
    assert len(retried) >= 2, "data must exercise retried entries"
    assert any(t.exit_reason not in (None, "signal") for t in retried)


@pytest.mark.parametrize("exits", EXIT_CASES, ids=lambda e: repr(e.as_dict()))
def test_the_batched_scan_equals_one_scan_per_holding_period(exits):
    b = gbm(2000, 8)
    rng = np.random.default_rng(1)
    cuts = np.unique(np.concatenate(([0], rng.integers(1, 2000, 150), [2000])))
    starts, ends = cuts[:-1], cuts[1:]  # lengths from 1 bar up
    side = rng.choice([-1.0, 1.0], starts.size)
    avg = b.open[starts] * np.where(side > 0, 1.0005, 0.9995)
    bar, price, reason = first_exits_ragged(b.open, b.high, b.low, starts, ends, side, avg, exits, 0.0005)
    for i in range(starts.size):
        a, e = int(starts[i]), int(ends[i])
        hits = first_exits(
            b.open[a:e, None],
            b.high[a:e, None],
            b.low[a:e, None],
            side[i : i + 1],
            avg[i : i + 1],
            b.open[a : a + 1],
            exits,
            0.0005,
        )
        if hits.cols.size:
            assert (bar[i], price[i], reason[i]) == (a + hits.rows[0], hits.price[0], hits.reason[0])
        else:
            assert bar[i] == -1
    assert np.count_nonzero(bar >= 0) > 10
