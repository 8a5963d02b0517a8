"""Performance and trade metrics against hand-written formulas (DOMAIN.md, "Performance analytics")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.analytics.metrics import (
    PERFORMANCE_KEYS,
    TRADE_KEYS,
    performance_metrics,
    trade_metrics,
)

R = [0.1, -0.05, 0.02]
P = 252


def _mean(xs):
    return sum(xs) / len(xs)


def _sample_std(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_hand_computed_three_returns():
    m = performance_metrics(returns=R)

    growth = 1.1 * 0.95 * 1.02  # 1.0659
    mean = _mean(R)
    sd = _sample_std(R)
    cagr = growth ** (P / 3) - 1
    assert m["periods"] == 3
    assert m["total_return"] == pytest.approx(0.0659, rel=1e-12)
    assert m["cagr"] == pytest.approx(cagr, rel=1e-9)
    assert m["annual_volatility"] == pytest.approx(sd * math.sqrt(P), rel=1e-12)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(P), rel=1e-12)
    # Downside deviation averages over all 3 periods, only -0.05 contributes.
    assert m["sortino"] == pytest.approx(mean * math.sqrt(P) / math.sqrt(0.05**2 / 3), rel=1e-12)
    # Wealth 1.1, 1.045, 1.0659: the trough is 1.045 / 1.1 - 1 = -5 %, still under water at the end.
    assert m["max_drawdown"] == pytest.approx(-0.05, rel=1e-12)
    assert m["max_drawdown_duration"] == 2
    assert m["calmar"] == pytest.approx(cagr / 0.05, rel=1e-9)
    # Sorted [-0.05, 0.02, 0.1]; the 5th percentile sits 0.1 of the way from -0.05 to 0.02.
    assert m["var_95"] == pytest.approx(0.05 - 0.1 * 0.07, rel=1e-12)
    assert m["cvar_95"] == pytest.approx(0.05, rel=1e-12)
    assert m["var_99"] == pytest.approx(0.05 - 0.02 * 0.07, rel=1e-12)
    assert m["cvar_99"] == pytest.approx(0.05, rel=1e-12)
    dev = [x - mean for x in R]
    m2 = _mean([d**2 for d in dev])
    assert m["skew"] == pytest.approx(_mean([d**3 for d in dev]) / m2**1.5, rel=1e-12)
    assert m["kurtosis"] == pytest.approx(_mean([d**4 for d in dev]) / m2**2 - 3, rel=1e-12)
    assert m["best_period"] == 0.1
    assert m["worst_period"] == -0.05
    assert set(m) == set(PERFORMANCE_KEYS)


def test_risk_free_rate_enters_sharpe_and_sortino_per_period():
    rf = 0.05
    rf_p = (1 + rf) ** (1 / P) - 1
    a = [x - rf_p for x in R]
    m = performance_metrics(returns=R, risk_free_rate=rf)
    assert m["sharpe"] == pytest.approx(_mean(a) / _sample_std(a) * math.sqrt(P), rel=1e-12)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in a) / 3)
    assert m["sortino"] == pytest.approx(_mean(a) * math.sqrt(P) / downside, rel=1e-12)
    # Only the excess-return metrics move.
    base = performance_metrics(returns=R)
    assert m["sharpe"] < base["sharpe"]
    assert m["total_return"] == base["total_return"]
    assert m["annual_volatility"] == base["annual_volatility"]


def test_periods_per_year_scales_annualised_metrics():
    m = performance_metrics(returns=R, periods_per_year=12)
    assert m["annual_volatility"] == pytest.approx(_sample_std(R) * math.sqrt(12), rel=1e-12)
    assert m["cagr"] == pytest.approx(1.0659**4 - 1, rel=1e-12)


def test_equity_input_equals_its_returns():
    equity = [100.0, 110.0, 104.5, 106.59]
    from_equity = performance_metrics(equity=equity)
    from_returns = performance_metrics(returns=R)
    assert from_equity["periods"] == 3
    for key in PERFORMANCE_KEYS:
        assert from_equity[key] == pytest.approx(from_returns[key], rel=1e-9), key


def test_population_kurtosis_and_skew():
    # Symmetric: skew 0. Population excess kurtosis of 4 evenly spaced points is -1.36
    # (the bias-corrected estimator would give -1.2).
    m = performance_metrics(returns=[0.01, 0.02, 0.03, 0.04])
    assert m["skew"] == pytest.approx(0.0, abs=1e-9)
    assert m["kurtosis"] == pytest.approx(-1.36, rel=1e-9)


def test_constant_returns_have_zero_volatility_and_no_sharpe():
    m = performance_metrics(returns=[0.01] * 10)
    assert m["annual_volatility"] == 0.0
    assert m["sharpe"] is None
    assert m["sortino"] is None  # no downside either
    assert m["skew"] is None and m["kurtosis"] is None
    assert m["max_drawdown"] == 0.0
    assert m["max_drawdown_duration"] == 0
    assert m["calmar"] is None
    assert m["total_return"] == pytest.approx(1.01**10 - 1, rel=1e-12)


def test_geometric_equity_curve_is_zero_volatility_despite_rounding():
    # Returns recovered from 1.01**t differ in the last bits; that is not volatility.
    equity = 100.0 * 1.01 ** np.arange(60)
    r = equity[1:] / equity[:-1] - 1
    assert np.ptp(r) > 0  # the premise: not exactly constant
    m = performance_metrics(equity=equity)
    assert m["sharpe"] is None
    assert m["annual_volatility"] == 0.0


def test_constant_negative_returns_have_no_sharpe_but_a_drawdown():
    m = performance_metrics(returns=[-0.01] * 5)
    assert m["sharpe"] is None
    assert m["sortino"] == pytest.approx(-0.01 * math.sqrt(P) / 0.01, rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(0.99**5 - 1, rel=1e-12)
    assert m["max_drawdown_duration"] == 5


def test_no_downside_gives_no_sortino():
    m = performance_metrics(returns=[0.01, 0.02, 0.03])
    assert m["sortino"] is None
    assert m["sharpe"] == pytest.approx(0.02 / 0.01 * math.sqrt(P), rel=1e-12)


def test_single_return():
    m = performance_metrics(returns=[0.05])
    assert m["periods"] == 1
    assert m["total_return"] == pytest.approx(0.05)
    assert m["cagr"] == pytest.approx(1.05**252 - 1, rel=1e-9)
    assert m["best_period"] == m["worst_period"] == 0.05
    for key in ("annual_volatility", "sharpe", "sortino", "var_95", "cvar_95", "var_99", "cvar_99"):
        assert m[key] is None, key
    assert m["skew"] is None and m["kurtosis"] is None


@pytest.mark.parametrize("kwargs", [{"returns": []}, {"equity": []}, {"equity": [100.0]}])
def test_empty_input_is_all_none_with_zero_periods(kwargs):
    m = performance_metrics(**kwargs)
    assert m["periods"] == 0
    assert all(m[k] is None for k in PERFORMANCE_KEYS if k != "periods")


def test_starting_wealth_counts_as_a_peak():
    # Without the starting peak the running max would begin at 0.9 and see no drawdown at all.
    m = performance_metrics(returns=[-0.1, 0.05])
    assert m["max_drawdown"] == pytest.approx(-0.1, rel=1e-12)
    assert m["max_drawdown_duration"] == 2
    m = performance_metrics(equity=[100.0, 90.0, 94.5])
    assert m["max_drawdown"] == pytest.approx(-0.1, rel=1e-12)


def test_drawdown_duration_is_longest_underwater_run():
    # Wealth: 1.1 (peak), 0.99 (under), 1.188 (peak), 1.1286, 1.07217 (under x2), 1.393821 (peak).
    m = performance_metrics(returns=[0.1, -0.1, 0.2, -0.05, -0.05, 0.3])
    assert m["max_drawdown_duration"] == 2
    assert m["max_drawdown"] == pytest.approx(0.99 / 1.1 - 1, rel=1e-12)


def test_total_loss_is_representable():
    m = performance_metrics(returns=[0.1, -1.0, 0.0])
    assert m["total_return"] == -1.0
    assert m["cagr"] == -1.0
    assert m["max_drawdown"] == -1.0
    assert m["calmar"] == pytest.approx(-1.0)


def test_annualisation_overflow_is_none_not_inf():
    m = performance_metrics(returns=[100.0], periods_per_year=525_600)
    assert m["cagr"] is None
    assert m["total_return"] == 100.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"returns": [0.1], "equity": [1.0, 2.0]},
        {"equity": [100.0, 0.0, 50.0]},
        {"equity": [100.0, -5.0]},
        {"returns": [0.1, float("nan")]},
        {"returns": [0.1, float("inf")]},
        {"equity": [1.0, float("inf")]},
        {"returns": [0.1, -1.5]},
        {"returns": [[0.1, 0.2]]},
        {"returns": ["a"]},
        {"returns": R, "periods_per_year": 0},
        {"returns": R, "periods_per_year": 252.5},
        {"returns": R, "risk_free_rate": -1.0},
        {"returns": R, "risk_free_rate": float("nan")},
    ],
)
def test_invalid_input_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        performance_metrics(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=-1.0, max_value=5.0, allow_nan=False), max_size=40),
    st.sampled_from([1, 12, 252, 525_600]),
)
def test_metrics_are_never_nan_or_inf(returns, periods_per_year):
    m = performance_metrics(returns=returns, periods_per_year=periods_per_year)
    for key, value in m.items():
        assert value is None or math.isfinite(value), (key, value)
    assert m["periods"] == len(returns)
    if m["max_drawdown"] is not None:
        assert -1.0 <= m["max_drawdown"] <= 0.0


def test_values_are_plain_python_numbers():
    m = performance_metrics(returns=R)
    assert all(type(v) in (float, int) for v in m.values())


# --------------------------------------------------------------------------------------------
# Trade metrics
# --------------------------------------------------------------------------------------------


def test_trade_metrics_hand_computed():
    m = trade_metrics([100.0, -50.0, 30.0, -20.0, 0.0], periods_in_market=30, total_periods=100)
    assert m == {
        "trades": 5,
        "win_rate": pytest.approx(2 / 5),
        "profit_factor": pytest.approx(130 / 70),
        "expectancy": pytest.approx(60 / 5),
        "avg_win": pytest.approx(65.0),
        "avg_loss": pytest.approx(-35.0),
        "exposure_pct": pytest.approx(0.3),
    }
    assert set(m) == set(TRADE_KEYS)


def test_all_winning_trades_have_no_profit_factor():
    m = trade_metrics([10.0, 20.0], periods_in_market=5, total_periods=10)
    assert m["profit_factor"] is None
    assert m["avg_loss"] is None
    assert m["win_rate"] == 1.0
    assert m["avg_win"] == 15.0


def test_all_losing_trades():
    m = trade_metrics([-10.0, -30.0], periods_in_market=0, total_periods=10)
    assert m["profit_factor"] == 0.0
    assert m["avg_win"] is None
    assert m["avg_loss"] == -20.0
    assert m["win_rate"] == 0.0
    assert m["exposure_pct"] == 0.0


def test_no_trades():
    m = trade_metrics([], periods_in_market=0, total_periods=50)
    assert m["trades"] == 0
    assert m["exposure_pct"] == 0.0
    for key in ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss"):
        assert m[key] is None, key
    assert trade_metrics([], periods_in_market=0, total_periods=0)["exposure_pct"] is None


@pytest.mark.parametrize(
    ("pnls", "in_market", "total"),
    [([1.0], 5, 4), ([1.0], -1, 4), ([float("nan")], 0, 1), ([1.0], True, 4), ([1.0], 0, -1)],
)
def test_trade_metrics_invalid(pnls, in_market, total):
    with pytest.raises(ValueError):
        trade_metrics(pnls, periods_in_market=in_market, total_periods=total)


def test_tiny_returns_do_not_underflow():
    # Found by hypothesis: squaring ~1e-122 deviations twice underflows to 0 (ZeroDivisionError).
    m = performance_metrics(returns=[0.0, 1.1995682198300003e-122])
    assert m["skew"] == pytest.approx(0.0, abs=1e-12)
    assert m["kurtosis"] == pytest.approx(-2.0)
    m = performance_metrics(returns=[-1e-170, 1e-170, 3e-170])
    assert m["sortino"] is not None and math.isfinite(m["sortino"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=-1.0, max_value=1e300, allow_nan=False), max_size=30),
    st.lists(st.floats(min_value=1e-300, max_value=1e300), max_size=30),
)
def test_extreme_inputs_give_none_not_inf(returns, equity):
    for m in (performance_metrics(returns=returns), performance_metrics(equity=equity)):
        for key, value in m.items():
            assert value is None or math.isfinite(value), (key, value)
