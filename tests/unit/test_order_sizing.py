"""Sizing rules without a database: notional quantities, close quantities, the reduce-only rule."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from app.domain.trading import accounting
from app.domain.trading.book import AccountBook
from app.domain.trading.bulk import close_quantity
from app.domain.trading.sizing import check_reduce_only, quantity_for_notional
from app.lib.errors import ApiError

D = Decimal


@pytest.mark.parametrize(
    ("notional", "price", "lot", "expected"),
    [
        ("1000", "33.33", "0.001", "30.003"),
        ("99.99", "33.33", "1", "3"),  # exactly three lots: the boundary itself
        ("1000", "3", "0.001", "333.333"),
        ("1", "3", "0.5", "0"),
        ("10", "4", "2.5", "2.5"),
        # 2.999...9 (30 nines) / 1: Decimal's default 28 digits would round the quotient up to 3
        ("2." + "9" * 30, "1", "1", "2"),
    ],
)
def test_notional_quantity_is_floored_to_the_lot_exactly(notional, price, lot, expected):
    qty = quantity_for_notional(D(notional), D(price), D(lot))
    assert qty == D(expected) and "E" not in str(qty)


@pytest.mark.parametrize(
    ("position", "lot", "quantity", "percentage", "expected"),
    [
        ("10", "1", None, None, "10"),
        ("-10", "1", None, None, "10"),
        ("7", "1", None, "50", "3"),  # 3.5 floored to the lot
        ("7", "0.5", None, "50", "3.5"),
        ("7", "1", None, "100", "7"),
        ("7.3", "1", None, "100", "7.3"),  # all of it, even off the lot
        ("7", "1", "2", None, "2"),
    ],
)
def test_close_quantity(position, lot, quantity, percentage, expected):
    q = None if quantity is None else D(quantity)
    p = None if percentage is None else D(percentage)
    assert close_quantity(D(position), D(lot), q, p) == D(expected)


@pytest.mark.parametrize(
    ("quantity", "percentage", "field"),
    [("8", None, "quantity"), ("0", None, "quantity"), (None, "10", "percentage"), (None, "0", "percentage"),
     (None, "100.5", "percentage"), ("1", "10", "percentage")],
)
def test_close_quantity_rejections_name_the_parameter(quantity, percentage, field):
    q = None if quantity is None else D(quantity)
    p = None if percentage is None else D(percentage)
    with pytest.raises(ApiError) as exc:
        close_quantity(D("7"), D("1"), q, p)
    assert exc.value.status_code == 422 and exc.value.extra["errors"][0]["field"] == field


def _book(position: str) -> AccountBook:
    positions = {"ABC": accounting.PositionState(D(position), D(100), D(0))} if D(position) else {}
    return AccountBook(
        id=uuid.uuid4(), owner_id=uuid.uuid4(), cash=D(1000), reserved_cash=D(0), realized_pnl=D(0),
        fees_paid=D(0), peak_equity=D(1000), allow_short=True, trading_state="active", initial_cash=D(1000),
        positions=positions, prices={"ABC": D(100)},
    )


@pytest.mark.parametrize(
    ("position", "side", "quantity", "other", "field"),
    [
        ("0", "sell", "1", "0", "side"),  # nothing to reduce
        ("10", "buy", "1", "0", "side"),  # would grow a long
        ("-10", "sell", "1", "0", "side"),  # would grow a short
        ("10", "sell", "11", "0", "quantity"),  # would reverse
        ("10", "sell", "5", "6", "quantity"),  # would reverse with the other reduce-only sells
        ("-4", "buy", "3", "2", "quantity"),
        ("10", "sell", "4", "6", None),  # closes exactly
        ("-4", "buy", "4", "0", None),
    ],
)
def test_reduce_only_rule(position, side, quantity, other, field):
    book = _book(position)
    if field is None:
        check_reduce_only(book, "ABC", side, D(quantity), D(other))
        return
    with pytest.raises(ApiError) as exc:
        check_reduce_only(book, "ABC", side, D(quantity), D(other))
    assert exc.value.status_code == 422 and exc.value.extra["errors"][0]["field"] == field
