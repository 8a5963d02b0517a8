"""Strategy registry, parameter validation, indicators and signals (pure numpy, no I/O)."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from app.domain.backtesting.engine import Bars
from app.domain.backtesting.strategies import (
    STRATEGIES,
    UnknownStrategyError,
    params_json_schema,
    parse_params,
)
from app.domain.backtesting.strategies.base import (
    crosses_above,
    crosses_below,
    ema,
    hold_events,
    rolling_std,
    sma,
)
from app.domain.backtesting.strategies.rsi_reversion import rsi
from app.domain.backtesting.strategies.sma_cross import SmaCrossParams


def bars_from_closes(closes) -> Bars:
    c = np.asarray(closes, dtype=np.float64)
    return Bars(
        ts=np.arange(c.size, dtype=np.int64) * 60,
        open=c,
        high=c,
        low=c,
        close=c,
        volume=np.ones(c.size),
    )


def gbm_bars(n: int, seed: int, vol: float = 0.01) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    return bars_from_closes(close)


# --------------------------------------------------------------------------------------------
# Registry and parameters
# --------------------------------------------------------------------------------------------


def test_registry_contents():
    assert set(STRATEGIES) == {
        "sma_cross",
        "ema_cross",
        "rsi_reversion",
        "bollinger_breakout",
        "momentum",
        "buy_and_hold",
    }
    for name, strategy in STRATEGIES.items():
        assert strategy.name == name
        assert len(strategy.description) > 20
        assert isinstance(strategy.default_params(), strategy.params_type)
        assert strategy.periods_needed() >= 1


def test_parse_params_fills_defaults_and_coerces():
    assert parse_params("sma_cross", {}) == SmaCrossParams(fast=10, slow=30, allow_short=False)
    assert parse_params("sma_cross", None) == SmaCrossParams()
    assert parse_params("sma_cross", {"fast": "5", "slow": 20.0}) == SmaCrossParams(fast=5, slow=20)
    rsi_params = parse_params("rsi_reversion", {"lower": 25})
    assert (rsi_params.period, rsi_params.lower, rsi_params.upper) == (14, 25.0, 70.0)
    assert parse_params("bollinger_breakout", {}).k == 2.0
    assert parse_params("momentum", {}).lookback == 20


def test_fast_must_be_less_than_slow_and_message_names_the_field():
    with pytest.raises(ValueError, match="`fast`") as exc:
        parse_params("sma_cross", {"fast": 30, "slow": 10})
    assert "`slow`" in str(exc.value)
    with pytest.raises(ValueError, match="`fast`"):
        parse_params("ema_cross", {"fast": 26, "slow": 26})
    with pytest.raises(ValueError, match="`fast`"):
        SmaCrossParams(fast=5, slow=5)
    with pytest.raises(ValueError, match="`lower`"):
        parse_params("rsi_reversion", {"lower": 70, "upper": 30})


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("sma_cross", {"fast": 0}, "$.fast"),
        ("sma_cross", {"slow": 100_000}, "$.slow"),
        ("sma_cross", {"fast": "ten"}, "$.fast"),
        ("rsi_reversion", {"upper": 100}, "$.upper"),
        ("bollinger_breakout", {"k": 0}, "$.k"),
        ("momentum", {"lookback": -3}, "$.lookback"),
    ],
)
def test_meta_constraints_are_enforced(name, params, field):
    with pytest.raises(msgspec.ValidationError, match=field.replace("$", r"\$")):
        parse_params(name, params)


def test_unknown_parameter_and_strategy_are_rejected():
    with pytest.raises(ValueError, match="fst"):
        parse_params("sma_cross", {"fst": 3})
    with pytest.raises(UnknownStrategyError, match="nope"):
        parse_params("nope", {})
    assert issubclass(UnknownStrategyError, ValueError)
    with pytest.raises(UnknownStrategyError):
        params_json_schema("nope")


def test_params_json_schema_has_constraints_and_defaults():
    schema = params_json_schema("sma_cross")
    props = schema["$defs"]["SmaCrossParams"]["properties"]
    assert props["fast"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 10,
        "description": "Fast SMA length in bars",
    }
    assert props["slow"]["default"] == 30
    assert props["allow_short"]["default"] is False
    assert schema["$defs"]["SmaCrossParams"]["additionalProperties"] is False
    for name in STRATEGIES:
        assert "$defs" in params_json_schema(name)


def test_signals_rejects_params_of_another_strategy():
    with pytest.raises(TypeError):
        STRATEGIES["ema_cross"].signals(gbm_bars(50, 0), SmaCrossParams())


# --------------------------------------------------------------------------------------------
# Indicators against naive per-bar implementations
# --------------------------------------------------------------------------------------------


def test_sma_matches_window_mean_and_is_nan_in_warm_up():
    x = np.random.default_rng(1).normal(100, 5, 500)
    out = sma(x, 7)
    assert np.isnan(out[:6]).all()
    expected = [x[t - 6 : t + 1].mean() for t in range(6, 500)]
    np.testing.assert_allclose(out[6:], expected, rtol=1e-12)
    assert np.isnan(sma(x[:3], 7)).all()


def test_rolling_std_matches_population_std():
    x = np.random.default_rng(2).normal(1000, 3, 400)
    out = rolling_std(x, 20)
    assert np.isnan(out[:19]).all()
    expected = [x[t - 19 : t + 1].std(ddof=0) for t in range(19, 400)]
    np.testing.assert_allclose(out[19:], expected, rtol=1e-8)


def naive_ema(x, n, alpha):
    out = [math.nan] * len(x)
    y = sum(x[:n]) / n
    out[n - 1] = y
    for t in range(n, len(x)):
        y = (1 - alpha) * y + alpha * x[t]
        out[t] = y
    return out


@pytest.mark.parametrize(("n", "alpha"), [(30, None), (3, None), (14, 1 / 14), (1, None)])
def test_ema_matches_recursion_across_blocks(n, alpha):
    # 20k points span several closed-form blocks for n=30 (block ~5k), so block chaining is exercised.
    x = 100.0 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 20_000)))
    a = 2 / (n + 1) if alpha is None else alpha
    out = ema(x, n, alpha=alpha)
    expected = naive_ema(x.tolist(), n, a)
    assert np.isnan(out[: n - 1]).all()
    np.testing.assert_allclose(out[n - 1 :], expected[n - 1 :], rtol=1e-10)


def naive_rsi(closes, period):
    out = [math.nan] * len(closes)
    deltas = [closes[i] - closes[i - 1] for i in range(1, len(closes))]
    gains = [max(d, 0.0) for d in deltas]
    losses = [max(-d, 0.0) for d in deltas]
    ag = sum(gains[:period]) / period
    al = sum(losses[:period]) / period
    for i in range(period, len(closes)):
        if i > period:
            ag = (ag * (period - 1) + gains[i - 1]) / period
            al = (al * (period - 1) + losses[i - 1]) / period
        out[i] = 100.0 if al == 0 else 100.0 - 100.0 / (1.0 + ag / al)
    return out


def test_wilder_rsi_matches_textbook_recursion():
    closes = gbm_bars(600, 4).close
    out = rsi(closes, 14)
    expected = naive_rsi(closes.tolist(), 14)
    assert np.isnan(out[:14]).all()
    np.testing.assert_allclose(out[14:], expected[14:], rtol=1e-9)


def test_rsi_edge_values():
    assert rsi(np.arange(1.0, 30.0), 14)[-1] == 100.0  # only gains
    assert rsi(np.full(30, 5.0), 14)[-1] == 50.0  # flat: neutral
    assert rsi(np.arange(30.0, 1.0, -1.0), 14)[-1] == pytest.approx(0.0)


def test_crosses_are_strict():
    a = np.array([1.0, 2.0, 3.0, 2.0, 1.0, 3.0])
    b = np.full(6, 2.0)
    # 1 -> 2 -> 3 touches b at index 1: neither step is a strict cross; 2 -> 1 -> 3 is.
    assert crosses_above(a, b).tolist() == [False, False, False, False, False, True]
    assert crosses_below(a, b).tolist() == [False, False, False, False, False, False]
    a2 = np.array([3.0, 1.0, np.nan, 3.0])
    assert crosses_below(a2, np.full(4, 2.0)).tolist() == [False, True, False, False]
    assert not crosses_above(a2, np.full(4, 2.0)).any()  # NaN at t-1 is not "defined"


def test_hold_events_forward_fills():
    up = np.array([False, True, False, False, False, False])
    down = np.array([False, False, False, True, False, False])
    assert hold_events(6, (up, 1), (down, -1)).tolist() == [0, 1, 1, -1, -1, -1]
    assert hold_events(3, (np.zeros(3, bool), 1)).tolist() == [0, 0, 0]


# --------------------------------------------------------------------------------------------
# Strategy signals
# --------------------------------------------------------------------------------------------

# fast=2, slow=3: fast - slow = -.5 -.5 -.17 +.5 +.5 +.5 +.17 -.5 -.5 -.5 from index 2 on:
# a cross-over at 5, a cross-under at 9.
CROSS_CLOSES = [5, 4, 3, 2, 3, 4, 5, 6, 5, 4, 3, 2]


def test_sma_cross_hand_built():
    bars = bars_from_closes(CROSS_CLOSES)
    target = STRATEGIES["sma_cross"].signals(bars, parse_params("sma_cross", {"fast": 2, "slow": 3}))
    assert target.dtype == np.int8
    assert target.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    short = parse_params("sma_cross", {"fast": 2, "slow": 3, "allow_short": True})
    assert STRATEGIES["sma_cross"].signals(bars, short).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, -1, -1, -1]


def test_sma_cross_does_not_buy_an_existing_uptrend():
    # fast > slow from the first defined bar: there is no cross-over, so no position.
    bars = bars_from_closes(np.arange(1.0, 40.0))
    assert not STRATEGIES["sma_cross"].signals(bars, parse_params("sma_cross", {"fast": 2, "slow": 5})).any()


def test_ema_cross_matches_naive_ema_crossover():
    bars = gbm_bars(3000, 5)
    p = parse_params("ema_cross", {"fast": 5, "slow": 21, "allow_short": True})
    closes = bars.close.tolist()
    f = naive_ema(closes, 5, 2 / 6)
    s = naive_ema(closes, 21, 2 / 22)
    want, expected = 0, []
    for t in range(len(closes)):
        if t > 0 and f[t - 1] < s[t - 1] and f[t] > s[t]:
            want = 1
        elif t > 0 and f[t - 1] > s[t - 1] and f[t] < s[t]:
            want = -1
        expected.append(want)
    target = STRATEGIES["ema_cross"].signals(bars, p)
    assert target.tolist() == expected
    assert (target == -1).any() and (target == 1).any()


def test_rsi_reversion_follows_rsi_crosses():
    bars = gbm_bars(3000, 6, vol=0.02)
    p = parse_params("rsi_reversion", {"period": 10, "lower": 35, "upper": 65})
    r = naive_rsi(bars.close.tolist(), 10)
    want, expected = 0, []
    for t in range(len(r)):
        if t > 0 and r[t - 1] > 35 and r[t] < 35:
            want = 1
        elif t > 0 and r[t - 1] < 65 and r[t] > 65:
            want = 0
        expected.append(want)
    target = STRATEGIES["rsi_reversion"].signals(bars, p)
    assert target.tolist() == expected
    assert target.any() and not target.all()
    assert (target >= 0).all()


def test_bollinger_breakout_hand_built():
    # period 3, k 1. Bar 4 window [10, 10, 13]: mid 11, sd sqrt(2), upper 12.41 < 13 -> long.
    # Bar 5 [10, 13, 13]: mid 12, upper 13.41; 13 is inside the band -> hold.
    # Bar 6 [13, 13, 9]: mid 11.67 > 9 -> flat. Bars 2-3: zero-width band, no breakout.
    bars = bars_from_closes([10, 10, 10, 10, 13, 13, 9])
    p = parse_params("bollinger_breakout", {"period": 3, "k": 1.0})
    assert STRATEGIES["bollinger_breakout"].signals(bars, p).tolist() == [0, 0, 0, 0, 1, 1, 0]
    wide = parse_params("bollinger_breakout", {"period": 3, "k": 2.0})  # upper 13.83: no breakout
    assert not STRATEGIES["bollinger_breakout"].signals(bars, wide).any()


def test_bollinger_flat_prices_never_break_out():
    bars = bars_from_closes(np.full(50, 123.456))
    assert not STRATEGIES["bollinger_breakout"].signals(bars, parse_params("bollinger_breakout", {})).any()


def test_momentum_hand_built():
    bars = bars_from_closes([10, 11, 9, 12, 12, 13])
    assert STRATEGIES["momentum"].signals(bars, parse_params("momentum", {"lookback": 1})).tolist() == [
        0,
        1,
        0,
        1,
        0,  # 12 / 12 - 1 = 0 is not > 0
        1,
    ]
    assert STRATEGIES["momentum"].signals(bars, parse_params("momentum", {"lookback": 2})).tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]


def test_buy_and_hold_is_always_long():
    assert STRATEGIES["buy_and_hold"].signals(gbm_bars(10, 0)).tolist() == [1] * 10


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_signals_use_no_future_bars(name):
    """A strategy's decision at t must not change when bars after t are added or altered."""
    strategy = STRATEGIES[name]
    params = {
        "sma_cross": {"fast": 3, "slow": 8, "allow_short": True},
        "ema_cross": {"fast": 3, "slow": 8, "allow_short": True},
        "rsi_reversion": {"period": 5, "lower": 40, "upper": 60},
        "bollinger_breakout": {"period": 6, "k": 1.0},
        "momentum": {"lookback": 4},
        "buy_and_hold": {},
    }[name]
    p = parse_params(name, params)
    full = gbm_bars(400, 7, vol=0.02)
    target = strategy.signals(full, p)
    assert set(np.unique(target).tolist()) <= {-1, 0, 1}
    if name != "buy_and_hold":
        assert len(np.unique(target)) > 1, "test data must make the strategy trade"
    for k in (37, 150, 399):
        prefix = bars_from_closes(full.close[:k])
        np.testing.assert_array_equal(strategy.signals(prefix, p), target[:k])
        # Future shock: a crash right after k leaves decisions up to k unchanged.
        shocked = full.close.copy()
        shocked[k:] *= 0.5
        np.testing.assert_array_equal(strategy.signals(bars_from_closes(shocked), p)[:k], target[:k])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_signal_before_periods_needed(name):
    strategy = STRATEGIES[name]
    p = strategy.default_params()
    target = strategy.signals(gbm_bars(2000, 8, vol=0.02), p)
    first = int(np.flatnonzero(target)[0])
    # periods_needed bars means the earliest signal is at index periods_needed - 1.
    assert first >= strategy.periods_needed(p) - 1


def test_periods_needed_values():
    assert STRATEGIES["sma_cross"].periods_needed(parse_params("sma_cross", {"slow": 50})) == 51
    assert STRATEGIES["momentum"].periods_needed(parse_params("momentum", {"lookback": 5})) == 6
    assert STRATEGIES["buy_and_hold"].periods_needed() == 1


def test_short_input_gives_flat_targets():
    for name, strategy in STRATEGIES.items():
        target = strategy.signals(bars_from_closes([100.0, 101.0]), strategy.default_params())
        assert target.shape == (2,)
        if name != "buy_and_hold":
            assert not target.any(), name
