from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.trading.rules import (
    ALLOWED_TRANSITIONS,
    OPEN_OR_HELD_STATUSES,
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    EventType,
    IllegalTransition,
    OrderStatus,
    OrderType,
    OrderView,
    Side,
    TimeInForce,
    can_transition,
    fee,
    fill_price_for_market,
    fill_status,
    floor_to_lot,
    is_multiple,
    is_triggered,
    markdown_transition_table,
    match,
    round_to_tick,
    transition,
)

D = Decimal
S = OrderStatus
TICK = D("0.01")
LOT = D("1")


def view(side="buy", type_="limit", tif="gtc", qty="10", filled="0", limit=None, stop=None, triggered=False):
    return OrderView(
        side=Side(side),
        type=OrderType(type_),
        tif=TimeInForce(tif),
        quantity=D(qty),
        filled_quantity=D(filled),
        limit_price=D(limit) if limit is not None else None,
        stop_price=D(stop) if stop is not None else None,
        triggered=triggered,
    )


def run(order, last, available=None, *, immediate, bps=0, lot=LOT, tick=TICK):
    return match(
        order,
        D(last),
        D(available) if available is not None else None,
        slippage_bps=D(bps),
        tick_size=tick,
        lot_size=lot,
        immediate=immediate,
    )


# --- enums ----------------------------------------------------------------------------------------


def test_enum_values_match_the_api():
    assert [s.value for s in Side] == ["buy", "sell"]
    assert [t.value for t in OrderType] == ["market", "limit", "stop", "stop_limit", "trailing_stop"]
    assert [t.value for t in TimeInForce] == ["gtc", "ioc", "fok", "day"]
    assert [s.value for s in OrderStatus] == [
        "new",
        "held",
        "accepted",
        "partially_filled",
        "filled",
        "canceled",
        "rejected",
        "expired",
    ]
    assert {e.value for e in EventType} == {
        "created",
        "accepted",
        "rejected",
        "triggered",
        "partially_filled",
        "filled",
        "canceled",
        "expired",
        "held",
        "activated",
        "reduced",
        "replaced",
    }
    assert Side("buy") == "buy"  # str enums compare equal to the stored strings
    assert str(OrderStatus.PARTIALLY_FILLED) == f"{OrderStatus.PARTIALLY_FILLED}" == "partially_filled"


# --- status machine -------------------------------------------------------------------------------


