"""Portfolio engine: hand-computed cases (exact) and agreement with the plain-Python loop on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.domain.backtesting.portfolio import (
    Commission,
    Exits,
    PortfolioBars,
    SignalPlan,
    WeightPlan,
    benchmark_metrics,
    infer_periods_per_year,
    rebalance_bars,
    run_portfolio,
)
from tests.unit.portfolio_reference import reference_portfolio

DAY = 86_400
MONDAY = 1_704_067_200  # 2024-01-01, a Monday


def make(opens, closes, highs=None, lows=None, ts=None, symbols=None) -> PortfolioBars:
    o = np.asarray(opens, dtype=np.float64)
    c = np.asarray(closes, dtype=np.float64)
    h = np.maximum(o, c) if highs is None else np.asarray(highs, dtype=np.float64)
    lo = np.minimum(o, c) if lows is None else np.asarray(lows, dtype=np.float64)
    n, m = o.shape
    return PortfolioBars(
        symbols=symbols or tuple("ABCDEFGH"[:m]),
        ts=MONDAY + DAY * np.arange(n) if ts is None else ts,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=np.ones((n, m)),
    )


def fixed(weights, n_decisions=1, bars=(0,)) -> WeightPlan:
    return WeightPlan(np.asarray(bars), np.tile(np.asarray(weights, dtype=np.float64), (n_decisions, 1)))


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------


def test_weights_execute_at_next_open_and_a_buy_cash_cannot_cover_is_reduced():
    bars = make([[10, 20], [10, 20], [12, 10]], [[10, 20], [11, 22], [12, 10]])
    res = run_portfolio(bars, fixed([0.5, 0.5]), initial_cash=1000.0, commission=Commission(rate=0.01))
    # Bar 1's open: V = 1000; A buys 50 for 500 + 5 fee; B wants 25 (505 with fee) but only 495 is left:
    # the largest notional n with n * 1.01 <= 495.
    b_notional = 495 / 1.01
    qb = b_notional / 20
    assert res.quantities[-1] == pytest.approx([50, qb], rel=1e-15)
    assert res.equity[0] == 1000.0
    assert res.equity[1] == pytest.approx(50 * 11 + qb * 22 + (495 - b_notional * 1.01), rel=1e-15)
    assert res.cash[1] == pytest.approx(0.0, abs=1e-12)
    assert res.fills == 2
    assert [t.entry_bar for t in res.trades] == [1, 1] and all(t.is_open for t in res.trades)


def test_sells_execute_before_buys_so_a_switch_is_funded_by_the_sale():
    bars = make([[10, 10]] * 4, [[10, 10]] * 4)
    plan = WeightPlan(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    res = run_portfolio(bars, plan, initial_cash=100.0, commission=Commission(fixed=1.0))
    # Bar 1: buy A: 99 of notional (fee 1). Bar 2: V = 99; sell 9.9 A (fee 1, cash 98), then buy B with
    # what cash covers: target 9.9 B costs 99 + 1 > 98, so 97 of notional.
    assert res.quantities[1] == pytest.approx([9.9, 0.0])
    assert res.quantities[2] == pytest.approx([0.0, 9.7])
    assert res.cash[2] == pytest.approx(0.0, abs=1e-12)
    closed = [t for t in res.trades if not t.is_open]
    assert (
        len(closed) == 1
        and closed[0].pnl == pytest.approx(-2.0)
        and closed[0].commission == pytest.approx(2.0)
    )


def test_commission_models_rate_fixed_plus_rate_and_minimum():
    c = Commission(rate=0.001, fixed=2.0, minimum=5.0)
    assert c.fee(np.array([0.0, 1000.0, 10_000.0])).tolist() == [0.0, 5.0, 12.0]
    # Largest notional cash covers, on each side of the minimum's kink.
    assert c.max_notional(105.0) == 100.0
    assert c.max_notional(10_012.0) == pytest.approx(10_000.0, rel=1e-15)
    assert Commission(rate=0.01).max_notional(101.0) == pytest.approx(100.0, rel=1e-15)
    with pytest.raises(ValueError):
        Commission(rate=1.5)


def test_slippage_moves_fills_against_the_trader():
    bars = make([[100.0]] * 3, [[100.0]] * 3)
    plan = WeightPlan(np.array([0, 1]), np.array([[0.5], [0.0]]))
    res = run_portfolio(bars, plan, initial_cash=1000.0, slippage_bps=100)
    (trade,) = res.trades
    assert trade.entry_price == pytest.approx(101.0) and trade.exit_price == pytest.approx(99.0)
    assert trade.quantity == pytest.approx(5.0)
    assert trade.pnl == pytest.approx(5 * (99 - 101))


def test_whole_units_floor_to_the_lot_size():
    bars = make([[7.0, 3.0]] * 3, [[7.0, 3.0]] * 3)
    res = run_portfolio(bars, fixed([0.5, 0.5]), initial_cash=100.0, whole_units=True, lot_size=[2.0, 5.0])
    # 50 / 7 = 7.14 -> 6 (lots of 2); 50 / 3 = 16.7 -> 15 (lots of 5).
    assert res.quantities[-1].tolist() == [6.0, 15.0]
    assert res.cash[-1] == 100 - 42 - 45


def test_shorting_needs_allow_short_and_weights_cannot_exceed_leverage():
    bars = make([[10.0, 10.0], [10.0, 10.0], [8.0, 10.0]], [[10.0, 10.0], [10.0, 10.0], [8.0, 10.0]])
    with pytest.raises(ValueError, match="allow_short"):
        run_portfolio(bars, fixed([-0.5, 0.5]), initial_cash=100.0)
    with pytest.raises(ValueError, match="leverage"):
        run_portfolio(bars, fixed([0.7, 0.5]), initial_cash=100.0)
    res = run_portfolio(bars, fixed([-0.5, 0.5]), initial_cash=100.0, allow_short=True)
    assert res.quantities[-1].tolist() == [-5.0, 5.0]
    # Short 5 A from 10 to 8: +10; cash 100 + 50 - 50.
    assert res.equity[-1] == pytest.approx(110.0)
    res = run_portfolio(bars, fixed([0.75, 0.75]), initial_cash=100.0, leverage=1.5)
    assert res.quantities[-1].tolist() == [7.5, 7.5] and res.cash[-1] == -50.0


def test_an_exhausted_portfolio_closes_its_positions_and_never_turns_a_long_weight_short():
    # Long 2x at 100 on 100,000 of equity; the open gaps to 40: V = -100,000 + 2,000 * 40 = -20,000.
    prices = [[100], [100], [100], [40], [45], [50], [60]]
    plan = WeightPlan(np.arange(7), np.full((7, 1), 2.0))
    res = run_portfolio(make(prices, prices), plan, initial_cash=100_000.0, leverage=2.0)
    assert [q[0] for q in res.quantities] == [0, 2000, 2000, 0, 0, 0, 0]
    assert res.equity[3:].tolist() == [-20_000.0] * 4  # the debt stays; nothing is bought against it
    assert res.metrics["total_return"] == -1.0  # wiped out at the first bar at or below 0
    ref = reference_portfolio(
        make(prices, prices), plan, initial_cash=100_000.0, commission=Commission(), leverage=2.0
    )
    assert [q[0] for q in ref.quantities] == [0, 2000, 2000, 0, 0, 0, 0]


def test_a_decision_on_the_final_bar_trades_nothing():
    bars = make([[10.0]] * 3, [[10.0]] * 3)
    res = run_portfolio(bars, WeightPlan(np.array([2]), np.array([[1.0]])), initial_cash=100.0)
    assert res.fills == 0 and res.equity.tolist() == [100.0] * 3


def test_stop_loss_fills_at_the_stop_inside_a_bar_and_at_the_open_on_a_gap():
    # Entry at bar 1's open (100). Stop 10% -> 90.
    opens = [[100.0, 100.0], [100.0, 100.0], [95.0, 85.0], [91.0, 90.0]]
    closes = [[100.0, 100.0], [98.0, 99.0], [92.0, 86.0], [91.0, 90.0]]
    lows = [[100.0, 100.0], [97.0, 98.0], [89.0, 84.0], [90.0, 89.0]]
    highs = [[100.0, 100.0], [101.0, 101.0], [96.0, 87.0], [92.0, 91.0]]
    bars = make(opens, closes, highs, lows)
    res = run_portfolio(bars, fixed([0.5, 0.5]), initial_cash=1000.0, exits=Exits(stop_loss_pct=10))
    a, b = sorted(res.trades, key=lambda t: t.symbol)
    assert (a.exit_bar, a.exit_price, a.exit_reason) == (2, 90.0, "stop_loss")  # low 89 crossed 90
    assert (b.exit_bar, b.exit_price, b.exit_reason) == (2, 85.0, "stop_loss")  # opened at 85 < 90
    assert res.quantities[-1].tolist() == [0.0, 0.0]
    assert res.equity[2] == pytest.approx(5 * 90 + 5 * 85)


def test_when_one_bar_reaches_stop_and_target_the_stop_is_taken():
    bars = make(
        [[100.0]] * 3, [[100.0]] * 3, highs=[[100.0], [100.0], [120.0]], lows=[[100.0], [100.0], [80.0]]
    )
    res = run_portfolio(
        bars, fixed([1.0]), initial_cash=1000.0, exits=Exits(stop_loss_pct=5, take_profit_pct=5)
    )
    (t,) = res.trades
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (2, 95.0, "stop_loss")


def test_take_profit_fills_at_its_limit_price():
    bars = make([[100.0]] * 3, [[100.0], [100.0], [104.0]], highs=[[100.0], [100.0], [111.0]])
    res = run_portfolio(bars, fixed([1.0]), initial_cash=1000.0, exits=Exits(take_profit_pct=10))
    (t,) = res.trades
    assert (t.exit_bar, t.exit_reason) == (2, "take_profit") and t.exit_price == pytest.approx(110.0)
    assert t.pnl == pytest.approx(100.0)


def test_trailing_stop_follows_the_best_price_since_entry():
    highs = [[100.0], [100.0], [120.0], [118.0], [110.0]]
    lows = [[100.0], [100.0], [100.0], [109.0], [100.0]]
    bars = make(
        [[100.0], [100.0], [101.0], [115.0], [109.0]],
        [[100.0], [100.0], [115.0], [110.0], [101.0]],
        highs,
        lows,
    )
    res = run_portfolio(bars, fixed([1.0]), initial_cash=1000.0, exits=Exits(trailing_stop_pct=10))
    (t,) = res.trades
    # Extreme 120 after bar 2 -> stop 108; bar 3's low 109 survives; bar 4 opens at 109, low 100 -> 108.
    assert (t.exit_bar, t.exit_reason) == (4, "trailing_stop") and t.exit_price == pytest.approx(108.0)


def test_short_exits_mirror_the_long_rules():
    bars = make(
        [[100.0]] * 3, [[100.0]] * 3, highs=[[100.0], [100.0], [107.0]], lows=[[100.0], [100.0], [99.0]]
    )
    res = run_portfolio(
        bars, fixed([-1.0]), initial_cash=1000.0, allow_short=True, exits=Exits(stop_loss_pct=5)
    )
    (t,) = res.trades
    assert (t.side, t.exit_bar, t.exit_price, t.exit_reason) == ("short", 2, 105.0, "stop_loss")
    assert t.pnl == pytest.approx(-50.0)


def test_a_stopped_weight_comes_back_at_the_next_decision_and_a_stopped_signal_at_a_new_entry():
    n = 8
    opens = [[100.0]] * n
    lows = [[100.0]] * n
    lows[2] = [80.0]
    bars = make(opens, opens, None, lows)
    res = run_portfolio(
        bars,
        WeightPlan(np.array([0, 4]), np.array([[1.0], [1.0]])),
        initial_cash=100.0,
        exits=Exits(stop_loss_pct=10),
    )
    assert [t.entry_bar for t in res.trades] == [1, 5]
    signal = np.ones((n, 1), dtype=np.int8)
    signal[4] = 0  # off at bar 4, on again at bar 5: a new entry executed at bar 6
    res = run_portfolio(bars, SignalPlan(signal), initial_cash=100.0, exits=Exits(stop_loss_pct=10))
    assert [t.entry_bar for t in res.trades] == [1, 6]


def test_equal_weight_signals_split_equity_at_each_change():
    bars = make([[10.0, 20.0]] * 5, [[10.0, 20.0]] * 5)
    direction = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1]], dtype=np.int8)
    res = run_portfolio(bars, SignalPlan(direction), initial_cash=100.0)
    assert res.positions_at(np.arange(5)).tolist() == [[0, 0], [10, 0], [10, 0], [5, 2.5], [0, 5]]


def test_percent_equity_sizes_each_entry_and_leaves_holdings_alone():
    bars = make([[10.0, 20.0]] * 4, [[10.0, 20.0], [10.0, 20.0], [20.0, 20.0], [20.0, 20.0]])
    direction = np.array([[1, 0], [1, 1], [1, 1], [1, 1]], dtype=np.int8)
    res = run_portfolio(bars, SignalPlan(direction, "percent_equity", 25.0), initial_cash=100.0)
    # Bar 1: A gets 25 of 100 -> 2.5. Bar 2 (open 10, 20): V = 100, B gets 25 -> 1.25; A unchanged.
    assert res.positions_at(np.arange(4)).tolist() == [[0, 0], [2.5, 0], [2.5, 1.25], [2.5, 1.25]]


def test_rebalance_bars_and_calendar():
    ts = MONDAY + DAY * np.arange(70)  # 2024-01-01 .. 2024-03-10, every day
    monthly = rebalance_bars(ts, "monthly")
    assert [str(np.datetime64(int(ts[i]), "s"))[:10] for i in monthly] == [
        "2024-01-01",
        "2024-01-31",
        "2024-02-29",
        "2024-03-10",
    ]
    weekly = rebalance_bars(ts, "weekly")
    assert all((int(ts[i]) // DAY + 3) % 7 == 6 for i in weekly[1:-1])  # Sundays
    assert rebalance_bars(ts, "daily").tolist() == list(range(70))
    weekdays = ts[((ts // DAY + 3) % 7) < 5]
    assert infer_periods_per_year(weekdays) == 252
    assert infer_periods_per_year(ts) == 365
    hourly = MONDAY + 3600 * np.arange(24 * 30)
    assert infer_periods_per_year(hourly) == round(365.25 * 24)


def test_annualisation_follows_the_calendar_unless_given():
    ts = MONDAY + DAY * np.arange(30)
    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (30, 1)), axis=0))
    bars = make(c, c, ts=ts)
    res = run_portfolio(bars, fixed([1.0]), initial_cash=1000.0)
    assert res.periods_per_year == 365
    r = res.equity[1:] / res.equity[:-1] - 1
    assert res.metrics["annual_volatility"] == pytest.approx(np.std(r, ddof=1) * math.sqrt(365), rel=1e-12)
    assert run_portfolio(bars, fixed([1.0]), initial_cash=1000.0, periods_per_year=12).periods_per_year == 12


def test_benchmark_metrics_follow_the_definitions():
    rng = np.random.default_rng(5)
    b = rng.normal(0, 0.01, 300)
    r = 0.5 * b + rng.normal(0.0002, 0.005, 300)
    out = benchmark_metrics(r, b, 252)
    beta = np.cov(r, b, ddof=1)[0, 1] / np.var(b, ddof=1)
    te = np.std(r - b, ddof=1) * math.sqrt(252)
    assert out["beta"] == pytest.approx(beta, rel=1e-12)
    assert out["alpha"] == pytest.approx(np.mean(r - beta * b) * 252, rel=1e-12)
    assert out["tracking_error"] == pytest.approx(te, rel=1e-12)
    assert out["information_ratio"] == pytest.approx(np.mean(r - b) * 252 / te, rel=1e-12)
    same = benchmark_metrics(b, b, 252)
    assert same["beta"] == pytest.approx(1.0) and same["tracking_error"] == 0.0
    assert same["information_ratio"] is None


def test_benchmark_closes_add_metrics_to_a_run():
    rng = np.random.default_rng(8)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (50, 2)), axis=0))
    res = run_portfolio(make(c, c), fixed([0.5, 0.5]), initial_cash=1000.0, benchmark_close=c[:, 0])
    assert {"alpha", "beta", "tracking_error", "information_ratio"} <= set(res.metrics)
    assert res.benchmark_equity[0] == 1000.0


def test_same_inputs_same_outputs_and_hash():
    rng = np.random.default_rng(9)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (60, 3)), axis=0))
    bars = make(c, c)
    plan = WeightPlan(rebalance_bars(bars.ts, "weekly"), np.full((0, 3), 0.0))
    plan = WeightPlan(plan.decision_bars, np.full((plan.decision_bars.size, 3), 0.3))
    one = run_portfolio(bars, plan, initial_cash=1000.0, commission=Commission(rate=0.001))
    two = run_portfolio(bars, plan, initial_cash=1000.0, commission=Commission(rate=0.001))
    assert one.input_hash == two.input_hash and np.array_equal(one.equity, two.equity)
    three = run_portfolio(bars, plan, initial_cash=1000.0, commission=Commission(rate=0.002))
    assert three.input_hash != one.input_hash


# --------------------------------------------------------------------------------------------
# Against the plain-Python loop on random data
# --------------------------------------------------------------------------------------------


def random_bars(n: int, m: int, seed: int, vol: float = 0.02) -> PortfolioBars:
    rng = np.random.default_rng(seed)
    close = 50 * rng.uniform(0.5, 2, m) * np.exp(np.cumsum(rng.normal(0, vol, (n, m)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0, vol / 2, (n, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol, (n, m))))
    return make(
        open_, close, high, low, ts=MONDAY + DAY * np.arange(n), symbols=tuple(f"S{i}" for i in range(m))
    )


def assert_matches_reference(res, ref) -> None:
    np.testing.assert_allclose(res.equity, ref.equity, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.cash, ref.cash, rtol=1e-9, atol=1e-9)
    assert res.fills == ref.fills
    key = lambda t: (t.exit_bar is None, t.exit_bar or 0, t.entry_bar, t.symbol)  # noqa: E731
    got, want = sorted(res.trades, key=key), sorted(ref.trades, key=key)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g.symbol, g.side, g.entry_bar, g.exit_bar, g.exit_reason) == (
            w.symbol,
            w.side,
            w.entry_bar,
            w.exit_bar,
            w.exit_reason,
        )
        for name in ("quantity", "entry_price", "exit_price", "pnl", "commission"):
            a, b = getattr(g, name), getattr(w, name)
            if b is None:
                assert a is None
            else:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), name


CASES = [
    {"rebalance": "daily", "commission": Commission(rate=0.001), "slippage_bps": 5.0},
    {"rebalance": "weekly", "commission": Commission(rate=0.002, fixed=1.0, minimum=3.0)},
    {"rebalance": "monthly", "commission": Commission(minimum=2.0), "whole_units": True},
    {"rebalance": "weekly", "allow_short": True, "exits": Exits(stop_loss_pct=4, take_profit_pct=6)},
    {"rebalance": "daily", "exits": Exits(trailing_stop_pct=3, stop_loss_pct=5), "slippage_bps": 10.0},
    {"rebalance": "weekly", "allow_short": True, "exits": Exits(trailing_stop_pct=4), "whole_units": True},
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_weights_agree_with_the_loop_on_random_data(seed, case):
    opts = dict(CASES[case])
    rebalance = opts.pop("rebalance")
    bars = random_bars(160, 5, seed * 10 + case)
    rng = np.random.default_rng(seed)
    dbars = rebalance_bars(bars.ts, rebalance)
    w = rng.uniform(-0.19 if opts.get("allow_short") else 0.0, 0.19, (dbars.size, 5))
    w[rng.uniform(size=w.shape) < 0.2] = 0.0
    plan = WeightPlan(dbars, w)
    lots = [1.0, 2.0, 0.5, 5.0, 1.0] if opts.get("whole_units") else None
    opts.setdefault("commission", Commission(rate=0.001))
    res = run_portfolio(bars, plan, initial_cash=10_000.0, lot_size=lots, **opts)
    ref = reference_portfolio(bars, plan, initial_cash=10_000.0, lot_size=lots, **opts)
    assert_matches_reference(res, ref)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("sizing", ["equal_weight", "percent_equity"])
def test_signals_agree_with_the_loop_on_random_data(seed, sizing):
    bars = random_bars(200, 4, 100 + seed)
    rng = np.random.default_rng(seed)
    # Runs of random lengths, so entries, exits and reversals all occur.
    direction = np.repeat(rng.integers(-1, 2, (40, 4)), 5, axis=0).astype(np.int8)
    exits = Exits(stop_loss_pct=5, trailing_stop_pct=6, take_profit_pct=8) if seed % 2 else None
    kwargs = dict(
        initial_cash=5_000.0,
        commission=Commission(rate=0.001, minimum=1.0),
        slippage_bps=3.0,
        allow_short=seed > 2,
        exits=exits,
    )
    plan = SignalPlan(direction, sizing, 30.0)
    res = run_portfolio(bars, plan, **kwargs)
    ref = reference_portfolio(bars, plan, **kwargs)
    assert_matches_reference(res, ref)


# --------------------------------------------------------------------------------------------
# Plans built from API allocations
# --------------------------------------------------------------------------------------------


def test_build_plan_for_each_allocation_form():
    from app.domain.backtesting.portfolio_service import build_plan
    from app.domain.backtesting.rules_lang import evaluate, parse_condition
    from app.domain.backtesting.strategies import STRATEGIES, parse_params
    from app.domain.backtesting.strategies.base import hold_events

    bars = random_bars(120, 3, 7)
    day = lambda i: str(np.datetime64(int(bars.ts[i]), "s")) + "Z"  # noqa: E731
    plan = build_plan(bars, {"type": "target_weights", "weights": {"S1": 0.5}, "rebalance": "monthly"})
    assert plan.decision_bars.tolist() == rebalance_bars(bars.ts, "monthly").tolist()
    assert plan.weights[0].tolist() == [0.0, 0.5, 0.0]
    schedule = [
        {"ts": day(10), "weights": {"S0": 1.0}},
        {"ts": day(20), "weights": {"S2": 0.5}},
        {"ts": day(20)[:-1] + "Z", "weights": {"S1": 0.25}},  # same bar: the later entry decides
    ]
    plan = build_plan(bars, {"type": "target_weights", "schedule": schedule})
    assert plan.decision_bars.tolist() == [10, 20]
    assert plan.weights.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.25, 0.0]]
    # Entries dated before the data: the last of them is in force from the first bar.
    before = [
        {"ts": "2000-01-01T00:00:00Z", "weights": {"S2": 1.0}},
        {"ts": "2001-01-01T00:00:00Z", "weights": {"S1": 1.0}},
        *schedule,
    ]
    plan = build_plan(bars, {"type": "target_weights", "schedule": before})
    assert plan.decision_bars.tolist() == [0, 10, 20]
    assert plan.weights.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.25, 0.0]]

    params = {"fast": 5, "slow": 12, "allow_short": False}
    plan = build_plan(bars, {"type": "signals", "strategy": "sma_cross", "params": params})
    want = [
        STRATEGIES["sma_cross"].signals(bars.column(j), parse_params("sma_cross", params)) for j in range(3)
    ]
    assert plan.direction.tolist() == np.column_stack(want).tolist() and plan.sizing == "equal_weight"

    rules = {
        "type": "rules",
        "entry": "close > sma(close, 10)",
        "exit": "close < sma(close, 5)",
        "sizing": "percent_equity",
        "percent": 20,
    }
    plan = build_plan(bars, rules)
    entry, exit_ = parse_condition(rules["entry"]), parse_condition(rules["exit"])
    for j in range(3):
        s = bars.series(j)
        assert (
            plan.direction[:, j].tolist()
            == hold_events(120, (evaluate(entry, s), 1), (evaluate(exit_, s), 0)).tolist()
        )
    assert (plan.sizing, plan.percent) == ("percent_equity", 20.0)
