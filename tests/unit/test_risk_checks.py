from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.risk.checks import (
    LIMIT_TYPES,
    UNBOUNDED,
    Breach,
    Limit,
    PortfolioState,
    ProposedOrder,
    check_pre_trade,
    current_breaches,
    current_value,
    is_reduce_only_ok,
    is_risk_increasing,
    pre_trade_breaches,
    trading_state_rejection,
    utilisation,
    validate_limit,
)

D = Decimal


def state(cash="1000", positions=None, **kw):
    return PortfolioState(
        cash=D(cash),
        positions={s: (D(q), D(p)) for s, (q, p) in (positions or {}).items()},
        **{k: D(v) if isinstance(v, str) else v for k, v in kw.items()},
    )


def order(symbol="AAA", side="buy", qty="1", price="100"):
    return ProposedOrder(symbol, side, D(qty), D(price))


def limit(limit_type, value, symbol=None, id_="L1", enabled=True):
    return Limit(id=id_, limit_type=limit_type, value=D(value), symbol=symbol, enabled=enabled)


def test_limit_types_are_the_eleven_in_the_api():
    assert LIMIT_TYPES == (
        "max_order_notional",
        "max_order_quantity",
        "max_position_quantity",
        "max_position_notional",
        "max_gross_exposure",
        "max_leverage",
        "max_concentration_pct",
        "max_open_orders",
        "max_orders_per_minute",
        "max_daily_loss",
        "max_drawdown_pct",
    )


def test_equity_and_buying_power():
    s = state("1000", {"AAA": ("10", "100"), "BBB": ("-5", "50")}, reserved_cash="300")
    assert s.equity == D("1750")
    assert s.buying_power == D("700")
    assert s.quantity("AAA") == D("10") and s.quantity("ZZZ") == 0


# Each case: (limit type, limit value, state, under order, at order, over order, would_be over).
# State used by most cases: cash 1000 and 10 AAA @ 100, so equity 2000 and gross exposure 1000.
BASE = {"cash": "1000", "positions": {"AAA": ("10", "100")}}
CASES = {
    "max_order_notional": (
        "1000",
        BASE,
        order("BBB", qty="9.9999"),
        order("BBB", qty="10"),
        order("BBB", qty="10.0001"),
        "1000.0100",
    ),
    "max_order_quantity": (
        "10",
        BASE,
        order("BBB", qty="9.99"),
        order("BBB", qty="10"),
        order("BBB", qty="10.01"),
        "10.01",
    ),
    "max_position_quantity": (
        "15",
        BASE,
        order(qty="4.99"),
        order(qty="5"),
        order(qty="5.01"),
        "15.01",
    ),
    "max_position_notional": (
        "2000",
        BASE,
        order(qty="9.99"),
        order(qty="10"),
        order(qty="10.01"),
        "2001.00",
    ),
    "max_gross_exposure": (
        "2000",
        {"cash": "1000", "positions": {"AAA": ("10", "100"), "BBB": ("-5", "50")}},  # gross 1250
        order(qty="7.49"),
        order(qty="7.5"),
        order(qty="7.51"),
        "2001.00",
    ),
    "max_leverage": (
        "2",
        BASE,
        order(qty="29.99"),  # gross 3999 / equity 2000
        order(qty="30"),
        order(qty="30.01"),
        "2.0005",
    ),
    "max_concentration_pct": (
        "50",
        BASE,
        order("BBB", qty="9.99"),  # 999 / 2000
        order("BBB", qty="10"),
        order("BBB", qty="10.01"),
        "50.05",
    ),
    "max_open_orders": (
        "5",
        None,
        ("open_orders", 3),
        ("open_orders", 4),
        ("open_orders", 5),
        "6",
    ),
    "max_orders_per_minute": (
        "10",
        None,
        ("orders_last_minute", 8),
        ("orders_last_minute", 9),
        ("orders_last_minute", 10),
        "11",
    ),
}