def test_transition_table_is_complete_and_explicit():
    assert set(ALLOWED_TRANSITIONS) == set(OrderStatus)
    assert ALLOWED_TRANSITIONS[S.NEW] == {S.HELD, S.ACCEPTED, S.REJECTED, S.CANCELED}
    # an exit leg waiting for its entry
    assert ALLOWED_TRANSITIONS[S.HELD] == {S.ACCEPTED, S.CANCELED, S.EXPIRED}
    assert ALLOWED_TRANSITIONS[S.ACCEPTED] == {S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}
    assert ALLOWED_TRANSITIONS[S.PARTIALLY_FILLED] == {S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}
    assert TERMINAL_STATUSES == {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
    assert OPEN_OR_HELD_STATUSES == {S.NEW, S.HELD, S.ACCEPTED, S.PARTIALLY_FILLED}
    assert OPEN_STATUSES == {S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED}  # a held leg neither fills nor counts
    for status in TERMINAL_STATUSES:
        assert ALLOWED_TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("new", list(OrderStatus))
def test_transition_allows_exactly_the_table(current, new):
    if new in ALLOWED_TRANSITIONS[current]:
        assert transition(current, new) is new
        assert can_transition(current.value, new.value)
    else:
        with pytest.raises(IllegalTransition) as exc:
            transition(current, new)
        assert exc.value.current is current and exc.value.new is new
        assert not can_transition(current, new)


def test_transition_accepts_strings_and_rejects_unknown_status():
    assert transition("accepted", "filled") is S.FILLED
    with pytest.raises(ValueError):
        transition("accepted", "done")


@given(st.lists(st.sampled_from(list(OrderStatus)), max_size=30))
def test_random_status_walks_never_leave_the_table(attempts):
    current = S.NEW
    path = [current]
    for wanted in attempts:
        try:
            current = transition(current, wanted)
            path.append(current)
        except IllegalTransition:
            assert wanted not in ALLOWED_TRANSITIONS[current]
    for a, b in zip(path, path[1:], strict=False):
        assert b in ALLOWED_TRANSITIONS[a]
    # Once terminal, nothing moves.
    if path[-1] in TERMINAL_STATUSES:
        assert all(path[i] not in TERMINAL_STATUSES for i in range(len(path) - 1))


def test_markdown_transition_table():
    md = markdown_transition_table()
    lines = md.strip().splitlines()
    assert lines[0] == "| From | Allowed next statuses |"
    assert len(lines) == 2 + len(OrderStatus)
    assert "| `new` | `held`, `accepted`, `canceled`, `rejected` |" in lines
    assert "| `held` | `accepted`, `canceled`, `expired` |" in lines
    assert "| `filled` | — (terminal) |" in lines


# --- increments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "inc", "expected"),
    [
        ("0.3", "0.1", True),
        ("100.05", "0.01", True),
        ("100.005", "0.01", False),
        ("0", "0.01", True),
        ("1.50", "0.5", True),
        ("1.49", "0.5", False),
        ("10", "0.03", False),
        ("0.09", "0.03", True),
        ("1E+40", "1E-20", True),  # quotient far beyond the default 28-digit context
        ("123456789012345678901234567890.3", "0.25", False),
        ("123456789012345678901234567890.75", "0.25", True),
    ],
)
def test_is_multiple_examples(value, inc, expected):
    assert is_multiple(D(value), D(inc)) is expected


@pytest.mark.parametrize("inc", ["0", "-0.01", "NaN", "Infinity"])
def test_is_multiple_needs_positive_increment(inc):
    with pytest.raises(ValueError):
        is_multiple(D("1"), D(inc))


def test_is_multiple_non_finite_value_is_false():
    assert is_multiple(D("NaN"), D("0.01")) is False
    assert is_multiple(D("Infinity"), D("0.01")) is False


increments = st.decimals(min_value=D("0.00000001"), max_value=D("1000"), places=8)
values = st.decimals(min_value=D("-100000"), max_value=D("100000"), places=10)


@given(st.integers(min_value=-(10**12), max_value=10**12), increments)
def test_integer_multiples_are_multiples(k, inc):
    assert is_multiple(D(k) * inc, inc)


@given(values, increments)
def test_is_multiple_iff_value_is_integer_times_increment(value, inc):
    k = Fraction(value) / Fraction(inc)
    assert is_multiple(value, inc) == (k.denominator == 1)
    if k.denominator == 1:
        assert value == D(k.numerator) * inc


@given(st.integers(min_value=-(10**9), max_value=10**9), increments, st.fractions(min_value=0, max_value=1))
def test_strictly_between_multiples_is_not_a_multiple(k, inc, offset):
    if offset in (0, 1):
        return
    value = D(k) * inc + inc * D(offset.numerator) / D(offset.denominator)
    if Fraction(value) / Fraction(inc) != k + offset:
        return  # the offset did not survive decimal rounding; not the case under test
    assert not is_multiple(value, inc)


@pytest.mark.parametrize(
    ("price", "tick", "rounding", "expected"),
    [
        ("100.123", "0.01", ROUND_HALF_EVEN, "100.12"),
        ("100.125", "0.01", ROUND_HALF_EVEN, "100.12"),
        ("100.135", "0.01", ROUND_HALF_EVEN, "100.14"),
        ("100.125", "0.01", ROUND_HALF_UP, "100.13"),
        ("100.121", "0.01", ROUND_CEILING, "100.13"),
        ("100.129", "0.01", ROUND_FLOOR, "100.12"),
        ("100.12", "0.01", ROUND_CEILING, "100.12"),
        ("100.30", "0.25", ROUND_HALF_EVEN, "100.25"),
        ("100.375", "0.25", ROUND_HALF_EVEN, "100.50"),  # exactly half: 401.5 ticks -> 402
        ("1", "0.03", ROUND_FLOOR, "0.99"),
        ("1", "0.03", ROUND_CEILING, "1.02"),
    ],
)
def test_round_to_tick(price, tick, rounding, expected):
    assert round_to_tick(D(price), D(tick), rounding) == D(expected)


