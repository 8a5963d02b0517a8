from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.trading.accounting import (
    FillRecord,
    PositionState,
    apply_fill,
    cash_delta,
    reconcile,
)
from app.domain.trading.rules import Side

D = Decimal
FLAT = PositionState.flat()


def pos(q, avg, realized="0"):
    return PositionState(D(q), D(avg), D(realized))


def fills(pos_, *steps):
    for side, qty, price in steps:
        pos_ = apply_fill(pos_, side, D(qty), D(price))
    return pos_


def test_open_long_from_flat():
    assert apply_fill(FLAT, Side.BUY, D("10"), D("100")) == pos("10", "100")


def test_adding_to_a_long_weights_the_average_by_quantity():
    assert fills(FLAT, ("buy", "10", "100"), ("buy", "10", "110")) == pos("20", "105")
    assert fills(FLAT, ("buy", "1", "100"), ("buy", "3", "104")) == pos("4", "103")


def test_average_is_rounded_half_even_to_1e_10_only_when_needed():
    p = fills(FLAT, ("buy", "1", "100"), ("buy", "2", "101"))  # 302 / 3
    assert p.avg_entry_price == D("100.6666666667")
    assert p.avg_entry_price.as_tuple().exponent == -10
    exact = fills(FLAT, ("buy", "1", "100"), ("buy", "1", "101"))
    assert exact.avg_entry_price == D("100.5")
    assert str(exact.avg_entry_price) == "100.5"


def test_reducing_a_long_realises_at_the_average_and_keeps_it():
    p = fills(FLAT, ("buy", "20", "105"), ("sell", "5", "120"))
    assert p == pos("15", "105", "75")
    p = apply_fill(p, "sell", D("5"), D("100"))
    assert p == pos("10", "105", "50")  # 75 + (100 - 105) * 5


def test_closing_to_flat_resets_the_average_and_keeps_realised_pnl():
    p = fills(FLAT, ("buy", "10", "100"), ("sell", "10", "90"))
    assert p == pos("0", "0", "-100")


def test_crossing_through_zero_realises_the_closed_part_and_opens_the_rest_at_the_fill():
    p = fills(FLAT, ("buy", "10", "100"), ("sell", "15", "90"))
    assert p == pos("-5", "90", "-100")
    p = apply_fill(p, "buy", D("8"), D("80"))  # short 5 @ 90 closed at 80: +50, then long 3 @ 80
    assert p == pos("3", "80", "-50")


def test_shorts_average_and_realise_with_the_sign_reversed():
    p = fills(FLAT, ("sell", "10", "100"), ("sell", "10", "90"))
    assert p == pos("-20", "95")
    p = apply_fill(p, "buy", D("4"), D("85"))
    assert p == pos("-16", "95", "40")  # (95 - 85) * 4
    p = apply_fill(p, "buy", D("16"), D("100"))
    assert p == pos("0", "0", "-40")  # 40 + (95 - 100) * 16


def test_fractional_quantities_are_exact():
    p = fills(FLAT, ("buy", "0.12345678", "30000.01"), ("sell", "0.02345678", "31000.5"))
    assert p.quantity == D("0.10000000")
    assert p.avg_entry_price == D("30000.01")
    assert p.realized_pnl == D("1000.49") * D("0.02345678")


def test_unrealised_pnl_and_market_value():
    assert pos("10", "100").unrealized_pnl(D("103")) == D("30")
    assert pos("-10", "100").unrealized_pnl(D("103")) == D("-30")
    assert pos("-10", "100").market_value(D("103")) == D("-1030")
    assert FLAT.unrealized_pnl(D("5")) == 0


@pytest.mark.parametrize(("qty", "price"), [("0", "1"), ("-1", "1"), ("1", "0"), ("1", "-5")])
def test_apply_fill_rejects_non_positive_inputs(qty, price):
    with pytest.raises(ValueError):
        apply_fill(FLAT, "buy", D(qty), D(price))


def test_cash_delta():
    assert cash_delta(Side.BUY, D("10"), D("100.5"), D("1.005")) == D("-1006.005")
    assert cash_delta("sell", D("10"), D("100.5"), D("1.005")) == D("1003.995")
    assert cash_delta("sell", D("10"), D("100.5"), D("-0.5")) == D("1005.5")  # rebate adds cash


def test_reconcile_replays_fills_per_symbol():
    records = [
        FillRecord("AAA", "buy", D("10"), D("100"), D("1")),
        FillRecord("BBB", "sell", D("5"), D("20"), D("0.1")),
        FillRecord("AAA", "sell", D("10"), D("110"), D("1.1")),
        FillRecord("BBB", "buy", D("2"), D("18"), D("0.04")),
    ]
    cash, positions = reconcile(records, D("10000"))
    assert cash == D("10000") - 1000 - 1 + 100 - D("0.1") + 1100 - D("1.1") - 36 - D("0.04")
    assert positions == {"AAA": pos("0", "0", "100"), "BBB": pos("-3", "20", "4")}


def test_reconcile_of_nothing():
    assert reconcile([], D("500")) == (D("500"), {})


symbols = st.sampled_from(["AAA", "BBB", "CCC"])
fill_records = st.builds(
    FillRecord,
    symbol=symbols,
    side=st.sampled_from([Side.BUY, Side.SELL]),
    quantity=st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3),
    price=st.decimals(min_value=D("0.01"), max_value=D("10000"), places=2),
    fee=st.decimals(min_value=D("0"), max_value=D("10"), places=8),
)


@given(st.lists(fill_records, max_size=40), st.decimals(min_value=0, max_value=10**7, places=2))
def test_reconcile_equals_incremental_apply_fill(records, initial_cash):
    cash = initial_cash
    positions: dict[str, PositionState] = {}
    for f in records:
        cash += cash_delta(f.side, f.quantity, f.price, f.fee)
        positions[f.symbol] = apply_fill(positions.get(f.symbol, FLAT), f.side, f.quantity, f.price)
    assert reconcile(records, initial_cash) == (cash, positions)


@given(st.lists(fill_records, max_size=40), st.decimals(min_value=D("0.01"), max_value=D("10000"), places=2))
def test_pnl_is_conserved(records, mark):
    # equity change == realised + unrealised - fees, up to the 1e-10 rounding of average prices.
    cash, positions = reconcile(records, D(0))
    equity = cash + sum((p.market_value(mark) for p in positions.values()), D(0))
    pnl = sum((p.realized_pnl + p.unrealized_pnl(mark) for p in positions.values()), D(0))
    fees = sum((f.fee for f in records), D(0))
    # Each rounding of an average (<= 0.5e-10 per unit) is carried by the whole position held after that
    # fill, so the bound is 1e-10 times the sum of those position sizes (not of the fill sizes).
    held: dict[str, Decimal] = {}
    exposure = D(0)
    for f in records:
        held[f.symbol] = held.get(f.symbol, D(0)) + (f.quantity if f.side is Side.BUY else -f.quantity)
        exposure += abs(held[f.symbol])
    tolerance = D("1e-10") * exposure
    assert abs(equity - (pnl - fees)) <= tolerance


@given(st.lists(fill_records, max_size=30))
def test_position_quantity_is_the_signed_sum_of_fills(records):
    _, positions = reconcile(records, D(0))
    for symbol, p in positions.items():
        signed = sum(
            (f.quantity if f.side is Side.BUY else -f.quantity for f in records if f.symbol == symbol), D(0)
        )
        assert p.quantity == signed
        if p.quantity == 0:
            assert p.avg_entry_price == 0
        else:
            assert p.avg_entry_price > 0
