"""The stress core (pure numpy) against hand-computed portfolios."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.risk import stress

SYMBOLS = ["X", "Y", "Z"]


def _books(limits: list[tuple[int, str, float, int, bool]]) -> stress.Books:
    """Account 0: cash 1000, long 10 X at 100, short 5 Y at 50 (equity 1750, peak 2000, day opened at
    1760); account 1: cash 500 and nothing else."""
    return stress.Books(
        equity=np.array([1750.0, 500.0]),
        daily_pnl=np.array([-10.0, 0.0]),
        peak=np.array([2000.0, 500.0]),
        pos_account=np.array([0, 0]),
        pos_symbol=np.array([0, 1]),
        pos_quantity=np.array([10.0, -5.0]),
        pos_price=np.array([100.0, 50.0]),
        limit_account=np.array([lim[0] for lim in limits], dtype=np.intp),
        limit_kind=np.array([stress.KIND_CODE[lim[1]] for lim in limits], dtype=np.intp),
        limit_value=np.array([lim[2] for lim in limits]),
        limit_position=np.array([lim[3] for lim in limits], dtype=np.intp),
        limit_scoped=np.array([lim[4] for lim in limits], dtype=bool),
    )


def test_shock_row_uses_own_entry_then_star_then_zero():
    assert stress.shock_row(SYMBOLS, {"X": -0.1, "*": -0.05}).tolist() == [-0.1, -0.05, -0.05]
    assert stress.shock_row(SYMBOLS, {"Y": 0.2}).tolist() == [0.0, 0.2, 0.0]


def test_hand_computed_pnl_equity_and_breaches():
    limits = [
        (0, "max_gross_exposure", 1100.0, -1, False),  # after: |900| + |-237.5| = 1137.5 > 1100
        (0, "max_leverage", 0.7, -1, False),  # 1137.5 / 1662.5 = 0.684... <= 0.7
        (0, "max_concentration_pct", 50.0, -1, False),  # 900 / 1662.5 = 54.1% > 50
        (0, "max_drawdown_pct", 16.875, -1, False),  # 1 - 1662.5/2000 = 16.875% >= 16.875 (a stop)
        (0, "max_daily_loss", 97.5, -1, False),  # 10 + 87.5 = 97.5 >= 97.5 (a stop)
        (0, "max_position_notional", 240.0, 1, True),  # Y: |-5 * 47.5| = 237.5 <= 240
        (0, "max_position_notional", 1.0, -1, True),  # Z, not held: 0
        (1, "max_gross_exposure", 1.0, -1, False),  # account 1 holds nothing
    ]
    shocks = np.vstack([stress.shock_row(SYMBOLS, {"X": -0.1, "*": -0.05}), stress.shock_row(SYMBOLS, {})])
    result = stress.run(_books(limits), shocks)
    # X: 10*100*-0.1 = -100; Y: -5*50*-0.05 = +12.5
    assert result.pnl[0].tolist() == pytest.approx([-87.5, 0.0])
    assert result.equity_after[0].tolist() == pytest.approx([1662.5, 500.0])
    assert result.used[0].tolist() == pytest.approx(
        [1137.5, 1137.5 / 1662.5, 900 / 1662.5 * 100, 16.875, 97.5, 237.5, 0.0, 0.0]
    )
    assert result.breached[0].tolist() == [True, False, True, True, True, False, False, False]
    # no move: nothing changes, only what was already over stays over (the stops are not reached)
    assert result.pnl[1].tolist() == [0.0, 0.0]
    assert result.used[1].tolist() == pytest.approx(
        [1250.0, 1250 / 1750, 1000 / 1750 * 100, 12.5, 10.0, 250.0, 0, 0]
    )
    assert result.breached[1].tolist() == [True, True, True, False, False, True, False, False]


def test_wiped_out_equity_makes_leverage_unbounded():
    limits = [(0, "max_leverage", 100.0, -1, False), (0, "max_concentration_pct", 100.0, -1, False)]
    # X falls 100%: equity 1750 - 1000 + (short Y gains 250 at -100%) = 1000 > 0; so push Y up instead
    shocks = np.array([[0.0, 6.0, 0.0]])  # Y up 600%: short loses 5*50*6 = 1500 -> equity 250
    result = stress.run(_books(limits), shocks)
    assert result.equity_after[0, 0] == pytest.approx(250.0)
    shocks = np.array([[-1.0, 10.0, 0.0]])  # X to 0 (-1000), Y up 1000% (-2500): equity -1750
    result = stress.run(_books(limits), shocks)
    assert result.equity_after[0, 0] == pytest.approx(-1750.0)
    assert np.isinf(result.used[0]).all() and result.breached[0].all()


def test_many_accounts_match_a_loop():
    rng = np.random.default_rng(7)
    n, k, s = 300, 12, 5
    pos_account = np.repeat(np.arange(n), 4)
    pos_symbol = rng.integers(0, k, pos_account.size)
    qty = rng.normal(0, 50, pos_account.size)
    price = rng.uniform(10, 200, pos_account.size)
    books = stress.Books(
        equity=rng.uniform(1e4, 1e5, n),
        daily_pnl=np.zeros(n),
        peak=np.full(n, 1e5),
        pos_account=pos_account,
        pos_symbol=pos_symbol,
        pos_quantity=qty,
        pos_price=price,
        limit_account=np.arange(n),
        limit_kind=np.full(n, stress.KIND_CODE["max_gross_exposure"]),
        limit_value=np.full(n, 1e4),
        limit_position=np.full(n, -1),
        limit_scoped=np.zeros(n, dtype=bool),
    )
    shocks = rng.uniform(-0.3, 0.3, (s, k))
    result = stress.run(books, shocks)
    for sc in range(s):
        for a in (0, 17, n - 1):
            rows = pos_account == a
            moves = shocks[sc, pos_symbol[rows]]
            assert result.pnl[sc, a] == pytest.approx(float((qty[rows] * price[rows] * moves).sum()))
            assert result.used[sc, a] == pytest.approx(
                float(np.abs(qty[rows] * price[rows] * (1 + moves)).sum())
            )


# ----------------------------------------------------------------------------------- group pre-trade

from decimal import Decimal  # noqa: E402

from app.domain.risk import checks, groups  # noqa: E402

D = Decimal


def _glimit(kind: str, value: str, symbol: str | None = None) -> groups.GroupLimit:
    return groups.GroupLimit(f"L-{kind}", "G", "desk", kind, D(value), symbol)


def test_group_pre_trade_hand_computed():
    # the group: gross 1500, net 500 (a long 1000 and a short 500 in two accounts), 9 open orders; the
    # ordering account holds 10 X marked at 100 (its part of the sums); the order buys 5 X at 102
    figures = groups.GroupFigures(
        gross=D(1500), net=D(500), daily_pnl=D(-40), open_orders=9, net_position={"X": D(10)}
    )
    buy = checks.ProposedOrder("X", "buy", D(5), D(102))
    check = lambda *lims: groups.check_pre_trade(figures, list(lims), buy, D(10), D(100))  # noqa: E731
    # re-marked at 102: gross before 1520, after 1520 - 1020 + 1530 = 2030; net after 520 + 510 = 1030
    assert check(_glimit("max_gross_exposure", "2030")) is None
    b = check(_glimit("max_gross_exposure", "2029.99"))
    assert b is not None and b.would_be == D(2030) and b.limit_type == "max_gross_exposure"
    assert check(_glimit("max_net_exposure", "1030")) is None
    assert check(_glimit("max_net_exposure", "1029")).would_be == D(1030)
    assert check(_glimit("max_net_position", "15", "X")) is None
    assert check(_glimit("max_net_position", "14")).would_be == D(15)  # unscoped: the order's symbol
    assert check(_glimit("max_net_position", "1", "Y")) is None  # another symbol's limit
    assert check(_glimit("max_open_orders", "10")) is None
    assert check(_glimit("max_open_orders", "9")).would_be == D(10)
    assert check(_glimit("max_daily_loss", "40")).would_be == D(40)  # a stop: reached at >=
    assert check(_glimit("max_daily_loss", "41")) is None
    # reducing orders pass exposure, position and loss limits they are over
    sell = checks.ProposedOrder("X", "sell", D(5), D(100))
    over = [_glimit(kind, "1") for kind in ("max_gross_exposure", "max_net_position", "max_daily_loss")]
    assert groups.check_pre_trade(figures, over, sell, D(10), D(100)) is None
    # the first breach in type order
    b = check(_glimit("max_open_orders", "1"), _glimit("max_gross_exposure", "1"))
    assert b.limit_type == "max_gross_exposure"


def test_money_all_is_money_of_each_value_in_plain_notation():
    from app.domain.risk.stress_service import money, money_all

    rng = np.random.default_rng(5)
    values = np.concatenate([
        rng.normal(0, 1e4, 500), rng.normal(0, 1e-5, 500), rng.uniform(-3e-6, 3e-6, 500),
        [0.0, -0.0, 1e-6, -1e-6, 9.99999995e-7, 9.9999999e-7, 5e-9, -4.9e-9, 1e15, 123.456789125],
    ])
    got = money_all(values)
    assert got == [money(float(v)) for v in values]
    assert all("E" not in str(d) for d in got)
