"""execution.execute, the one execution of placement and matching, without a database: scripted cases of
the ioc/fok rule, the caps and the reservation, and properties over generated orders, prices and books."""

from __future__ import annotations

import uuid
from datetime import time
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.trading import decision, execution, rules
from app.domain.trading.accounting import PositionState
from app.domain.trading.book import AccountBook
from app.domain.trading.execution import Caps, OrderState
from app.domain.trading.rules import EventType, OrderStatus, OrderView

S = OrderStatus
TICK, LOT = D("0.01"), D("0.1")
INST = rules.InstrumentInfo(
    symbol="ABC", status="trading", tick_size=TICK, lot_size=LOT, min_quantity=LOT, min_notional=D(0),
    last_price=D(100), maker_fee_rate=D("0.0005"), taker_fee_rate=D("0.001"), slippage_bps=D(0),
    timezone="UTC", session_close=time(21, 0), session_open=time(9, 30), session_days=[1, 2, 3, 4, 5],
)


def make_book(cash="10000", position="0", reserved="0", allow_short=False, limits=None) -> AccountBook:
    positions = {"ABC": PositionState(D(position), D(100) if D(position) else D(0), D(0))}
    return AccountBook(
        id=uuid.uuid4(), owner_id=uuid.uuid4(), cash=D(cash), reserved_cash=D(reserved), realized_pnl=D(0),
        fees_paid=D(0), peak_equity=D(cash), allow_short=allow_short, trading_state="active",
        initial_cash=D(cash), positions=positions, prices={"ABC": D(100)}, limits=limits or [],
    )


def order(side="buy", type_="limit", tif="gtc", qty="10", filled="0", limit=None, stop=None, triggered=False):
    return OrderView(side, type_, tif, D(qty), D(filled), None if limit is None else D(limit),
                     None if stop is None else D(stop), triggered)


def run(view, last, *, immediate, available=None, book=None, status=S.ACCEPTED, reserved="0", caps=execution.NO_CAPS,
        reserve_at=None, inst=INST):
    """Match `view` at `last` as the caller would and execute the result."""
    book = book if book is not None else make_book()
    m = rules.match(view, D(last), None if available is None else D(available), slippage_bps=inst.slippage_bps,
                    tick_size=inst.tick_size, lot_size=inst.lot_size, immediate=immediate)
    before = OrderState(status, view.quantity, view.filled_quantity, D(100) if view.filled_quantity else None,
                        D(0), D(reserved), view.triggered)
    done = execution.execute(view, before, m, symbol="ABC", last_price=D(last), immediate=immediate, book=book,
                             inst=inst, caps=caps, reserve_at=reserve_at)
    return done, book


def kinds(done):
    return [(s.type, s.status_from, s.status_to) for s in done.steps]


# --- the ioc/fok rule --------------------------------------------------------------------------------


def test_fok_fills_entirely_or_is_canceled_at_placement():
    done, _ = run(order(tif="fok", limit="100"), "99", immediate=True)
    assert (done.status, done.state.filled) == (S.FILLED, D(10))
    done, book = run(order(tif="fok", limit="100"), "100.01", immediate=True)
    assert kinds(done) == [(EventType.CANCELED, S.ACCEPTED, S.CANCELED)]
    assert done.steps[0].reason == "fok: could not fill entirely at once"
    assert (done.fill, book.cash) == (None, D(10000))


def test_fok_at_its_trigger_takes_nothing_when_the_volume_is_short():
    done, book = run(order(type_="stop", tif="fok", stop="105"), "106", immediate=False, available="9.9")
    assert kinds(done) == [(EventType.TRIGGERED, S.ACCEPTED, S.ACCEPTED), (EventType.CANCELED, S.ACCEPTED, S.CANCELED)]
    assert done.steps[1].reason == "fok: remainder canceled at trigger"
    assert done.fill is None and book.position("ABC").quantity == 0


