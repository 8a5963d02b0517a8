"""Plain notation at the codec and at the encoder (app/lib/decimals.py), and the decimal-string check."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from app.lib.decimals import decode_numeric, encode_json, plain
from app.lib.errors import ApiError
from app.lib.request import check_decimal_strings, decimal_paths, exact_numbers


def test_codec_reads_postgres_text_exactly_and_plainly():
    assert str(decode_numeric("100000")) == "100000"
    assert str(decode_numeric("1.50")) == "1.50"  # the stored scale survives
    assert str(decode_numeric("0.00000000")) == "0"
    assert str(decode_numeric("0.000001")) == "0.000001"
    assert decode_numeric("0.00000050") == D("0.0000005")


def test_encoder_renders_arithmetic_decimals_plainly_and_leaves_text_alone():
    body = {"cash": D("1.0E+5"), "fee": D("0E-8"), "tiny": D("5.0E-7"), "name": "1E+5", "ratio": 1e-7}
    assert msgspec.json.decode(encode_json(body)) == {
        "cash": "100000",
        "fee": "0",
        "tiny": "0.0000005",
        "name": "1E+5",
        "ratio": 1e-7,
    }
    assert encode_json({"price": D("101.250")}) == b'{"price":"101.250"}'
    assert plain(D("1.00E+6")) == "1000000"


def test_a_negative_zero_loses_its_sign_where_it_is_made_and_when_rendered():
    # -1 * 0.00 is Decimal("-0.00"): the unrealised PnL of a short marked at its entry price.
    from app.domain.trading.accounting import PositionState
    from app.lib.decimals import nonnegative_zero

    short = PositionState(D(-5), D("100.00"), D(0))
    assert str(short.unrealized_pnl(D("100.00"))) == "0.00"
    assert str(nonnegative_zero(D(-1) * D("0.00"))) == "0.00" and str(nonnegative_zero(D("-0.25"))) == "-0.25"
    assert plain(D("-0E-8")) == "0" and plain(D("-0.000")) == "0.000"
    assert msgspec.json.decode(encode_json({"pnl": short.unrealized_pnl(D(100)), "small": D("-0.25")})) == {
        "pnl": "0.00", "small": "-0.25"
    }


class Leg(msgspec.Struct):
    price: D


class Body(msgspec.Struct):
    qty: D
    name: str
    legs: list[Leg] = []
    weights: dict[str, D] = {}
    maybe: D | None = None


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"qty": "1_000", "name": "x"}, "qty"),
        ({"qty": "1", "name": "x", "legs": [{"price": "1"}, {"price": " 2"}]}, "legs[1].price"),
        ({"qty": "1", "name": "x", "weights": {"A": "\uff11"}}, "weights.A"),
        ({"qty": "1", "name": "x", "maybe": "\u0661"}, "maybe"),
    ],
)
def test_decimal_strings_outside_the_pattern_name_their_field(value, field):
    with pytest.raises(ApiError) as caught:
        check_decimal_strings(value, decimal_paths(Body))
    assert caught.value.status_code == 422
    assert caught.value.extra["errors"][0]["field"] == field


class Loose(msgspec.Struct):
    qty: D
    ratio: float = 0.0
    params: dict[str, object] = {}
    legs: list[Leg] = []


def test_numbers_are_exact_at_decimal_positions_and_floats_elsewhere():
    body = b'{"qty": 12345678901234567.25, "ratio": 0.1,'
    body += b' "params": {"a": 2.5, "b": [1.5, {"c": 1e2}], "n": 3},'
    body += b' "legs": [{"price": 1e2}, {"price": "100.10"}]}'
    parsed = exact_numbers(msgspec.json.Decoder(float_hook=D).decode(body), decimal_paths(Loose))
    assert parsed["qty"] == D("12345678901234567.25") and str(parsed["qty"]) == "12345678901234567.25"
    assert [type(leg["price"]) for leg in parsed["legs"]] == [D, str] and parsed["legs"][0]["price"] == 100
    # every other number is the float the handlers have always been given
    assert parsed["ratio"] == 0.1 and type(parsed["ratio"]) is float
    assert parsed["params"] == {"a": 2.5, "b": [1.5, {"c": 100.0}], "n": 3}
    assert type(parsed["params"]["b"][1]["c"]) is float and type(parsed["params"]["n"]) is int
    with pytest.raises(ApiError) as caught:
        exact_numbers({"qty": "1", "legs": [{"price": " 1"}]}, decimal_paths(Loose))
    assert caught.value.extra["errors"][0]["field"] == "legs[0].price"


def test_plain_decimal_strings_and_other_text_pass():
    check_decimal_strings({"qty": "1e5", "name": " 1_000 ", "legs": [{"price": 2.5}]}, decimal_paths(Body))


def test_stream_messages_and_stored_orders_carry_decimals_in_plain_notation():
    # The stream's encoder is the REST one: a trade_update whose fee, reservation or position is a zero
    # with an exponent (0E-8: a zero fee kept at the fee scale) reads "0" on the wire, as /activities.
    import uuid
    from datetime import UTC, datetime

    from app.domain.streams import messages
    from app.domain.streams.log import stored_order
    from app.domain.trading.schemas import OrderOut

    now = datetime(2026, 12, 6, tzinfo=UTC)
    order = OrderOut(
        uuid.uuid4(), None, uuid.uuid4(), "ABC", "buy", "limit", D("1"), D("1"), D("1.0E+2"), D("100"), None,
        "gtc", "filled", None, D("0E-8"), now, now,
    )
    update = messages.trade_update(
        order.account_id, 3, "filled", now, order, uuid.uuid4(),
        {"quantity": "1", "price": "100", "fee": "0E-8", "liquidity": "maker", "realized_pnl": "0E-8"},
        D("0E-8"),
    )
    wire = msgspec.json.decode(messages.encode(update))
    assert wire["order"]["fees"] == "0" and wire["order"]["avg_fill_price"] == "100"
    assert wire["fill"]["fee"] == "0" and wire["fill"]["realized_pnl"] == "0" and wire["position_qty"] == "0"
    stored = stored_order(order)
    assert stored["fees"] == "0" and stored["avg_fill_price"] == "100" and stored["id"] == str(order.id)


def test_messages_quote_numbers_in_plain_notation():
    from app.lib.decimals import plain_in_text

    assert plain_in_text("quantity 1E-7 is not a multiple of lot_size 1") == (
        "quantity 0.0000001 is not a multiple of lot_size 1"
    )
    assert plain_in_text("price (2E-8), x=1e3; -1.5E+3.") == "price (0.00000002), x=1000; -1500."
    # identifiers and values too large to spell out keep their form
    uid = "0d6f2c1a-12e4-4a1b-9c3d-1e5f00000000"
    assert plain_in_text(f"account {uid} not found") == f"account {uid} not found"
    assert plain_in_text("1E-400% of 47") == "1E-400% of 47" and plain_in_text("code E42") == "code E42"
    # an ApiError's detail and field messages go through it
    err = ApiError(422, "quantity 1E+1 exceeds 5", errors=[{"field": "quantity", "message": "1E+1 > 5"}])
    assert err.detail == "quantity 10 exceeds 5"
    assert err.extra["errors"] == [{"field": "quantity", "message": "10 > 5"}]


def test_report_numbers_below_one_keep_significant_digits_in_plain_notation():
    from app.domain.backtesting.report import num

    assert num(1.1e-06, 4) == "0.0000011" and num(0.123456, 4) == "0.1235" and num(-0.5) == "-0.5"
    assert num(1234.5) == "1,234.50" and num(0.0) == "0.00" and num(float("nan")) == "–"
