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


def test_returns_with_a_short_apply_each_day_s_moves_to_today_s_positions_over_current_gross():
    closes = np.array([[100.0, 50.0], [110.0, 52.0], [99.0, 55.0]])
    q = np.array([1.0, -2.0])  # today: long 99 of A, short 110 of B
    gross_now = abs(1.0 * 99.0) + abs(-2.0 * 55.0)  # 209
    # Day 1: A +10 %, B +4 %: 99 * 0.1 - 110 * 0.04 = 5.5. Day 2: A -10 %, B +3/52: -9.9 - 110 * 3/52.
    expected = [5.5 / 209, (-9.9 - 110 * 3 / 52) / 209]
    np.testing.assert_allclose(portfolio_returns(q, closes), expected)
    assert returns_base(q, closes[-1]) == pytest.approx(gross_now)
    # (The day's P&L at the day's own price levels would give 6 / 209 for day 1: A's move of 10 on 100
    # counted as 10, where today's A is 99.)


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


# ------------------------------------------------------------------------------- parametric / Monte Carlo

from app.domain.risk.calculations import (  # noqa: E402
    asset_returns,
    component_var,
    model_var_report,
    monte_carlo_var,
    parametric_var,
    return_moments,
)

Z95 = 1.6448536269514722  # standard normal quantile at 0.95
Z99 = 2.3263478740408408
COV = np.array([[0.0004, 0.0001], [0.0001, 0.0009]])
W = np.array([1000.0, 2000.0])
# sigma^2 = 1000^2*0.0004 + 2*1000*2000*0.0001 + 2000^2*0.0009 = 400 + 400 + 3600 = 4400
SIGMA = math.sqrt(4400.0)


def _pdf(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def test_parametric_var_closed_form():
    var, cvar = parametric_var(W, np.zeros(2), COV, 0.95)
    assert var == pytest.approx(Z95 * SIGMA, rel=1e-12)  # 109.1079...
    assert cvar == pytest.approx(SIGMA * _pdf(Z95) / 0.05, rel=1e-12)  # 136.82...
    var99, _ = parametric_var(W, np.zeros(2), COV, 0.99)
    assert var99 == pytest.approx(Z99 * SIGMA, rel=1e-12)
    # an expected gain of 1000*0.001 = 1 a day lowers both by 1
    var_m, cvar_m = parametric_var(W, np.array([0.001, 0.0]), COV, 0.95)
    assert var_m == pytest.approx(Z95 * SIGMA - 1.0) and cvar_m == pytest.approx(cvar - 1.0)


def test_monte_carlo_converges_to_parametric_on_normal_returns():
    mean = np.array([0.0005, -0.0002])
    exact_var, exact_cvar = parametric_var(W, mean, COV, 0.95)
    errors = []
    for n in (1_000, 20_000, 400_000):
        var, cvar = monte_carlo_var(W, mean, COV, 0.95, simulations=n, seed=11)
        errors.append(abs(var - exact_var) / exact_var)
    assert errors[-1] < 0.005  # 400k draws: within 0.5% of the closed form
    assert errors[-1] < errors[0]
    var, cvar = monte_carlo_var(W, mean, COV, 0.95, simulations=400_000, seed=11)
    assert cvar == pytest.approx(exact_cvar, rel=0.01)
    # seeded: the same inputs give the same figures
    assert monte_carlo_var(W, mean, COV, 0.99, seed=5) == monte_carlo_var(W, mean, COV, 0.99, seed=5)


def test_moments_from_closes_and_report_on_sampled_normal_returns():
    rng = np.random.default_rng(1)
    returns = rng.multivariate_normal([0.0, 0.0], COV, size=5000)
    closes = 100 * np.vstack([np.ones(2), np.cumprod(1 + returns, axis=0)])
    assert asset_returns(closes) == pytest.approx(returns)
    mean, cov = return_moments(asset_returns(closes))
    assert cov == pytest.approx(np.cov(returns, rowvar=False), rel=1e-9)  # ddof 1
    q = np.array([10.0, 20.0])
    base = D(repr(float(q @ closes[-1])))
    report = model_var_report(q, closes, base, simulations=200_000)
    assert report is not None
    w = q * closes[-1]
    exact, _ = parametric_var(w, mean, cov, 0.95)
    par, mc = report["parametric"], report["monte_carlo"]
    assert float(par["var_95_amount"]) == pytest.approx(exact, abs=1e-6)
    assert par["var_95"] == pytest.approx(exact / float(base))
    assert float(mc["var_95_amount"]) == pytest.approx(exact, rel=0.01)
    assert par["var_99"] > par["var_95"] and par["cvar_95"] > par["var_95"]
    assert model_var_report(q, closes[:2], base) is None  # one return: no covariance


def test_component_var_adds_up_and_shows_hedges():
    accounts = np.array([[1000.0, 0.0], [0.0, 2000.0], [-500.0, 0.0]])  # the third hedges the first
    parts = component_var(accounts, np.zeros(2), COV, 0.95)
    total, _ = parametric_var(accounts.sum(axis=0), np.zeros(2), COV, 0.95)
    assert parts.sum() == pytest.approx(total)
    assert parts[2] < 0 < parts[0]
    # one account alone carries the whole VaR
    assert component_var(W[None, :], np.zeros(2), COV, 0.95)[0] == pytest.approx(Z95 * SIGMA)
    assert component_var(np.zeros((2, 2)), np.zeros(2), COV, 0.95).tolist() == [0.0, 0.0]