@pytest.mark.parametrize("limit_type", list(CASES))
def test_limit_under_and_at_pass_and_over_is_rejected_with_exact_would_be(limit_type):
    value, base, under, at, over, would_be = CASES[limit_type]
    lim = limit(limit_type, value)

    def run(case):
        if isinstance(case, ProposedOrder):
            return check_pre_trade(state(**base), case, [lim])
        field, n = case
        return check_pre_trade(state(**BASE, **{field: n}), order(), [lim])

    assert run(under) is None
    assert run(at) is None
    breach = run(over)
    assert isinstance(breach, Breach)
    assert (breach.limit_id, breach.limit_type, breach.limit_value) == ("L1", limit_type, D(value))
    assert breach.would_be == D(would_be)
    assert str(D(would_be)) in breach.message


@pytest.mark.parametrize(
    ("limit_type", "value", "field", "under", "at", "over"),
    [
        ("max_daily_loss", "500", "daily_pnl", "-499.99", "-500", "-500.01"),
        ("max_drawdown_pct", "10", "drawdown_pct", "9.99", "10", "10.01"),
    ],
)
def test_loss_stops_block_risk_increasing_orders_from_the_limit_on(limit_type, value, field, under, at, over):
    lim = limit(limit_type, value)
    buy = order(qty="1")
    assert check_pre_trade(state(**BASE, **{field: under}), buy, [lim]) is None
    for level in (at, over):
        breach = check_pre_trade(state(**BASE, **{field: level}), buy, [lim])
        assert breach is not None and breach.limit_type == limit_type
        assert breach.would_be == abs(D(level))
    # Reducing the long (and closing it) stays possible while the stop is breached.
    s = state(**BASE, **{field: over})
    assert check_pre_trade(s, order(side="sell", qty="4"), [lim]) is None
    assert check_pre_trade(s, order(side="sell", qty="10"), [lim]) is None
    # A flip through zero opens a position on the other side: blocked at any size (short 0.01 too).
    assert check_pre_trade(s, order(side="sell", qty="10.01"), [lim]) is not None
    assert check_pre_trade(s, order(side="sell", qty="20.01"), [lim]) is not None


def test_daily_profit_never_breaches_the_loss_limit():
    assert check_pre_trade(state(**BASE, daily_pnl="800"), order(), [limit("max_daily_loss", "500")]) is None


def test_unscoped_position_limits_apply_to_every_symbol_including_shorts():
    lim = limit("max_position_quantity", "15")
    s = state(**BASE)
    breach = check_pre_trade(s, order("ZZZ", side="sell", qty="15.5"), [lim])
    assert breach is not None and breach.would_be == D("15.5")
    breach = check_pre_trade(s, order("AAA", side="sell", qty="25.01"), [lim])  # 10 - 25.01 = -15.01
    assert breach is not None and breach.would_be == D("15.01")


def test_symbol_scoped_limits_apply_only_to_their_symbol():
    scoped = limit("max_order_quantity", "1", symbol="BBB")
    assert check_pre_trade(state(**BASE), order("AAA", qty="5"), [scoped]) is None
    breach = check_pre_trade(state(**BASE), order("BBB", qty="5"), [scoped])
    assert breach is not None and breach.symbol == "BBB" and breach.would_be == D("5")


def test_disabled_limits_are_ignored():
    lim = limit("max_order_quantity", "1", enabled=False)
    assert check_pre_trade(state(**BASE), order(qty="5"), [lim]) is None
    assert utilisation(state(**BASE), lim) is None