def test_fok_that_a_cap_would_cut_fills_nothing():
    """A fok stop triggered at a gap: the cash cap lets it buy 1 of 2 at 106. All or nothing: it buys none
    and ends with the cap's reason (found by test_execute_keeps_every_rule)."""
    fok_stop = order(type_="stop", tif="fok", qty="2", stop="105")
    done, book = run(fok_stop, "106", immediate=False, book=make_book(cash="150"), caps=Caps(cash=True))
    assert done.fill is None and book.position("ABC").quantity == 0 and book.cash == D(150)
    assert kinds(done)[-1] == (EventType.CANCELED, S.ACCEPTED, S.CANCELED)
    assert done.steps[-1].reason == execution.CASH_CAP_REASON
    fok_sell = order(side="sell", type_="limit", tif="fok", qty="5", limit="100")
    done, book = run(fok_sell, "101", immediate=False, book=make_book(position="3"),
                     caps=Caps(reduce_only=True))
    assert done.fill is None and book.position("ABC").quantity == 3
    assert done.steps[-1].reason == execution.REDUCE_ONLY_REASON


def test_ioc_fills_what_it_can_and_cancels_the_rest():
    done, _ = run(order(type_="stop", tif="ioc", stop="105"), "106", immediate=False, available="4")
    assert kinds(done) == [
        (EventType.TRIGGERED, S.ACCEPTED, S.ACCEPTED),
        (EventType.PARTIALLY_FILLED, S.ACCEPTED, S.PARTIALLY_FILLED),
        (EventType.CANCELED, S.PARTIALLY_FILLED, S.CANCELED),
    ]
    assert (done.state.filled, done.state.reason) == (D(4), None)
    assert done.steps[2].reason == "ioc: remainder canceled at trigger"


def test_an_untriggered_ioc_stop_waits():
    done, _ = run(order(type_="stop", tif="ioc", stop="105"), "100", immediate=True)
    assert (done.steps, done.status) == ([], S.ACCEPTED)


def test_gtc_remainder_rests_and_a_resting_limit_fills_as_maker():
    done, _ = run(order(limit="100"), "99", immediate=False, available="3")
    assert kinds(done) == [(EventType.PARTIALLY_FILLED, S.ACCEPTED, S.PARTIALLY_FILLED)]
    assert done.fill == execution.Fill(D(3), D(100), rules.fee(D(300), INST.maker_fee_rate), "maker", D(0))


# --- reservation ---------------------------------------------------------------------------------------


def test_a_new_buy_reserves_its_open_remainder_and_a_sell_nothing():
    done, book = run(order(limit="90"), "100", immediate=True, reserve_at=D(90))
    assert done.state.reserved == decision.reservation(D(10), D(90), INST) == book.reserved_cash
    assert done.reserved_change == book.reserved_cash
    done, book = run(order(side="sell", limit="110"), "100", immediate=True, reserve_at=D(110),
                     book=make_book(position="10"))
    assert (done.state.reserved, book.reserved_cash) == (D(0), D(0))


def test_a_fill_releases_the_reservation_in_proportion_and_the_last_fill_all_of_it():
    book = make_book(reserved="1000")
    done, _ = run(order(limit="100"), "99", immediate=False, available="4", reserved="1000", book=book)
    assert done.state.reserved == D(600) and book.reserved_cash == D(600) and done.reserved_change == D(-400)
    done, _ = run(order(limit="100", filled="4"), "99", immediate=False, status=S.PARTIALLY_FILLED,
                  reserved="600", book=book)
    assert done.state.reserved == 0 and book.reserved_cash == 0


def test_a_cancel_releases_what_is_left():
    book = make_book(reserved="1000")
    done, _ = run(order(type_="stop", tif="ioc", stop="105", qty="10"), "106", immediate=False, available="0",
                  reserved="1000", book=book)
    assert done.status is S.CANCELED and book.reserved_cash == 0 and done.reserved_change == D(-1000)


# --- caps ------------------------------------------------------------------------------------------------


def test_the_cash_cap_cuts_a_gapped_stop_and_cancels_the_rest():
    book = make_book(cash="520", reserved="520")
    done, _ = run(order(type_="stop", stop="50", qty="10"), "100", immediate=False, reserved="520", book=book,
                  caps=Caps(cash=True))
    assert done.fill is not None and done.fill.quantity == D("5.1")  # 520 / (100 * 1.001), to the lot
    assert done.steps[-1].type is EventType.CANCELED and done.steps[-1].reason == execution.CASH_CAP_REASON
    assert done.state.reason == execution.CASH_CAP_REASON and book.cash >= 0 and book.reserved_cash == 0


