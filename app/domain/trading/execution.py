"""What one order does at one price, once its match is known: pure, no I/O.

Placement (`placement.execute_and_write`: a new order at the last price) and price matching
(`matching.match_resting_orders`: a resting order at a new price) both ask `rules.match` what the price
offers and then call `execute`, which applies the rest of the rules in one place:

* the ioc/fok remainder rule at the order's first executable moment (`first_moment`: placement for
  market and limit orders, the trigger for stops): fok fills all or nothing, ioc never rests;
* the caps the caller says apply (`Caps`): a contingent exit leg never fills more than its group allows
  nor past the position it closes; a cash account's buy never takes cash below zero (a gap can make a
  triggered stop cost more than was reserved); a reduce-only order never reverses the position. A capped
  fill cancels the rest, with the cap's reason;
* the fill, booked on the account's in-memory `AccountBook` (cash, position, fees, realised PnL), the
  release of the order's reservation in proportion to what filled (all of it when the order ends), and
  for a new order that rests (`reserve_at`) the reservation of what it leaves open;
* the order's events in order (`Step`), each with the order's state after it, every status change
  checked against `rules.ALLOWED_TRANSITIONS`.

The callers keep what needs the database or the order's identity: the ids of the order and the fill,
the event rows and the order states in their own shapes, the contingent-group hooks (matching drives
`groups.on_entry_fill` and friends from the steps), the writes and the stream messages.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import msgspec

from app.domain.risk.pretrade import margin_multiplier
from app.domain.trading import rules
from app.domain.trading.book import AccountBook
from app.domain.trading.decision import reservation
from app.domain.trading.rules import EventType, MatchResult, OrderStatus, OrderView
from app.lib.decimals import plain

ZERO = Decimal(0)
_IOC_FOK = (rules.TimeInForce.IOC, rules.TimeInForce.FOK)
_OPEN_AFTER = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)

CASH_CAP_REASON = "insufficient cash for the full fill"
REDUCE_ONLY_REASON = "reduce_only: the position is closed"


class Costs(Protocol):
    """What execution reads of the instrument and its exchange (an `InstrumentInfo` or a row with these)."""

    lot_size: Decimal
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal


class Caps(msgspec.Struct, frozen=True, gc=False):
    """The caps on a fill that apply to this order. `group`: what its contingent group lets an exit leg
    fill (`groups.Groups.cap`), None for any other order; `cash`: never take a cash account below zero;
    `reduce_only`: never fill past flat."""

    group: Decimal | None = None
    cash: bool = False
    reduce_only: bool = False


NO_CAPS = Caps()


class OrderState(msgspec.Struct, frozen=True, gc=False):
    """An order's execution state: before `execute`, and after each of its events. (The result types are
    msgspec Structs: built several times per order on the placement path, where they cost a fifth of a
    frozen dataclass.)"""

    status: OrderStatus
    quantity: Decimal
    filled: Decimal
    avg: Decimal | None
    fees: Decimal
    reserved: Decimal  # the cash the order holds back (a buy's reservation)
    triggered: bool
    reason: str | None = None  # why the order ended early (a cap), the order row's reject_reason


class Fill(msgspec.Struct, frozen=True, gc=False):
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: rules.Liquidity
    realized_pnl: Decimal


class Step(msgspec.Struct, frozen=True, gc=False):
    """One order event: its type, the status change, the event's reason and data (JSON-ready), the
    position after a fill (`position_qty`), and the order after it (`state`). `fill` marks the fill's
    event (the caller gives it the fill's id)."""

    type: EventType
    status_from: OrderStatus
    status_to: OrderStatus
    state: OrderState
    reason: str | None = None
    data: dict[str, Any] | None = None
    position_qty: Decimal | None = None
    fill: bool = False


class Execution(msgspec.Struct, frozen=True, gc=False):
    """The order after `execute`: its final state, its fill if any, its events in order, and how much its
    reservation moved the account's reserved cash (negative: released)."""

    state: OrderState
    fill: Fill | None
    steps: list[Step]
    reserved_change: Decimal

    @property
    def status(self) -> OrderStatus:
        return self.state.status


def first_moment(view: OrderView, m: MatchResult, immediate: bool) -> tuple[MatchResult, bool]:
    """The ioc/fok rule on a match: (the match to execute, whether the remainder is canceled). ioc and fok
    act at the order's first executable moment: at placement (`immediate`) as soon as the order is
    executable, on a resting order at its trigger. fok then fills everything or nothing."""
    moment = m.triggered if immediate else m.newly_triggered
    if not moment or view.tif not in _IOC_FOK:
        return m, False
    if view.tif is rules.TimeInForce.FOK and m.fill_qty != view.remaining:
        m = MatchResult(m.triggered, ZERO, None, None, m.newly_triggered)
    return m, True


def execute(
    view: OrderView, before: OrderState, m: MatchResult, *, symbol: str, last_price: Decimal, immediate: bool,
    book: AccountBook, inst: Costs, caps: Caps = NO_CAPS, reserve_at: Decimal | None = None,
) -> Execution:
    """Execute `m` (`rules.match` of `view`, the order as it stands, at `last_price`) on the order `before`
    and on its account's `book`, which it changes in place (the fill and the reserved cash). `immediate`:
    the order's placement (else a resting order at a new price). `reserve_at`: for a new order, the price
    its open remainder of a buy reserves at (`decision.reservation`); a resting order keeps what it holds."""
    cancel_rest = False
    if view.tif in _IOC_FOK:
        m, cancel_rest = first_moment(view, m, immediate)
    state = before
    status, filled, avg, fees, reserved = state.status, state.filled, state.avg, state.fees, state.reserved
    reason = state.reason
    triggered = view.triggered or m.triggered
    change = ZERO  # what the reservation moved the account's reserved cash by
    steps: list[Step] = []
    if m.newly_triggered:
        state = OrderState(status, state.quantity, filled, avg, fees, reserved, triggered, reason)
        steps.append(Step(EventType.TRIGGERED, status, status, state, data={"last_price": plain(last_price)}))
    qty = m.fill_qty
    side = view.side
    if qty > 0 and caps is not NO_CAPS:
        wanted = qty
        qty, capped = _capped(qty, m, caps, side, symbol, book, inst, reserved)
        if capped is not None:
            cancel_rest, reason = True, capped
        if qty < wanted and view.tif is rules.TimeInForce.FOK:
            # all or nothing: a cap that cuts a fok fill (the cash a triggered stop may spend, the
            # position a reduce-only order may close) leaves nothing to fill, and the order ends
            qty, cancel_rest = ZERO, True
            reason = reason or "fok: could not fill entirely at once"
    fill = None
    if qty > 0:
        price, liquidity = m.fill_price, m.liquidity
        assert price is not None and liquidity is not None
        rate = inst.taker_fee_rate if liquidity == "taker" else inst.maker_fee_rate
        fee, realized = book.apply_fill(symbol, side, qty, price, rate)
        fill = Fill(qty, price, fee, liquidity, realized)
        new_status = rules.transition(status, rules.fill_status(view, qty))
        avg = price if not filled else ((avg or ZERO) * filled + price * qty) / (filled + qty)
        if reserved:
            remaining_before = state.quantity - filled
            if new_status is OrderStatus.FILLED or remaining_before <= 0:
                release = reserved
            else:
                release = reserved * qty / remaining_before
            reserved -= release
            book.reserved_cash -= release
            change -= release
        filled += qty
        fees += fee
        state = OrderState(new_status, state.quantity, filled, avg, fees, reserved, triggered, reason)
        steps.append(Step(
            EventType.FILLED if new_status is OrderStatus.FILLED else EventType.PARTIALLY_FILLED, status,
            new_status, state, fill=True, position_qty=book.position(symbol).quantity,
            data={"quantity": plain(qty), "price": plain(price), "fee": plain(fee), "liquidity": liquidity,
                  "realized_pnl": plain(realized)},
        ))
        status = new_status
    if status is not OrderStatus.FILLED and cancel_rest:
        if reason is not None:
            event_reason = reason
        elif immediate:
            event_reason = ("fok: could not fill entirely at once" if view.tif is rules.TimeInForce.FOK
                            else "ioc: remainder canceled")
        else:
            event_reason = f"{view.tif.value}: remainder canceled at trigger"
        canceled = rules.transition(status, OrderStatus.CANCELED)
        if reserved:
            book.reserved_cash -= reserved
            change -= reserved
        reserved = ZERO
        state = OrderState(canceled, state.quantity, filled, avg, fees, reserved, triggered, reason)
        steps.append(Step(EventType.CANCELED, status, canceled, state, reason=event_reason))
        status = canceled
    if reserve_at is not None and status in _OPEN_AFTER and side == "buy":
        reserved = reservation(state.quantity - filled, reserve_at, inst)  # type: ignore[arg-type]
        book.reserved_cash += reserved
        change += reserved
    elif steps:
        return Execution(state, fill, steps, change)  # the state after the last event is the final one
    return Execution(OrderState(status, state.quantity, filled, avg, fees, reserved, triggered, reason), fill, steps,
                     change)


def _capped(
    qty: Decimal, m: MatchResult, caps: Caps, side: str, symbol: str, book: AccountBook, inst: Costs,
    reserved: Decimal,
) -> tuple[Decimal, str | None]:
    """The fill `qty` after the caps, and the reason the rest is canceled when a cap cut it (None: no
    cancel; an exit leg's group cap leaves the rest open)."""
    reason = None
    if caps.group is not None:
        # An exit never fills more than its group's entry did, nor past the position it closes.
        held = book.position(symbol).quantity
        room = max(held if side == "sell" else -held, ZERO)
        qty = rules.floor_to_lot(min(qty, caps.group, room), inst.lot_size)
    if qty > 0 and caps.cash and side == "buy" and not book.allow_short and margin_multiplier(book) <= 1:
        # A gap can make a triggered stop cost more than was reserved: never take cash below zero.
        assert m.fill_price is not None
        rate = inst.taker_fee_rate if m.liquidity == "taker" else inst.maker_fee_rate
        spendable = book.cash - (book.reserved_cash - reserved)
        unit = m.fill_price * (1 + max(rate, ZERO))
        affordable = rules.floor_to_lot(spendable / unit, inst.lot_size) if unit > 0 else ZERO
        if affordable < qty:
            qty, reason = max(affordable, ZERO), CASH_CAP_REASON
    if qty > 0 and caps.reduce_only:
        # Other fills may have shrunk the position since the order was placed: a fill past flat is cut
        # there and the rest canceled.
        held = book.position(symbol).quantity
        room = held if side == "sell" else -held
        if room < qty:
            qty, reason = max(room, ZERO), REDUCE_ONLY_REASON
    return qty, reason