@given(values, increments)
def test_round_to_tick_is_a_nearest_multiple(price, tick):
    r = round_to_tick(price, tick)
    assert is_multiple(r, tick)
    assert abs(r - price) <= tick / 2
    assert round_to_tick(price, tick, ROUND_FLOOR) <= price <= round_to_tick(price, tick, ROUND_CEILING)


def test_floor_to_lot():
    assert floor_to_lot(D("3.7"), D("1")) == D("3")
    assert floor_to_lot(D("0.0149"), D("0.001")) == D("0.014")
    assert floor_to_lot(D("5"), D("0.5")) == D("5")


# --- prices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "last", "bps", "expected"),
    [
        ("buy", "100", "5", "100.05"),  # exact: 100 * 1.0005
        ("sell", "100", "5", "99.95"),
        ("buy", "100.01", "5", "100.07"),  # 100.060005 rounds up, never down to 100.06
        ("sell", "100.01", "5", "99.95"),  # 99.959995 rounds down, never up to 99.96
        ("buy", "100.00", "0", "100.00"),
        ("buy", "100.004", "0", "100.01"),  # an off-grid last is rounded against the taker too
        ("sell", "100.004", "0", "100.00"),
        ("buy", "10.00", "1", "10.01"),  # 10.001: one bp of slippage is never rounded away
        ("sell", "10.00", "1", "9.99"),
        ("sell", "0.01", "10", "0.01"),  # would floor to 0: clamped to one tick
    ],
)
def test_fill_price_for_market(side, last, bps, expected):
    assert fill_price_for_market(side, D(last), D(bps), TICK) == D(expected)


def test_fill_price_for_market_rejects_bad_inputs():
    with pytest.raises(ValueError):
        fill_price_for_market("buy", D("0"), D(5), TICK)
    with pytest.raises(ValueError):
        fill_price_for_market("buy", D("100"), D(-1), TICK)


@given(
    st.decimals(min_value=D("0.01"), max_value=D("100000"), places=4),
    st.decimals(min_value=D("0"), max_value=D("500"), places=2),
)
def test_market_slippage_is_never_rounded_in_the_traders_favour(last, bps):
    raw_buy = Fraction(last) * (1 + Fraction(bps) / 10000)
    raw_sell = Fraction(last) * (1 - Fraction(bps) / 10000)
    buy = fill_price_for_market(Side.BUY, last, bps, TICK)
    sell = fill_price_for_market(Side.SELL, last, bps, TICK)
    assert is_multiple(buy, TICK) and is_multiple(sell, TICK)
    assert raw_buy <= Fraction(buy) < raw_buy + Fraction(TICK)
    if raw_sell >= Fraction(TICK):
        assert raw_sell - Fraction(TICK) < Fraction(sell) <= raw_sell
    else:
        assert sell == TICK


# --- triggering and matching ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "stop", "last", "expected"),
    [
        ("buy", "105", "104.99", False),
        ("buy", "105", "105", True),
        ("buy", "105", "106", True),
        ("sell", "95", "95.01", False),
        ("sell", "95", "95", True),
        ("sell", "95", "90", True),
    ],
)
def test_is_triggered_for_stops(side, stop, last, expected):
    assert is_triggered(view(side, "stop", stop=stop), D(last)) is expected
    assert is_triggered(view(side, "stop_limit", stop=stop, limit=stop), D(last)) is expected