def test_the_cash_cap_leaves_margin_and_short_accounts_alone():
    levered = make_book(cash="520", reserved="520", limits=[("l", "max_leverage", D(2), None, D(80))])
    done, _ = run(order(type_="stop", stop="50"), "100", immediate=False, reserved="520", book=levered,
                  caps=Caps(cash=True))
    assert done.status is S.FILLED


def test_reduce_only_never_fills_past_flat():
    book = make_book(position="3")
    done, _ = run(order(side="sell", limit="100"), "101", immediate=False, book=book, caps=Caps(reduce_only=True))
    assert done.fill is not None and done.fill.quantity == D(3) and book.position("ABC").quantity == 0
    assert (done.status, done.state.reason) == (S.CANCELED, execution.REDUCE_ONLY_REASON)
    done, _ = run(order(side="sell", limit="100"), "101", immediate=False, book=book, caps=Caps(reduce_only=True))
    assert done.fill is None and done.status is S.CANCELED


def test_an_exit_leg_fills_no_more_than_its_group_allows_nor_past_the_position():
    done, book = run(order(side="sell", limit="100"), "101", immediate=False, book=make_book(position="10"),
                     caps=Caps(group=D(4)))
    assert done.state.filled == D(4) and done.status is S.PARTIALLY_FILLED and book.position("ABC").quantity == 6
    done, _ = run(order(side="sell", limit="100"), "101", immediate=False, book=make_book(position="2"),
                  caps=Caps(group=D(4)))
    assert done.state.filled == D(2)


# --- properties ----------------------------------------------------------------------------------------

lots = st.integers(1, 2000).map(lambda n: n * LOT)
prices = st.integers(1, 50_000).map(lambda n: n * TICK)
rates = st.sampled_from([D(0), D("0.0005"), D("0.001"), D("0.0025"), D("-0.0001")])


@st.composite
def cases(draw):
    side = draw(st.sampled_from(["buy", "sell"]))
    type_ = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    tif = draw(st.sampled_from(["gtc", "day", "ioc", "fok"]))
    immediate = draw(st.booleans())
    quantity = draw(lots)
    filled = D(0) if immediate else draw(st.integers(0, int(quantity / LOT) - 1)) * LOT
    limit = draw(prices) if type_ in ("limit", "stop_limit") else None
    stop = draw(prices) if type_ in ("stop", "stop_limit") else None
    triggered = False if immediate or stop is None else draw(st.booleans())
    if filled and type_ in ("stop", "stop_limit"):
        triggered = True  # (a stop fills only once triggered)
    view = OrderView(side, type_, tif, quantity, filled, limit, stop, triggered)
    last = draw(prices)
    available = None if immediate else draw(st.none() | st.integers(0, 3000).map(lambda n: n * LOT))
    inst = rules.InstrumentInfo(
        symbol="ABC", status="trading", tick_size=TICK, lot_size=LOT, min_quantity=LOT, min_notional=D(0),
        last_price=last, maker_fee_rate=draw(rates), taker_fee_rate=draw(rates),
        slippage_bps=draw(st.sampled_from([D(0), D(5), D(50)])), timezone="UTC", session_close=time(21, 0),
        session_open=time(9, 30), session_days=[1, 2, 3, 4, 5],
    )
    position = draw(st.integers(-3000, 3000)) * LOT
    cash = draw(st.integers(0, 10_000_000)) * TICK
    reserved = D(0) if immediate or side == "sell" else draw(st.integers(0, 1_000_000)) * TICK
    other_reserved = draw(st.integers(0, 1_000_000)) * TICK
    allow_short = draw(st.booleans())
    book = AccountBook(
        id=uuid.uuid4(), owner_id=uuid.uuid4(), cash=cash + reserved + other_reserved,
        reserved_cash=reserved + other_reserved, realized_pnl=D(0), fees_paid=D(0), peak_equity=cash,
        allow_short=allow_short, trading_state="active", initial_cash=cash,
        positions={"ABC": PositionState(position, D(100) if position else D(0), D(0))}, prices={"ABC": last},
    )
    caps = Caps(
        group=draw(st.none() | lots), cash=not immediate, reduce_only=draw(st.booleans()),
    ) if not immediate else execution.NO_CAPS
    status = S.PARTIALLY_FILLED if filled else S.ACCEPTED
    avg = draw(prices) if filled else None
    before = OrderState(status, quantity, filled, avg, D(0) if not filled else D("0.5"), reserved, triggered)
    reserve_at = draw(prices) if immediate else None
    return view, before, last, available, inst, book, caps, immediate, reserve_at


