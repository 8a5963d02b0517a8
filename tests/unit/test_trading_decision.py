"""The order decision (app/domain/trading/decision.py) without a database: the checks placement, validate,
contingent entries and replace share, on hand-built books and instruments."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, time
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.trading import decision, queries, rules, schemas
from app.domain.trading.accounting import PositionState
from app.domain.trading.book import AccountBook
from app.domain.trading.schemas import OrderCreate
from app.lib.errors import ApiError

INST = rules.InstrumentInfo(
    symbol="ABC", status="trading", tick_size=D("0.01"), lot_size=D(1), min_quantity=D(1), min_notional=D(10),
    last_price=D(100), maker_fee_rate=D("0.0005"), taker_fee_rate=D("0.001"), slippage_bps=D(0),
    timezone="UTC", session_close=time(21, 0), session_open=time(9, 30), session_days=[1, 2, 3, 4, 5],
)


def book(cash: str = "10000", position: str = "0", open_sells: str = "0", allow_short: bool = False,
         limits: list | None = None) -> AccountBook:
    positions = {"ABC": PositionState(D(position), D(100), D(0))} if D(position) else {}
    return AccountBook(
        id=uuid.uuid4(), owner_id=uuid.uuid4(), cash=D(cash), reserved_cash=D(0), realized_pnl=D(0),
        fees_paid=D(0), peak_equity=D(cash), allow_short=allow_short, trading_state="active",
        initial_cash=D(cash), positions=positions, prices={"ABC": D(100)}, open_sell_quantity=D(open_sells),
        limits=limits or [],
    )


def order(**fields) -> OrderCreate:
    body = {"symbol": "ABC", "side": "buy", "type": "limit", "quantity": D(1), "limit_price": D(100)} | fields
    return OrderCreate(**body)


def field_of(exc: pytest.ExceptionInfo[ApiError]) -> str:
    return exc.value.extra["errors"][0]["field"]  # type: ignore[index]


def test_a_buy_within_buying_power_plans_its_reservation_at_its_limit():
    plan = decision.decide(order(quantity=D(99)), INST, book())
    assert plan.breach is None and plan.price == 100
    assert decision.reservation(D(99), plan.price, INST) == D(9900) + D("9.9")


def test_a_buy_beyond_buying_power_is_422_on_quantity():
    with pytest.raises(ApiError) as exc:
        decision.decide(order(quantity=D(100)), INST, book())
    assert exc.value.status_code == 422 and field_of(exc) == "quantity"


@given(position=st.integers(0, 50), open_sells=st.integers(0, 50), qty=st.integers(1, 60))
def test_a_long_only_sell_fits_exactly_what_open_sells_leave_of_the_position(position, open_sells, qty):
    data = order(side="sell", quantity=D(qty))
    acct = book(position=str(position), open_sells=str(open_sells))
    if qty <= position - open_sells:
        assert decision.decide(data, INST, acct).breach is None
    else:
        with pytest.raises(ApiError) as exc:
            decision.decide(data, INST, acct)
        assert field_of(exc) == "quantity"


def test_reduce_only_counts_the_other_open_reduce_only_orders():
    acct = book(position="10", allow_short=True)
    decision.decide(order(side="sell", quantity=D(4), reduce_only=True), INST, acct, other_reduce_only=D(6))
    over = order(side="sell", quantity=D(5), reduce_only=True)
    with pytest.raises(ApiError) as exc:
        decision.decide(over, INST, acct, other_reduce_only=D(6))
    assert field_of(exc) == "quantity"


def test_min_notional_is_checked_on_the_whole_quantity_and_names_the_field_asked_for():
    with pytest.raises(ApiError) as exc:
        decision.decide(order(quantity=D(1), limit_price=D(5)), INST, book(), notional_field="notional")
    assert field_of(exc) == "notional"
    plan = decision.decide(order(quantity=D(1), limit_price=D(5)), INST, book(), notional_quantity=D(3))
    assert plan.proposed.quantity == 1  # checked on 3 x 5, proposed for what the order leaves open


def test_a_breached_limit_is_returned_not_raised():
    limits = [("l1", "max_order_quantity", D(5), None, D(80))]
    plan = decision.decide(order(quantity=D(6)), INST, book(limits=limits))
    assert plan.breach is not None and plan.breach.limit_type == "max_order_quantity"


def test_validation_against_the_instrument_names_the_field():
    with pytest.raises(ApiError) as exc:
        decision.validate_against_instrument(order(limit_price=D("100.001")), INST)
    assert field_of(exc) == "limit_price"
    with pytest.raises(ApiError) as exc:
        decision.validate_against_instrument(order(), None)
    assert field_of(exc) == "symbol"


def test_next_session_close_is_today_before_the_close_and_tomorrow_after():
    monday = datetime(2026, 1, 5, 20, tzinfo=UTC)
    assert decision.next_session_close(monday, INST) == datetime(2026, 1, 5, 21, tzinfo=UTC)
    assert decision.next_session_close(monday.replace(hour=21), INST) == datetime(2026, 1, 6, 21, tzinfo=UTC)
    assert decision.next_session_close(monday.replace(hour=3), INST) == datetime(2026, 1, 5, 21, tzinfo=UTC)


def test_a_day_order_off_the_trading_days_lives_until_the_next_trading_days_close():
    # A weekday exchange in Los Angeles (09:30-16:00): placed on a Sunday, on a Friday after the close, or
    # on a Monday after the close, a day order expires at the coming session's close, not at 16:00 that day.
    la = replace(INST, timezone="America/Los_Angeles", session_close=time(16), session_open=time(9, 30))
    sunday = datetime(2026, 12, 6, 18, 42, tzinfo=UTC)  # 10:42 PST
    assert decision.next_session_close(sunday, la) == datetime(2026, 12, 8, 0, tzinfo=UTC)  # Monday 16:00 PST
    monday_after_close = datetime(2026, 12, 8, 1, tzinfo=UTC)  # Monday 17:00 PST
    assert decision.next_session_close(monday_after_close, la) == datetime(2026, 12, 9, 0, tzinfo=UTC)
    friday_after_close = datetime(2026, 12, 12, 1, tzinfo=UTC)  # Friday 17:00 PST
    assert decision.next_session_close(friday_after_close, la) == datetime(2026, 12, 15, 0, tzinfo=UTC)
    # An exchange that never closes (a session rolling over at midnight every day): the next midnight.
    always = replace(INST, session_open=time(0), session_close=time(0), session_days=[1, 2, 3, 4, 5, 6, 7])
    assert decision.next_session_close(sunday, always) == datetime(2026, 12, 7, 0, tzinfo=UTC)


def test_the_api_names_and_the_sql_fragments_derive_from_the_rules():
    from typing import get_args

    assert get_args(schemas.Side) == tuple(s.value for s in rules.Side)
    assert get_args(schemas.StatusName) == tuple(s.value for s in rules.OrderStatus)
    assert queries.OPEN == "('new', 'accepted', 'partially_filled')"
    assert queries.OPEN_OR_HELD == "('new', 'held', 'accepted', 'partially_filled')"
    columns = queries.INSTRUMENT_COLUMNS.split(", ")
    exchange = (
        "maker_fee_rate", "taker_fee_rate", "slippage_bps", "timezone", "session_close", "session_open",
        "session_days",
    )
    assert columns == [("e." if f in exchange else "i.") + f for f in rules.INSTRUMENT_FIELDS]
    assert queries.ORDER_FIELDS == tuple(f for f in schemas.OrderOut.__struct_fields__ if f != "legs")


def test_contingent_bodies_are_routed_away_from_the_simple_placement_path():
    import asyncio

    from app.domain.trading import placement

    bracket = order(order_class="bracket", take_profit={"limit_price": "120"}, stop_loss={"stop_price": "80"})
    trailing = order(type="trailing_stop", side="sell", limit_price=None, trail_price=D(2))
    assert decision.is_contingent(bracket) and decision.is_contingent(trailing)
    assert not decision.is_contingent(order())
    with pytest.raises(TypeError, match="services.place_order"):
        asyncio.run(placement.place_order(None, None, uuid.uuid4(), bracket))  # type: ignore[arg-type]


def test_a_replayed_order_decodes_from_the_json_array_placement_reads():
    import msgspec

    from app.domain.trading import placement

    now = datetime(2026, 1, 5, 20, 1, 2, 345678, tzinfo=UTC)
    stored = schemas.OrderOut(
        uuid.uuid4(), "c-1", uuid.uuid4(), "ABC", "buy", "limit", D("10"), D("2.5"), D("99.125"), D("99.50"),
        None, "gtc", "partially_filled", None, D("0.12"), now, now, reduce_only=True, version=3,
    )
    # What json_build_array sends: ids and numbers as text (queries.ORDER_JSON), times as ISO strings.
    as_json = msgspec.json.decode(msgspec.json.encode([getattr(stored, f) for f in queries.ORDER_FIELDS]))
    assert {f for f in queries.ORDER_FIELDS if f"o.{f}::text" in queries.ORDER_JSON} == {
        "id", "account_id", "parent_id", "quantity", "filled_quantity", "avg_fill_price", "limit_price",
        "stop_price", "fees", "trail_price", "trail_percent", "hwm", "notional",
    }
    assert placement.existing_order(as_json) == stored