def test_position_and_exposure_limits_never_block_an_order_that_reduces_what_they_measure():
    # Already over every one of these limits (e.g. the price moved); selling part must still pass.
    s = state("100", {"AAA": ("50", "100")})  # gross 5000, equity 5100
    limits = [
        limit("max_position_quantity", "10", id_="a"),
        limit("max_position_notional", "1000", id_="b"),
        limit("max_gross_exposure", "1000", id_="c"),
        limit("max_leverage", "0.5", id_="d"),
        limit("max_concentration_pct", "20", id_="e"),
    ]
    assert pre_trade_breaches(s, order(side="sell", qty="10"), limits) == []
    # A flip to the same size opens a short of 50 over the position limits; gross exposure (and so
    # leverage) stays as it was.
    flip = pre_trade_breaches(s, order(side="sell", qty="100"), limits)
    assert [b.limit_type for b in flip] == [
        "max_position_quantity",
        "max_position_notional",
        "max_concentration_pct",
    ]
    # Adding to it is blocked by all five, in the fixed order.
    breaches = pre_trade_breaches(s, order(qty="1"), limits)
    assert [b.limit_type for b in breaches] == [
        "max_position_quantity",
        "max_position_notional",
        "max_gross_exposure",
        "max_leverage",
        "max_concentration_pct",
    ]


def test_order_size_and_count_limits_apply_even_to_reducing_orders():
    s = state(**BASE, open_orders=5)
    limits = [limit("max_order_quantity", "5", id_="q"), limit("max_open_orders", "5", id_="o")]
    breaches = pre_trade_breaches(s, order(side="sell", qty="6"), limits)
    assert [b.limit_type for b in breaches] == ["max_order_quantity", "max_open_orders"]


def test_first_breach_follows_the_fixed_order_not_the_input_order():
    s = state(**BASE, open_orders=10, orders_last_minute=10, daily_pnl="-1000", drawdown_pct="50")
    limits = [
        limit("max_drawdown_pct", "5", id_="1"),
        limit("max_daily_loss", "10", id_="2"),
        limit("max_orders_per_minute", "1", id_="3"),
        limit("max_open_orders", "1", id_="4"),
        limit("max_order_notional", "1", id_="5"),
        limit("max_order_quantity", "0.5", id_="6"),
    ]
    breach = check_pre_trade(s, order(qty="1"), limits)
    assert breach is not None and breach.limit_type == "max_order_notional"
    assert [b.limit_id for b in pre_trade_breaches(s, order(qty="1"), limits)] == [
        "5",
        "6",
        "4",
        "3",
        "2",
        "1",
    ]


def test_symbol_scoped_limit_is_reported_before_the_account_wide_one():
    limits = [
        limit("max_order_quantity", "1", id_="a"),
        limit("max_order_quantity", "2", symbol="AAA", id_="z"),
    ]
    breach = check_pre_trade(state(**BASE), order(qty="5"), limits)
    assert breach is not None and breach.limit_id == "z"


def test_gross_and_leverage_mark_the_order_symbol_at_the_order_price():
    s = state("1000", {"AAA": ("10", "100")})
    breach = check_pre_trade(s, order(qty="1", price="150"), [limit("max_gross_exposure", "1600")])
    assert breach is not None and breach.would_be == D("1650")  # 11 * 150; equity stays 2000
    breach = check_pre_trade(s, order(qty="1", price="150"), [limit("max_leverage", "0.8")])
    assert breach is not None and breach.would_be == D("0.825")


def test_leverage_would_be_is_reported_rounded_but_compared_exactly():
    s = state("3000", {})
    lim = limit("max_leverage", "0.3333333333333333333333333333")  # just below 1/3
    breach = check_pre_trade(s, order(qty="10"), [lim])  # gross 1000 / 3000 = 1/3 exactly
    assert breach is not None
    assert breach.would_be == D("0.3333333333333333333333333333")


def test_leverage_and_concentration_with_no_equity_are_unbounded():
    s = state("-500", {"AAA": ("1", "100")})  # equity -400
    for lt in ("max_leverage", "max_concentration_pct"):
        breach = check_pre_trade(s, order(qty="1"), [limit(lt, "100")])
        assert breach is not None and breach.would_be == UNBOUNDED
        assert check_pre_trade(s, order(side="sell", qty="1"), [limit(lt, "100")]) is None
        assert utilisation(s, limit(lt, "100")) == UNBOUNDED