def test_non_stop_orders_are_always_triggered_and_stops_stay_triggered():
    assert is_triggered(view("buy", "market"), D("1"))
    assert is_triggered(view("buy", "limit", limit="1"), D("1000"))
    assert is_triggered(view("buy", "stop", stop="105", triggered=True), D("1"))


def test_order_view_validation_and_remaining():
    with pytest.raises(ValueError):
        view("buy", "limit")
    with pytest.raises(ValueError):
        view("buy", "stop")
    with pytest.raises(ValueError):
        view("buy", "stop_limit", stop="1")
    v = OrderView("sell", "market", "ioc", D("10"), D("3.5"))  # plain strings as stored
    assert v.side is Side.SELL and v.type is OrderType.MARKET and v.tif is TimeInForce.IOC
    assert v.remaining == D("6.5")


def test_market_order_fills_whole_quantity_as_taker_with_slippage():
    r = run(view("buy", "market"), "100", immediate=True, bps=5)
    assert (r.triggered, r.fill_qty, r.fill_price, r.liquidity) == (True, D("10"), D("100.05"), "taker")
    assert r.newly_triggered is False and r.filled


def test_market_order_partial_fill_limited_by_volume_floored_to_lot():
    r = run(view("sell", "market", qty="10"), "100", "3.7", immediate=True)
    assert (r.fill_qty, r.fill_price) == (D("3"), D("100"))
    r = run(view("sell", "market", qty="1.000"), "100", "0.3456", immediate=True, lot=D("0.001"))
    assert r.fill_qty == D("0.345")


def test_volume_below_one_lot_fills_nothing():
    r = run(view("buy", "market"), "100", "0.5", immediate=True)
    assert (r.fill_qty, r.fill_price, r.liquidity) == (D(0), None, None)
    r = run(view("buy", "market"), "100", "0", immediate=True)
    assert r.fill_qty == 0


def test_partially_filled_order_matches_only_its_remainder():
    r = run(view("buy", "market", qty="10", filled="7"), "100", immediate=False)
    assert r.fill_qty == D("3")
    r = run(view("buy", "market", qty="10", filled="10"), "100", immediate=False)
    assert r.fill_qty == 0 and r.fill_price is None


@pytest.mark.parametrize(
    ("side", "limit", "last", "price"),
    [
        ("buy", "100", "99", "99"),  # marketable: better than the limit, at the last price
        ("buy", "100", "100", "100"),
        ("sell", "100", "101", "101"),
        ("sell", "100", "100", "100"),
        ("buy", "100.00", "99.994", "100.00"),  # off-grid last: rounded up, capped at the limit
        ("sell", "100.00", "100.006", "100.00"),
    ],
)
def test_marketable_limit_at_placement_fills_at_last_as_taker(side, limit, last, price):
    r = run(view(side, "limit", limit=limit), last, immediate=True)
    assert (r.fill_qty, r.fill_price, r.liquidity) == (D("10"), D(price), "taker")


@pytest.mark.parametrize(("side", "limit", "last"), [("buy", "100", "100.01"), ("sell", "100", "99.99")])
def test_non_marketable_limit_rests(side, limit, last):
    for immediate in (True, False):
        r = run(view(side, "limit", limit=limit), last, immediate=immediate)
        assert (r.triggered, r.fill_qty, r.fill_price, r.liquidity) == (True, D(0), None, None)


@pytest.mark.parametrize(
    ("side", "limit", "last"),
    [("buy", "100", "100"), ("buy", "100", "95"), ("sell", "100", "100"), ("sell", "100", "105")],
)
def test_resting_limit_touched_or_crossed_fills_at_its_limit_as_maker(side, limit, last):
    r = run(view(side, "limit", limit=limit), last, immediate=False)
    assert (r.fill_qty, r.fill_price, r.liquidity) == (D("10"), D(limit), "maker")