@settings(max_examples=400, deadline=None)
@given(cases())
def test_execute_keeps_every_rule(case):
    view, before, last, available, inst, book, caps, immediate, reserve_at = case
    cash_before, position_before = book.cash, book.position("ABC").quantity
    reserved_cash_before, fees_paid_before = book.reserved_cash, book.fees_paid
    m = rules.match(view, last, available, slippage_bps=inst.slippage_bps, tick_size=TICK, lot_size=LOT,
                    immediate=immediate)
    done = execution.execute(view, before, m, symbol="ABC", last_price=last, immediate=immediate, book=book,
                             inst=inst, caps=caps, reserve_at=reserve_at)
    final = done.state

    # every event is a legal status change, and they chain from the order's status to its final one
    current = before.status
    for step in done.steps:
        assert step.status_from is current
        assert step.status_to is step.status_from or rules.can_transition(step.status_from, step.status_to)
        current = step.status_to
    assert current is final.status
    assert [s.type for s in done.steps].count(EventType.TRIGGERED) == int(m.newly_triggered)

    # quantities: filled never passes the quantity, and only the fill moves it
    fill_qty = done.fill.quantity if done.fill is not None else D(0)
    assert final.filled == before.filled + fill_qty <= view.quantity
    assert fill_qty <= m.fill_qty and rules.is_multiple(fill_qty, LOT)
    assert (final.status is S.FILLED) == (final.filled == view.quantity)
    assert sum(1 for s in done.steps if s.fill) == (done.fill is not None)

    # fok: all or nothing; ioc and fok never rest once executable
    first = m.triggered if immediate else m.newly_triggered
    if view.tif == "fok" and first:
        assert fill_qty in (D(0), view.remaining)
    if view.tif in ("ioc", "fok") and first:
        assert final.status in (S.FILLED, S.CANCELED)
    if final.status is S.CANCELED:
        assert done.steps[-1].type is EventType.CANCELED and done.steps[-1].reason

    # fees: exact for the fill, and booked once
    if done.fill is not None:
        rate = inst.taker_fee_rate if done.fill.liquidity == "taker" else inst.maker_fee_rate
        assert done.fill.fee == rules.fee(done.fill.quantity * done.fill.price, rate)
        assert final.fees == before.fees + done.fill.fee
        assert book.fees_paid == fees_paid_before + done.fill.fee
        total = (before.avg or 0) * before.filled + done.fill.price * fill_qty
        assert final.avg == done.fill.price if not before.filled else (
            abs(final.avg * final.filled - total) <= total * D("1e-25"))
    else:
        assert (final.fees, final.avg, book.cash, book.fees_paid) == (before.fees, before.avg, cash_before,
                                                                      fees_paid_before)

    # the reservation: never negative, kept only by an open order, and the book moves by as much (to the
    # last digits: a proportional release is a division in the 28-digit default context, and the order's,
    # the account's and the change's subtractions round separately)
    assert final.reserved >= 0 and book.reserved_cash >= 0
    assert abs(done.reserved_change - (book.reserved_cash - reserved_cash_before)) < D("1e-20")
    if final.status not in (S.ACCEPTED, S.PARTIALLY_FILLED):
        assert final.reserved == 0
    if reserve_at is not None:
        expected = (decision.reservation(view.quantity - final.filled, reserve_at, inst)
                    if final.status in (S.ACCEPTED, S.PARTIALLY_FILLED) and view.side == "buy" else D(0))
        assert final.reserved == expected
    # other orders' reservations untouched
    assert abs((book.reserved_cash - final.reserved) - (reserved_cash_before - before.reserved)) < D("1e-20")

    # caps
    if caps.cash and view.side == "buy" and not book.allow_short:
        # a cash account's buy never spends what other orders hold back, so cash never goes below zero
        assert book.cash >= reserved_cash_before - before.reserved >= 0
    if caps.reduce_only:
        after = book.position("ABC").quantity
        assert (after >= 0 if position_before >= 0 else after <= 0) and (after <= 0 if position_before <= 0 else True)
        assert abs(after) <= abs(position_before)
    if caps.group is not None:
        assert fill_qty <= caps.group
        assert abs(book.position("ABC").quantity) <= abs(position_before)
