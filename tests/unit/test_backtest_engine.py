"""Backtest engine: fills, costs, sizing, open positions, determinism, and agreement with the loop."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.backtesting.downsample import equity_downsample
from app.domain.backtesting.engine import Bars, compute_input_hash, run_backtest, run_strategy
from app.domain.backtesting.strategies import STRATEGIES, parse_params
from tests.unit.engine_reference import run_backtest_loop

T0 = 1_700_000_000


def make_bars(opens, closes) -> Bars:
    o = np.asarray(opens, dtype=np.float64)
    c = np.asarray(closes, dtype=np.float64)
    return Bars(
        ts=T0 + 60 * np.arange(o.size, dtype=np.int64),
        open=o,
        high=np.maximum(o, c),
        low=np.minimum(o, c),
        close=c,
        volume=np.ones(o.size),
    )


def gbm_bars(n: int, seed: int, vol: float = 0.01) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    prev = np.concatenate(([100.0], close[:-1]))
    open_ = prev * np.exp(rng.normal(0.0, vol / 3, n))  # gaps, so open != previous close
    return Bars(
        ts=T0 + 60 * np.arange(n, dtype=np.int64),
        open=open_,
        high=np.maximum(open_, close) * 1.002,
        low=np.minimum(open_, close) * 0.998,
        close=close,
        volume=rng.uniform(1, 100, n),
    )


# --------------------------------------------------------------------------------------------
# Fills, timing and costs on hand-built series
# --------------------------------------------------------------------------------------------


def test_signal_at_t_fills_at_next_open_and_open_position_is_marked():
    bars = make_bars([10, 20, 30, 40], [11, 21, 31, 41])
    res = run_backtest(bars, np.array([1, 1, 1, 1]), initial_cash=100.0, commission=0.0)
    # Decided at bar 0's close, filled at bar 1's open (20), not at bar 0's close (11).
    assert len(res.trades) == 1
    t = res.trades[0]
    assert (t.entry_bar, t.entry_ts, t.entry_price, t.quantity) == (1, T0 + 60, 20.0, 5.0)
    assert t.is_open and t.exit_ts is None and t.exit_price is None and t.exit_bar is None
    assert t.pnl == 5 * 41 - 100.0  # marked at the last close
    assert t.return_pct == pytest.approx(105.0 / 100.0)
    assert res.equity.tolist() == [100.0, 105.0, 155.0, 205.0]
    assert res.position.tolist() == [0.0, 5.0, 5.0, 5.0]
    assert res.metrics["final_equity"] == 205.0
    assert res.metrics["open_trades"] == 1
    assert res.metrics["trades"] == 0  # trade statistics count closed trades
    assert res.metrics["exposure_pct"] == pytest.approx(3 / 4)


def test_signal_on_last_bar_is_not_acted_on():
    bars = make_bars([10, 20, 30, 40], [11, 21, 31, 41])
    res = run_backtest(bars, np.array([0, 0, 0, 1]), initial_cash=100.0, commission=0.0)
    assert res.trades == []
    assert res.equity.tolist() == [100.0] * 4
    assert res.metrics["total_return"] == 0.0


def test_commission_and_sizing_arithmetic():
    bars = make_bars([30, 33, 35, 40, 41], [31, 34, 36, 39, 42])
    res = run_backtest(bars, np.array([1, 1, 0, 0, 0]), initial_cash=1000.0, commission=0.01)
    (t,) = res.trades
    # floor(1000 / (33 * 1.01)) = floor(30.003) = 30 shares; cost 990 + 9.90 fee, cash left 0.10.
    assert t.quantity == 30.0
    assert t.entry_price == 33.0 and t.entry_bar == 1
    # target[2] = 0 -> sold at bar 3's open: 1200 - 12.00 fee.
    assert t.exit_price == 40.0 and t.exit_bar == 3 and t.exit_ts == T0 + 180
    assert t.commission == pytest.approx(9.9 + 12.0, rel=1e-12)
    assert t.pnl == pytest.approx(1188.0 - 999.9, rel=1e-12)
    assert t.return_pct == pytest.approx(188.1 / 990.0, rel=1e-12)
    assert not t.is_open
    np.testing.assert_allclose(res.equity, [1000.0, 0.1 + 30 * 34, 0.1 + 30 * 36, 1188.1, 1188.1], rtol=1e-12)
    assert res.metrics["final_equity"] == pytest.approx(1188.1, rel=1e-12)
    assert res.metrics["trades"] == 1 and res.metrics["win_rate"] == 1.0
    assert res.metrics["profit_factor"] is None  # no losing trade


def test_commission_is_included_in_sizing():
    # 100 / 10 = 10 shares without commission, but 10 * 10 * 1.01 = 101 > 100 -> 9.
    bars = make_bars([10, 10, 10], [10, 10, 10])
    assert run_backtest(bars, np.ones(3), initial_cash=100.0, commission=0.0).trades[0].quantity == 10.0
    assert run_backtest(bars, np.ones(3), initial_cash=100.0, commission=0.01).trades[0].quantity == 9.0


def test_lot_size_rounds_down_to_whole_lots():
    bars = make_bars([30, 30, 30], [30, 30, 30])
    res = run_backtest(bars, np.ones(3), initial_cash=100.0, commission=0.0, lot_size=0.5)
    assert res.trades[0].quantity == 3.0  # 100/30 = 3.33 -> 6 lots of 0.5
    res = run_backtest(bars, np.ones(3), initial_cash=100.0, commission=0.0, lot_size=2.0)
    assert res.trades[0].quantity == 2.0  # 3.33 -> 1 lot of 2


def test_slippage_moves_fills_against_the_trader():
    bars = make_bars([100, 100, 100, 100, 100], [100] * 5)
    long = run_backtest(
        bars, np.array([1, 1, 0, 0, 0]), initial_cash=10_000.0, commission=0.0, slippage_bps=100
    )
    (t,) = long.trades
    assert t.entry_price == pytest.approx(101.0)  # buy pays more
    assert t.exit_price == pytest.approx(99.0)  # sell receives less
    assert t.quantity == 99.0  # floor(10000 / 101)
    assert t.pnl == pytest.approx(99 * (99.0 - 101.0))
    short = run_backtest(
        bars,
        np.array([-1, -1, 0, 0, 0]),
        initial_cash=10_000.0,
        commission=0.0,
        slippage_bps=100,
        allow_short=True,
    )
    (s,) = short.trades
    assert s.side == "short"
    assert s.entry_price == pytest.approx(99.0)  # short sale receives less
    assert s.exit_price == pytest.approx(101.0)  # buy-to-cover pays more
    assert s.pnl == pytest.approx(101 * (99.0 - 101.0))  # floor(10000 / 99) = 101


def test_short_reversal_closes_then_opens_with_cash_after_closing():
    bars = make_bars([10, 10, 12, 11, 8], [10, 11, 13, 9, 8])
    res = run_backtest(
        bars, np.array([1, -1, -1, 0, 0]), initial_cash=100.0, commission=0.0, allow_short=True
    )
    long, short = res.trades
    assert (long.side, long.quantity, long.entry_bar, long.exit_bar) == ("long", 10.0, 1, 2)
    assert long.pnl == 20.0  # 10 x (12 - 10)
    # Cash after closing is 120 -> short floor(120 / 12) = 10 at 12, covered at bar 4's open (8).
    assert (short.side, short.quantity, short.entry_bar, short.exit_bar) == ("short", 10.0, 2, 4)
    assert short.entry_price == 12.0 and short.exit_price == 8.0
    assert short.pnl == 40.0
    assert res.equity.tolist() == [100.0, 110.0, 240.0 - 130.0, 240.0 - 90.0, 160.0]
    assert res.position.tolist() == [0.0, 10.0, -10.0, -10.0, 0.0]
    assert res.metrics["trades"] == 2 and res.metrics["expectancy"] == 30.0


def test_without_allow_short_a_short_target_means_flat():
    bars = make_bars([10, 10, 12, 11, 8], [10, 11, 13, 9, 8])
    res = run_backtest(bars, np.array([1, -1, -1, 0, 0]), initial_cash=100.0, commission=0.0)
    (t,) = res.trades
    assert t.side == "long" and t.exit_bar == 2
    assert res.equity.tolist() == [100.0, 110.0, 120.0, 120.0, 120.0]


def test_open_short_at_end_is_marked_to_market():
    bars = make_bars([10, 10, 10], [10, 9, 7])
    res = run_backtest(bars, np.array([-1, -1, -1]), initial_cash=1000.0, commission=0.001, allow_short=True)
    (t,) = res.trades
    assert t.is_open and t.side == "short"
    assert t.quantity == 99.0  # floor(1000 / 10.01)
    fee = 99 * 10 * 0.001
    assert t.commission == pytest.approx(fee)
    assert t.pnl == pytest.approx(990.0 - fee - 99 * 7.0)
    assert res.metrics["final_equity"] == pytest.approx(1000.0 + t.pnl)


def test_unaffordable_entry_is_retried_while_the_target_holds():
    bars = make_bars([200, 150, 120, 90, 80], [200, 150, 120, 90, 80])
    res = run_backtest(bars, np.ones(5), initial_cash=100.0, commission=0.0)
    (t,) = res.trades
    assert (t.entry_bar, t.entry_price, t.quantity) == (3, 90.0, 1.0)
    # But not across a change of target: wanted only while it could not be afforded.
    res = run_backtest(bars, np.array([1, 1, 0, 0, 0]), initial_cash=100.0, commission=0.0)
    assert res.trades == []


def test_short_is_stopped_out_when_equity_is_exhausted():
    bars = make_bars([10, 10, 12, 15, 25, 30], [10, 11, 14, 19, 26, 30])
    res = run_backtest(bars, np.full(6, -1), initial_cash=100.0, commission=0.0, allow_short=True)
    (t,) = res.trades
    # Short 10 @ 10 (cash 200). Equity at closes: 90, 60, 10, then 200 - 260 < 0 at bar 4: bought back
    # at that close; no cash is left to sell short again.
    assert (t.exit_bar, t.exit_price, t.pnl, t.is_open) == (4, 26.0, -160.0, False)
    assert res.equity.tolist() == [100.0, 90.0, 60.0, 10.0, -60.0, -60.0]
    assert res.metrics["total_return"] == -1.0
    assert res.metrics["max_drawdown"] == -1.0
    assert res.metrics["final_equity"] == -60.0


def test_single_bar_and_flat_run():
    res = run_backtest(make_bars([10], [10]), np.array([1]), initial_cash=50.0, commission=0.0)
    assert res.trades == [] and res.equity.tolist() == [50.0]
    assert res.metrics["periods"] == 0 and res.metrics["sharpe"] is None
    assert res.metrics["exposure_pct"] == 0.0


def test_pnl_of_all_trades_adds_up_to_equity_change():
    bars = gbm_bars(5000, 11)
    res = run_strategy(
        bars,
        "sma_cross",
        {"fast": 5, "slow": 20, "allow_short": True},
        initial_cash=10_000.0,
        commission=0.0005,
        slippage_bps=2.0,
    )
    assert len(res.trades) > 50 and res.trades[-1].is_open
    total = sum(t.pnl for t in res.trades)
    assert 10_000.0 + total == pytest.approx(res.metrics["final_equity"], rel=1e-9)
    assert sum(t.commission for t in res.trades) > 0
    # Fills are always at a bar's open, adjusted by 2 bps against the trader.
    for t in res.trades[:20]:
        o = bars.open[t.entry_bar]
        assert t.entry_price == pytest.approx(o * (1.0002 if t.side == "long" else 0.9998), rel=1e-12)


def test_metrics_keys_are_merged():
    res = run_strategy(gbm_bars(300, 1), "sma_cross", {}, initial_cash=1000.0, commission=0.001)
    for key in (
        "sharpe",
        "max_drawdown",
        "cvar_99",
        "win_rate",
        "exposure_pct",
        "final_equity",
        "initial_cash",
    ):
        assert key in res.metrics
    assert res.metrics["initial_cash"] == 1000.0
    assert res.metrics["periods"] == 299


def test_progress_is_reported_monotonically():
    seen: list[float] = []
    run_strategy(
        gbm_bars(5000, 2),
        "sma_cross",
        {"fast": 3, "slow": 7},
        initial_cash=1e4,
        commission=0.0,
        progress=seen.append,
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert len(seen) > 5
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_cash": 0.0, "commission": 0.0},
        {"initial_cash": float("nan"), "commission": 0.0},
        {"initial_cash": 100.0, "commission": -0.01},
        {"initial_cash": 100.0, "commission": 1.0},
        {"initial_cash": 100.0, "commission": 0.0, "slippage_bps": -1.0},
        {"initial_cash": 100.0, "commission": 0.0, "lot_size": 0.0},
        {"initial_cash": 100.0, "commission": 0.0, "periods_per_year": 0},
    ],
)
def test_invalid_costs_raise(kwargs):
    with pytest.raises(ValueError):
        run_backtest(make_bars([1, 1], [1, 1]), np.zeros(2), **kwargs)


def test_invalid_target_raises():
    bars = make_bars([1, 1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        run_backtest(bars, np.array([0, 2, 0]), initial_cash=1.0, commission=0.0)
    with pytest.raises(ValueError, match="shape"):
        run_backtest(bars, np.zeros(2), initial_cash=1.0, commission=0.0)
    with pytest.raises(ValueError):
        run_backtest(bars, np.array([0.0, np.nan, 0.0]), initial_cash=1.0, commission=0.0)


@pytest.mark.parametrize(
    "change",
    [
        {"ts": np.array([0, 60, 60])},
        {"ts": np.array([0, 120, 60])},
        {"close": np.array([1.0, 0.0, 1.0])},
        {"open": np.array([1.0, np.inf, 1.0])},
        {"volume": np.array([1.0, 1.0])},
    ],
)
def test_invalid_bars_raise(change):
    fields = {
        "ts": np.array([0, 60, 120]),
        "open": np.ones(3),
        "high": np.ones(3),
        "low": np.ones(3),
        "close": np.ones(3),
        "volume": np.ones(3),
    }
    fields.update(change)
    with pytest.raises(ValueError):
        Bars(**fields)


def test_no_bars_raise():
    empty = Bars(ts=np.empty(0), open=[], high=[], low=[], close=[], volume=[])
    assert len(empty) == 0
    with pytest.raises(ValueError, match="no bars"):
        run_backtest(empty, np.zeros(0), initial_cash=1.0, commission=0.0)


# --------------------------------------------------------------------------------------------
# Determinism and input hash
# --------------------------------------------------------------------------------------------


def test_same_inputs_same_hash_and_identical_results():
    kwargs = {"initial_cash": 10_000.0, "commission": 0.001, "slippage_bps": 5.0}
    a = run_strategy(gbm_bars(3000, 3), "ema_cross", {"fast": 5, "slow": 20}, **kwargs)
    b = run_strategy(gbm_bars(3000, 3), "ema_cross", {"fast": 5, "slow": 20}, **kwargs)
    assert a.input_hash == b.input_hash
    assert len(a.input_hash) == 64 and int(a.input_hash, 16) >= 0
    assert a.trades == b.trades and len(a.trades) > 0
    np.testing.assert_array_equal(a.equity, b.equity)
    assert a.metrics == b.metrics


def test_hash_changes_with_every_input_and_ignores_param_spelling():
    bars = gbm_bars(200, 4)
    costs = {"initial_cash": 1000.0, "commission": 0.001}
    base = compute_input_hash(bars, "sma_cross", {"fast": 10, "slow": 30}, costs)
    assert base == compute_input_hash(
        bars, "sma_cross", {"slow": 30, "fast": 10}, dict(reversed(costs.items()))
    )
    assert base != compute_input_hash(bars, "ema_cross", {"fast": 10, "slow": 30}, costs)
    assert base != compute_input_hash(bars, "sma_cross", {"fast": 11, "slow": 30}, costs)
    assert base != compute_input_hash(
        bars, "sma_cross", {"fast": 10, "slow": 30}, {**costs, "commission": 0.002}
    )
    close = bars.close.copy()
    close[-1] *= 1.0000001
    changed = Bars(ts=bars.ts, open=bars.open, high=bars.high, low=bars.low, close=close, volume=bars.volume)
    assert base != compute_input_hash(changed, "sma_cross", {"fast": 10, "slow": 30}, costs)
    # run_strategy hashes the parsed params: defaults spelled out or omitted are the same run.
    kwargs = {"initial_cash": 1000.0, "commission": 0.001}
    assert (
        run_strategy(bars, "sma_cross", {}, **kwargs).input_hash
        == run_strategy(
            bars, "sma_cross", {"fast": 10, "slow": 30, "allow_short": False}, **kwargs
        ).input_hash
        != run_strategy(bars, "sma_cross", {}, **{**kwargs, "slippage_bps": 1.0}).input_hash
    )


# --------------------------------------------------------------------------------------------
# Vectorised engine == plain-Python loop
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "fast", "slow", "allow_short", "commission", "slippage_bps", "lot_size"),
    [
        (0, 2, 5, False, 0.0, 0.0, 1.0),
        (1, 5, 20, False, 0.001, 5.0, 1.0),
        (2, 10, 30, True, 0.0005, 2.0, 1.0),
        (3, 3, 50, True, 0.002, 10.0, 0.01),
        (4, 20, 100, False, 0.0, 0.0, 10.0),
        (5, 1, 2, True, 0.001, 1.0, 1.0),
    ],
)
def test_vectorised_engine_matches_loop_reference(
    seed, fast, slow, allow_short, commission, slippage_bps, lot_size
):
    bars = gbm_bars(4000, seed, vol=0.015)
    costs = {
        "initial_cash": 10_000.0,
        "commission": commission,
        "slippage_bps": slippage_bps,
        "lot_size": lot_size,
    }
    vec = run_strategy(bars, "sma_cross", {"fast": fast, "slow": slow, "allow_short": allow_short}, **costs)
    ref = run_backtest_loop(bars, fast=fast, slow=slow, allow_short=allow_short, **costs)
    assert len(vec.trades) > 10
    assert vec.trades == ref.trades  # bit-identical, not approximately equal
    np.testing.assert_array_equal(vec.equity, ref.equity)
    np.testing.assert_array_equal(vec.position, ref.position)
    assert vec.metrics == ref.metrics
    assert vec.input_hash == ref.input_hash
    if allow_short:
        assert any(t.side == "short" for t in vec.trades)


def test_loop_matches_when_entries_are_unaffordable_and_shorts_blow_up():
    # A violent series with a tiny account exercises entry retries; a gap that triples the price while
    # short then forces a stop-out. Both paths must agree throughout.
    rng = np.random.default_rng(9)
    n = 3000
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.08, n)))
    open_ = np.concatenate(([50.0], close[:-1])) * np.exp(rng.normal(0.0, 0.05, n))
    params = {"fast": 2, "slow": 6, "allow_short": True}
    costs = {"initial_cash": 120.0, "commission": 0.001, "slippage_bps": 3.0}

    def bars_of(o, c):
        return Bars(
            ts=np.arange(n) * 60,
            open=o,
            high=np.maximum(o, c),
            low=np.minimum(o, c),
            close=c,
            volume=np.ones(n),
        )

    first = run_strategy(bars_of(open_, close), "sma_cross", params, **costs)
    k = int(
        np.flatnonzero((first.position[:-1] < 0) & (first.position[1:] < 0) & (np.arange(n - 1) > 300))[0]
    )
    close[k + 1 :] *= 3.0
    open_[k + 2 :] *= 3.0
    bars = bars_of(open_, close)

    vec = run_strategy(bars, "sma_cross", params, **costs)
    ref = run_backtest_loop(bars, **params, **costs)
    assert vec.trades == ref.trades
    np.testing.assert_array_equal(vec.equity, ref.equity)
    assert vec.metrics == ref.metrics

    target = STRATEGIES["sma_cross"].signals(bars, parse_params("sma_cross", params))
    changes = set((np.flatnonzero(np.diff(target)) + 2).tolist())  # bars where the wanted side changes
    assert sum(t.entry_bar not in changes for t in vec.trades) >= 3, "data must exercise retried entries"
    stop = vec.trades[-1]
    assert (stop.side, stop.exit_bar, stop.is_open) == ("short", k + 1, False)
    assert stop.exit_price == pytest.approx(close[k + 1] * 1.0003)
    assert vec.equity[-1] <= 0 and vec.metrics["total_return"] == -1.0


# --------------------------------------------------------------------------------------------
# Downsampling
# --------------------------------------------------------------------------------------------


def test_equity_downsample_keeps_ends_and_extremes():
    rng = np.random.default_rng(5)
    equity = 1000 + np.cumsum(rng.normal(0, 1, 10_001))
    ts = T0 + 60 * np.arange(equity.size)
    ds_ts, ds_eq = equity_downsample(ts, equity, 200)
    assert len(ds_ts) <= 200 and len(ds_ts) == len(ds_eq)
    assert ds_ts[0] == ts[0] and ds_ts[-1] == ts[-1]
    assert ds_eq[0] == equity[0] and ds_eq[-1] == equity[-1]
    assert ds_eq.min() == equity.min() and ds_eq.max() == equity.max()
    assert np.all(np.diff(ds_ts) > 0)
    # Every kept point is a real (ts, equity) pair.
    pos = np.searchsorted(ts, ds_ts)
    np.testing.assert_array_equal(equity[pos], ds_eq)


def test_equity_downsample_short_series_and_limits():
    ts = np.arange(5)
    eq = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    out_ts, out_eq = equity_downsample(ts, eq, 10)
    assert out_ts.tolist() == [0, 1, 2, 3, 4] and out_eq.tolist() == eq.tolist()
    out_ts, out_eq = equity_downsample(ts, eq, 3)
    assert out_ts.tolist() == [0, 4]
    out_ts, out_eq = equity_downsample(ts, eq, 4)  # one bucket over the 3 inner points: min 2, max 5
    assert out_ts.tolist() == [0, 2, 3, 4]
    with pytest.raises(ValueError):
        equity_downsample(ts, eq, 1)
    with pytest.raises(ValueError):
        equity_downsample(ts, eq[:-1], 10)