def test_stop_waits_then_triggers_into_a_market_fill():
    order = view("buy", "stop", stop="105")
    r = run(order, "104.99", immediate=False)
    assert (r.triggered, r.newly_triggered, r.fill_qty) == (False, False, D(0))
    r = run(order, "105.00", immediate=False, bps=10)
    assert (r.triggered, r.newly_triggered) == (True, True)
    assert (r.fill_qty, r.fill_price, r.liquidity) == (D("10"), D("105.11"), "taker")  # 105.105 up


def test_sell_stop_triggers_at_or_below():
    r = run(view("sell", "stop", stop="95"), "94", immediate=False, bps=0)
    assert (r.newly_triggered, r.fill_price, r.liquidity) == (True, D("94"), "taker")


def test_triggered_stop_remainder_keeps_filling_as_market():
    order = view("sell", "stop", stop="95", filled="4", triggered=True)
    r = run(order, "97", "2", immediate=False)
    assert (r.triggered, r.newly_triggered, r.fill_qty, r.fill_price) == (True, False, D("2"), D("97"))


def test_stop_marketable_at_placement_fills_at_once():
    r = run(view("buy", "stop", stop="100"), "101", immediate=True)
    assert (r.newly_triggered, r.fill_qty, r.fill_price, r.liquidity) == (True, D("10"), D("101"), "taker")


def test_stop_limit_triggered_and_marketable_fills_at_last_as_taker():
    order = view("buy", "stop_limit", stop="105", limit="106")
    r = run(order, "105.5", immediate=False)
    assert (r.newly_triggered, r.fill_qty, r.fill_price, r.liquidity) == (True, D("10"), D("105.5"), "taker")


def test_stop_limit_triggered_but_not_marketable_rests_then_fills_at_limit_as_maker():
    order = view("buy", "stop_limit", stop="105", limit="106")
    r = run(order, "107", immediate=False)  # gaps through the stop and the limit
    assert (r.triggered, r.newly_triggered, r.fill_qty) == (True, True, D(0))
    resting = view("buy", "stop_limit", stop="105", limit="106", triggered=True)
    assert run(resting, "106.5", immediate=False).fill_qty == 0
    r = run(resting, "105.8", immediate=False)
    assert (r.newly_triggered, r.fill_qty, r.fill_price, r.liquidity) == (False, D("10"), D("106"), "maker")


def test_sell_stop_limit():
    order = view("sell", "stop_limit", stop="95", limit="94")
    assert run(order, "96", immediate=False).triggered is False
    r = run(order, "94.5", immediate=False)
    assert (r.fill_price, r.liquidity) == (D("94.5"), "taker")
    r = run(order, "93", immediate=False)
    assert (r.triggered, r.fill_qty) == (True, D(0))


# --- fills (the ioc/fok rule on a match: tests/unit/test_execution.py) -------------------------------


def test_fill_status():
    order = view("buy", "limit", qty="10", filled="4", limit="100")
    assert fill_status(order, D("6")) is S.FILLED
    assert fill_status(order, D("5")) is S.PARTIALLY_FILLED
    with pytest.raises(ValueError):
        fill_status(order, D(0))


# --- fees -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notional", "rate", "expected"),
    [
        ("1234.5678", "0.001", "1.23456780"),
        ("1000", "0.0004", "0.40000000"),
        ("0.000000025", "1", "0.00000002"),  # half-even: 2.5e-8 -> 2e-8
        ("0.000000035", "1", "0.00000004"),  # 3.5e-8 -> 4e-8
        ("100.123456789", "0.1", "10.01234568"),
        ("1000", "-0.0001", "-0.10000000"),  # maker rebate
        ("123456789012345678901.5", "0.001", "123456789012345678.90150000"),  # beyond 28 digits
        ("1000", "0", "0"),  # a zero fee is plain 0, not 0E-8 (events store it as text)
        ("0.000000004", "1", "0"),  # rounds to zero: the same
    ],
)
def test_fee(notional, rate, expected):
    result = fee(D(notional), D(rate))
    assert result == D(expected)
    assert result.as_tuple().exponent == (-8 if result else 0)