def test_unknown_limit_type_is_an_error():
    with pytest.raises(ValueError):
        check_pre_trade(state(), order(), [limit("max_fun", "1")])


# --- risk increasing / reduce only / trading state -----------------------------------------------


@pytest.mark.parametrize(
    ("position", "side", "qty", "increasing", "reduce_ok"),
    [
        ("0", "buy", "1", True, False),
        ("0", "sell", "1", True, False),
        ("10", "buy", "1", True, False),
        ("10", "sell", "4", False, True),
        ("10", "sell", "10", False, True),
        ("10", "sell", "15", True, False),  # flips short 5: a new position on the other side
        ("10", "sell", "20", True, False),  # flips to the same size
        ("10", "sell", "25", True, False),
        ("-10", "buy", "4", False, True),
        ("-10", "buy", "10", False, True),
        ("-10", "buy", "11", True, False),
        ("-10", "sell", "1", True, False),
    ],
)
def test_risk_increasing_and_reduce_only(position, side, qty, increasing, reduce_ok):
    s = state("1000", {"AAA": (position, "100")})
    o = order(side=side, qty=qty)
    assert is_risk_increasing(s, o) is increasing
    assert is_reduce_only_ok(s, o) is reduce_ok


def test_trading_state_rejection():
    s = state("1000", {"AAA": ("10", "100")})
    assert trading_state_rejection("active", s, order()) is None
    assert "halted" in trading_state_rejection("halted", s, order(side="sell"))
    assert "reduce_only" in trading_state_rejection("reduce_only", s, order())
    assert trading_state_rejection("reduce_only", s, order(side="sell", qty="3")) is None


# --- utilisation and monitoring ------------------------------------------------------------------

MON = state(
    "1000",
    {"AAA": ("10", "100"), "BBB": ("-4", "50")},  # gross 1200, net 800, equity 1800
    open_orders=3,
    orders_last_minute=6,
    daily_pnl="-150",
    drawdown_pct="4.5",
)


@pytest.mark.parametrize(
    ("limit_type", "value", "symbol", "used", "util"),
    [
        ("max_order_notional", "1000", None, None, None),
        ("max_order_quantity", "10", None, None, None),
        ("max_position_quantity", "20", None, "10", "0.5"),
        ("max_position_quantity", "8", "BBB", "4", "0.5"),
        ("max_position_notional", "1250", None, "1000", "0.8"),
        ("max_position_notional", "400", "BBB", "200", "0.5"),
        ("max_gross_exposure", "1500", None, "1200", "0.8"),
        ("max_leverage", "1", None, "0.6666666666666666666666666667", "0.6666666666666666666666666667"),
        (
            "max_concentration_pct",
            "100",
            None,
            "55.55555555555555555555555556",
            "0.5555555555555555555555555556",
        ),
        (
            "max_concentration_pct",
            "50",
            "BBB",
            "11.11111111111111111111111111",
            "0.2222222222222222222222222222",
        ),
        ("max_open_orders", "4", None, "3", "0.75"),
        ("max_orders_per_minute", "6", None, "6", "1"),
        ("max_daily_loss", "200", None, "150", "0.75"),
        ("max_drawdown_pct", "9", None, "4.5", "0.5"),
    ],
)
def test_current_value_and_utilisation(limit_type, value, symbol, used, util):
    lim = limit(limit_type, value, symbol=symbol)
    assert current_value(MON, lim) == (D(used) if used is not None else None)
    assert utilisation(MON, lim) == (D(util) if util is not None else None)


def test_utilisation_of_a_profit_day_and_an_empty_book_is_zero():
    s = state("1000", {}, daily_pnl="50")
    assert utilisation(s, limit("max_daily_loss", "100")) == 0
    assert utilisation(s, limit("max_position_quantity", "100")) == 0
    assert utilisation(s, limit("max_leverage", "2")) == 0


