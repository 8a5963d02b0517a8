import math
from decimal import Decimal

import numpy as np
import pytest

from app.domain.risk.calculations import (
    annualised_volatility,
    drawdown,
    exposures,
    portfolio_returns,
    returns_base,
    var_report,
)

D = Decimal

# A small series with hand-computable tails.
R = np.array([-0.05, -0.02, 0.01, 0.03, -0.01, 0.02, 0.00, -0.03, 0.04, 0.01])


def test_exposures():
    e = exposures({"AAA": (D("10"), D("100")), "BBB": (D("-4"), D("50")), "CCC": (D("0"), D("7"))}, D("1800"))
    assert e["gross"] == D("1200")
    assert e["net"] == D("800")
    assert e["leverage"] == pytest.approx(1200 / 1800)
    assert e["concentration_pct"] == pytest.approx(100 * 1000 / 1800)
    assert e["largest_symbol"] == "AAA"


def test_exposures_without_equity_or_positions():
    e = exposures({"AAA": (D("1"), D("10"))}, D("0"))
    assert (e["leverage"], e["concentration_pct"]) == (None, None)
    e = exposures({}, D("100"))
    assert (e["gross"], e["net"], e["leverage"], e["concentration_pct"], e["largest_symbol"]) == (
        D(0),
        D(0),
        0.0,
        0.0,
        None,
    )


def test_long_only_returns_are_value_ratios():
    closes = np.array([[100.0, 50.0], [110.0, 50.0], [99.0, 55.0]])
    q = np.array([2.0, 4.0])
    values = closes @ q  # 400, 420, 418
    expected = values[1:] / values[:-1] - 1
    np.testing.assert_allclose(portfolio_returns(q, closes), expected)
    np.testing.assert_allclose(portfolio_returns(np.array([3.0]), closes[:, :1]), [0.1, -0.1])
    assert returns_base(q, closes[-1]) == pytest.approx(418.0)


def test_returns_with_a_short_are_pnl_over_current_gross():
    closes = np.array([[100.0, 50.0], [110.0, 52.0], [99.0, 55.0]])
    q = np.array([1.0, -2.0])  # net 0 at the start
    values = closes @ q  # 0, 6, -11
    gross_now = abs(1.0 * 99.0) + abs(-2.0 * 55.0)  # 209
    np.testing.assert_allclose(portfolio_returns(q, closes), np.diff(values) / gross_now)
    assert returns_base(q, closes[-1]) == pytest.approx(gross_now)


def test_flat_book_has_zero_returns_and_short_history_has_none():
    closes = np.array([[100.0], [110.0], [120.0]])
    np.testing.assert_array_equal(portfolio_returns(np.array([0.0]), closes), [0.0, 0.0])
    np.testing.assert_array_equal(portfolio_returns(np.zeros(0), np.zeros((3, 0))), [0.0, 0.0])
    assert portfolio_returns(np.array([1.0]), closes[:1]).size == 0


def test_non_positive_previous_value_gives_nan_not_a_warning():
    r = portfolio_returns(np.array([1.0]), np.array([[0.0], [10.0], [11.0]]))
    assert math.isnan(r[0]) and r[1] == pytest.approx(0.1)


def test_portfolio_returns_checks_shapes():
    with pytest.raises(ValueError):
        portfolio_returns(np.array([1.0, 2.0]), np.zeros((5, 3)))


def test_var_report_by_hand():
    # sorted: -0.05 -0.03 -0.02 -0.01 0 0.01 0.01 0.02 0.03 0.04; linear percentile at p: position p*(n-1).
    s = np.sort(R)
    p5 = s[0] + 0.45 * (s[1] - s[0])  # position 0.05 * 9 = 0.45 -> -0.041
    p1 = s[0] + 0.09 * (s[1] - s[0])  # position 0.01 * 9 = 0.09 -> -0.0482
    assert p5 == pytest.approx(-0.041) and p1 == pytest.approx(-0.0482)
    report = var_report(R, D("10000"))
    assert report["observations"] == 10
    assert report["var_95"] == pytest.approx(0.041)
    assert report["cvar_95"] == pytest.approx(0.05)  # only -0.05 is <= -0.041
    assert report["var_99"] == pytest.approx(0.0482)
    assert report["cvar_99"] == pytest.approx(0.05)
    assert report["var_95_amount"] == D("410.00000000")
    assert report["cvar_95_amount"] == D("500.00000000")
    assert report["var_99_amount"] == D("482.00000000")
    assert report["cvar_99_amount"] == D("500.00000000")


def test_cvar_averages_the_whole_tail():
    r = np.linspace(-0.10, 0.09, 20)  # -0.10, -0.09, ..., 0.09
    report = var_report(r, 1000.0)
    cutoff = -0.10 + 0.95 * 0.01  # position 0.05 * 19 = 0.95
    assert report["var_95"] == pytest.approx(-cutoff)
    assert report["cvar_95"] == pytest.approx(0.10)  # only -0.10 is below -0.0905
    cutoff_99 = -0.10 + 0.19 * 0.01
    assert report["var_99"] == pytest.approx(-cutoff_99)
    r2 = np.array([-0.04, -0.04, -0.04, 0.01, 0.02])
    rep2 = var_report(r2, D("100"))
    assert rep2["var_95"] == pytest.approx(0.04) and rep2["cvar_95"] == pytest.approx(0.04)


def test_var_report_with_too_few_returns_is_null():
    report = var_report(np.array([0.01]), D("1000"))
    assert report["observations"] == 1
    for key in ("var_95", "cvar_95", "var_99", "cvar_99", "var_95_amount", "cvar_99_amount"):
        assert report[key] is None


def test_annualised_volatility_by_hand():
    n = len(R)
    mean = sum(R) / n
    variance = sum((x - mean) ** 2 for x in R) / (n - 1)
    assert annualised_volatility(R) == pytest.approx(math.sqrt(variance) * math.sqrt(252))
    assert annualised_volatility(R, periods=12) == pytest.approx(math.sqrt(variance) * math.sqrt(12))
    assert annualised_volatility(np.array([0.01])) is None
    assert annualised_volatility(np.array([0.01, np.nan])) is None
    assert annualised_volatility(np.array([0.01, 0.01, 0.01])) == 0.0


def test_drawdown():
    assert drawdown(D("90"), D("100")) == D("0.1")
    assert drawdown(D("100"), D("100")) == 0
    assert drawdown(D("120"), D("100")) == 0  # a stale peak never gives a negative drawdown
    assert drawdown(D("-50"), D("100")) == D("1.5")
    assert drawdown(D("10"), D("0")) is None