# The Decimal fast path must agree with the exact Fraction path digit for digit (value and exponent:
# prices are serialised as strings), including ratios that do not terminate (ticks like 0.03 or 7).
_INCREMENTS = st.sampled_from(["0.01", "0.05", "0.25", "1", "0.5", "0.03", "7", "0.0001", "1E-8", "0.07", "12.5"])
_MODES = st.sampled_from([ROUND_HALF_EVEN, ROUND_CEILING, ROUND_FLOOR, "ROUND_HALF_UP", "ROUND_DOWN", "ROUND_UP"])


@settings(max_examples=400, deadline=None)
@given(
    x=st.decimals(min_value=D("-1e9"), max_value=D("1e9"), allow_nan=False, allow_infinity=False, places=6),
    inc=_INCREMENTS,
    mode=_MODES,
)
def test_decimal_rounding_fast_path_matches_the_exact_path(x, inc, mode):
    from app.domain.trading.rules import _round_decimal_to_increment, _round_fraction_to_increment

    exact = _round_fraction_to_increment(Fraction(x), D(inc), mode)
    fast = _round_decimal_to_increment(x, D(inc), mode)
    if fast is not None:
        assert (fast, str(fast)) == (exact, str(exact))
    assert round_to_tick(x, D(inc), mode) == exact
    assert str(round_to_tick(x, D(inc), mode)) == str(exact)
    assert is_multiple(x, D(inc)) is ((Fraction(x) / Fraction(D(inc))).denominator == 1)


@settings(max_examples=300, deadline=None)
@given(
    last=st.decimals(min_value=D("0.0001"), max_value=D("1e7"), allow_nan=False, allow_infinity=False, places=4),
    bps=st.sampled_from([0, 1, 5, 7, 25, 100, 333]),
    tick=_INCREMENTS,
    side=st.sampled_from(["buy", "sell"]),
)
def test_market_fill_price_matches_the_exact_fraction_formula(last, bps, tick, side):
    from app.domain.trading.rules import _round_fraction_to_increment

    move = Fraction(bps) / 10000
    if side == "buy":
        expected = _round_fraction_to_increment(Fraction(last) * (1 + move), D(tick), ROUND_CEILING)
    else:
        expected = _round_fraction_to_increment(Fraction(last) * (1 - move), D(tick), ROUND_FLOOR)
        expected = expected if expected > 0 else D(tick)
    got = fill_price_for_market(side, last, bps, D(tick))
    assert (got, str(got)) == (expected, str(expected))


@given(side=st.sampled_from(["buy", "sell"]), last=st.decimals("0.01", "100000", places=2),
       bps=st.integers(0, 500), type_=st.sampled_from(["market", "stop"]))
def test_match_with_the_callers_market_price_equals_match_without_it(side, last, bps, type_):
    # Placement prices a market order for its checks, then hands that price to match (market_price).
    order = view(side=side, type_=type_, stop="0.01" if side == "buy" else "100000", triggered=True)
    expected = fill_price_for_market(side, last, D(bps), TICK)
    plain = match(order, last, None, slippage_bps=D(bps), tick_size=TICK, lot_size=LOT, immediate=True)
    given_price = match(order, last, None, slippage_bps=D(bps), tick_size=TICK, lot_size=LOT, immediate=True,
                        market_price=expected)
    assert plain == given_price and plain.fill_price == expected


def test_order_view_and_transition_accept_stored_strings_and_reject_unknown_ones():
    assert OrderView("buy", "limit", "day", D(1), D(0), limit_price=D(1)).tif is TimeInForce.DAY
    assert transition("accepted", "filled") is S.FILLED and transition(S.NEW, S.ACCEPTED) is S.ACCEPTED
    with pytest.raises(ValueError):
        OrderView("hold", "market", "gtc", D(1), D(0))
    with pytest.raises(ValueError):
        OrderView("buy", "market", "forever", D(1), D(0))
    with pytest.raises(ValueError):
        transition("accepted", "teleported")