def test_current_breaches_for_the_monitor():
    limits = [
        limit("max_gross_exposure", "1200", id_="at"),  # exactly at: not a breach
        limit("max_gross_exposure", "1199.99", id_="over"),
        limit("max_daily_loss", "150", id_="stop"),  # loss stop reached: breach
        limit("max_order_quantity", "0.001", id_="n/a"),
        limit("max_open_orders", "1", id_="off", enabled=False),
    ]
    found = current_breaches(MON, limits)
    assert [(b.limit_id, b.would_be) for b in found] == [("over", D("1200")), ("stop", D("150"))]


def test_validate_limit():
    assert validate_limit("max_leverage", D("2")) == []
    assert validate_limit("max_position_quantity", D("5"), symbol="AAA") == []
    assert [f for f, _ in validate_limit("max_nope", D("1"))] == ["limit_type"]
    assert [f for f, _ in validate_limit("max_leverage", D("0"))] == ["value"]
    assert [f for f, _ in validate_limit("max_leverage", D("-1"))] == ["value"]
    assert [f for f, _ in validate_limit("max_open_orders", D("2.5"))] == ["value"]
    assert [f for f, _ in validate_limit("max_leverage", D("2"), symbol="AAA")] == ["symbol"]
    assert [f for f, _ in validate_limit("max_leverage", D("2"), warn_at_pct=D("0"))] == ["warn_at_pct"]
    assert [f for f, _ in validate_limit("max_leverage", D("2"), warn_at_pct=D("101"))] == ["warn_at_pct"]


# --- properties -----------------------------------------------------------------------------------

qtys = st.decimals(min_value=D("0.01"), max_value=D("1000"), places=2)


@given(
    position=st.decimals(min_value=D("-500"), max_value=D("500"), places=2),
    qty=qtys,
    side=st.sampled_from(["buy", "sell"]),
    value=st.decimals(min_value=D("1"), max_value=D("1000"), places=2),
)
def test_position_quantity_limit_matches_its_definition(position, qty, side, value):
    s = state("100000", {"AAA": (str(position), "10")})
    o = order(side=side, qty=str(qty), price="10")
    after = position + (qty if side == "buy" else -qty)
    breach = check_pre_trade(s, o, [limit("max_position_quantity", str(value))])
    flips = (position > 0 > after) or (position < 0 < after)
    expected = abs(after) > value and (abs(after) > abs(position) or flips)
    assert (breach is not None) == expected
    if breach is not None:
        assert breach.would_be == abs(after)


@given(position=st.decimals(min_value=D("-500"), max_value=D("500"), places=2), qty=qtys)
def test_reduce_only_orders_are_never_risk_increasing(position, qty):
    s = state("1000", {"AAA": (str(position), "10")})
    for side in ("buy", "sell"):
        o = order(side=side, qty=str(qty))
        if is_reduce_only_ok(s, o):
            assert not is_risk_increasing(s, o)


def test_breach_messages_round_ratios_and_use_plain_notation():
    """A message once read "concentration 21.70625010263162417193685650% in AAA ..."."""
    s = state(cash="1000", positions={"BBB": ("3", "1201.2345")})
    pct = check_pre_trade(s, order(qty="10", price="100.01"), [limit("max_concentration_pct", "20")])
    shown = pct.message.split("concentration ")[1].split("%")[0]
    assert len(shown.split(".")[1]) == 2 and pct.would_be < Decimal(shown)  # rounded up; the breach is exact
    assert len(str(pct.would_be)) > 10
    notional = check_pre_trade(
        state(cash="1E+7"), order(qty="1000", price="1E+3"), [limit("max_order_notional", "1E+5")]
    )
    assert "E" not in notional.message and "1000000" in notional.message and "100000" in notional.message
