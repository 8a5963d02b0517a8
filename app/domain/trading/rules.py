"""Order rules of the paper exchange: status machine, increments, matching and fees.

Pure functions over `Decimal`; no I/O. Placement (`placement.execute_and_write`, for an order's first
execution) and price matching (`matching.match_resting_orders`, for resting orders) build an
`OrderView` and ask `match` what happens at a price; execution.py's `execute` then applies the ioc/fok
remainder rule, the caps and the fill (`fill_status`: where a fill leaves the order) and returns one
event per status change, each checked against `ALLOWED_TRANSITIONS` (`transition`; `event_row` checks
the rows the cancel and expiry paths write). The decision before execution (instrument, account and
risk checks) is decision.py's.

One module past 500 lines on purpose: the status machine, the tick and lot arithmetic, matching and
fees are one specification (docs/TRADING.md renders its transition table from here), read together.

Rules that DOMAIN.md leaves open are decided here and repeated in the docstrings:

* Market fills are rounded to the tick *against* the taker (buy up, sell down), so slippage is never
  rounded away in the trader's favour. A sell that would round to zero or below is clamped to one tick:
  a fill at a non-positive price is meaningless.
* Every fill price lies on the tick grid. An immediate (taker) limit fill happens at the last price
  rounded to the tick against the taker; when the limit itself is on the grid (validation guarantees it)
  this can never be worse than the limit, and when the last price is on the grid it is the last price.
* A stop triggers once and stays triggered (`OrderView.triggered`); a triggered stop is a market order.
  A stop-limit triggered by this price is a limit order that is immediately marketable or not: if the
  last price is within its limit it fills at once as a taker at the last price, otherwise it rests and
  later fills at its limit price as a maker.
* `ioc` and `fok` apply at the order's first executable moment: placement for market and limit orders,
  the trigger for stops. Before that a stop waits like any resting order.
* Fees are rounded per fill to 1e-8 of the quote currency, half-even.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from enum import StrEnum
from fractions import Fraction
from math import floor
from typing import Any, Literal

# Intermediate arithmetic runs wide so that only the rounding rules below ever lose digits.
_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)
_BPS = Decimal(10000)
FEE_QUANTUM = Decimal("1E-8")


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"  # a stop whose stop_price follows the best price since acceptance


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    DAY = "day"


class OrderStatus(StrEnum):
    NEW = "new"
    HELD = "held"  # an exit leg waiting for its entry's first fill (app/domain/trading/contingent.py)
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class EventType(StrEnum):
    CREATED = "created"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRIGGERED = "triggered"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    HELD = "held"  # an exit leg placed with its entry, waiting for the entry's fill
    ACTIVATED = "activated"  # an entry fill made (more of) its exit legs executable
    REDUCED = "reduced"  # the other exit leg of the group filled: this one's quantity shrank by as much
    REPLACED = "replaced"  # PATCH in place: status unchanged, `data` has the old and new values


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """The instrument and its exchange as one order's rules read them."""

    symbol: str
    status: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    last_price: Decimal | None
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal
    timezone: str
    session_close: Any
    session_open: Any
    session_days: Any  # ISO weekdays (1 = Monday) the exchange trades (markets/clock.py)


# Its fields in order: the column list of every query that reads one (queries.INSTRUMENT_COLUMNS).
INSTRUMENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(InstrumentInfo))


STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
# Orders that execute as market orders once executable (a trailing stop triggers into a market order).
MARKET_LIKE_TYPES = frozenset({OrderType.MARKET, OrderType.STOP, OrderType.TRAILING_STOP})
LIMIT_PRICED_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})

# ---------------------------------------------------------------------------------------------------
# Status machine
# ---------------------------------------------------------------------------------------------------

# Plain strings (and members, which hash and compare as their values) to members, for the hot paths:
# a dict look-up instead of EnumType.__call__. An unknown value raises KeyError where the constructor
# raised ValueError; OrderView turns that into the same ValueError.
_SIDES = {m.value: m for m in Side}
_TYPES = {m.value: m for m in OrderType}
_TIFS = {m.value: m for m in TimeInForce}

_S = OrderStatus
ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # `new` is the row inserted before the pre-trade checks finish; a client may cancel it before it is
    # accepted, but it can never fill without being accepted first.
    _S.NEW: frozenset({_S.HELD, _S.ACCEPTED, _S.REJECTED, _S.CANCELED}),
    # A held exit leg becomes accepted with its entry's first fill, is canceled with its group (its entry
    # ended unfilled, a client cancel of any member, a halt) or expires with its `day` entry.
    _S.HELD: frozenset({_S.ACCEPTED, _S.CANCELED, _S.EXPIRED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    # partially_filled -> partially_filled is a further partial fill: still an event, same status.
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    _S.FILLED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}
TERMINAL_STATUSES: frozenset[OrderStatus] = frozenset(s for s, nxt in ALLOWED_TRANSITIONS.items() if not nxt)
# Not final: an open order or a held exit leg (a held leg is canceled with its group or expires with its
# `day` entry, so cancels, expiry and the kill switch take both).
OPEN_OR_HELD_STATUSES: frozenset[OrderStatus] = frozenset(ALLOWED_TRANSITIONS) - TERMINAL_STATUSES
# Open: the order may fill, trigger and be replaced, and it counts against its account (open orders, open
# sells, reserved cash). A held leg does none of that until its entry's fill activates it.
OPEN_STATUSES: frozenset[OrderStatus] = OPEN_OR_HELD_STATUSES - {_S.HELD}


class IllegalTransition(Exception):
    def __init__(self, current: OrderStatus | str, new: OrderStatus | str) -> None:
        self.current = OrderStatus(current)
        self.new = OrderStatus(new)
        super().__init__(f"illegal order status transition {self.current.value} -> {self.new.value}")


class OrderNotOpen(Exception):
    """A cancel of an order that is already final. `grouped`: it is a member of a contingent group (which
    a cancel of another member may have ended)."""

    def __init__(self, status: str, *, grouped: bool = False) -> None:
        self.status, self.grouped = status, grouped
        super().__init__(f"Order is already {status}")


def can_transition(current: OrderStatus | str, new: OrderStatus | str) -> bool:
    return OrderStatus(new) in ALLOWED_TRANSITIONS[OrderStatus(current)]


def transition(current: OrderStatus | str, new: OrderStatus | str) -> OrderStatus:
    """Return `new` as an `OrderStatus` if the table allows it, else raise `IllegalTransition`."""
    # (members pass through without EnumType.__call__, which costs more than the look-up itself)
    cur = current if current.__class__ is OrderStatus else OrderStatus(current)
    nxt = new if new.__class__ is OrderStatus else OrderStatus(new)
    if nxt not in ALLOWED_TRANSITIONS[cur]:
        raise IllegalTransition(cur, nxt)
    return nxt


def event_row(order_id: Any, account_id: Any, etype: EventType, frm: str | None, to: str, now: Any, *,
              reason: str | None = None, fill_id: Any = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An `order_events` row (the stream's order event), after checking its transition: an illegal one is
    a bug, raised before anything is written."""
    if frm is not None and frm != to:
        transition(frm, to)
    return {
        "order_id": order_id, "account_id": account_id, "type": etype.value, "status_from": frm, "status_to": to,
        "reason": reason, "fill_id": fill_id, "data": data, "created_at": now,
        # Every row of one executemany needs the same keys: a fill sets the position after it.
        "position_qty": None,
    }


def markdown_transition_table() -> str:
    """The status table as Markdown, generated from `ALLOWED_TRANSITIONS` so docs cannot drift."""
    lines = ["| From | Allowed next statuses |", "| --- | --- |"]
    for status in OrderStatus:
        allowed = ALLOWED_TRANSITIONS[status]
        cell = ", ".join(f"`{s.value}`" for s in OrderStatus if s in allowed) or "— (terminal)"
        lines.append(f"| `{status.value}` | {cell} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Increments
# ---------------------------------------------------------------------------------------------------


def _require_positive_increment(increment: Decimal) -> None:
    if not increment.is_finite() or increment <= 0:
        raise ValueError(f"increment must be a positive finite decimal, got {increment}")


def is_multiple(value: Decimal, increment: Decimal) -> bool:
    """True iff value == k * increment for some integer k (exact, no floating point)."""
    _require_positive_increment(increment)
    if not value.is_finite():
        return False
    with localcontext(_WIDE):
        try:
            return value % increment == 0  # exact while the integer quotient fits in 80 digits
        except InvalidOperation:
            pass
    # Fractions are exact where Decimal `%` fails once the quotient outgrows the context precision.
    return (Fraction(value) / Fraction(increment)).denominator == 1


_ONE = Decimal(1)


def _round_decimal_to_increment(x: Decimal, increment: Decimal, rounding: str) -> Decimal | None:
    """The same result as `_round_fraction_to_increment` when x / increment terminates within the wide
    context (every tick and lot of the form 10^-n or k * 10^-n with k | 10^n), without Fractions, which
    cost ~10x more on the placement path; None when the quotient is inexact and the exact path must run."""
    with localcontext(_WIDE) as ctx:
        ctx.clear_flags()
        ratio = x / increment
        k = ratio.to_integral_value(rounding=rounding).quantize(_ONE)
        result = k * increment
        if ctx.flags[Inexact] or ctx.flags[Rounded]:
            return None
        return result


def _round_fraction_to_increment(x: Fraction, increment: Decimal, rounding: str) -> Decimal:
    _require_positive_increment(increment)
    ratio = x / Fraction(increment)
    whole = floor(ratio)
    rest = ratio - whole
    # A stand-in with the same integer part and the same position relative to one half rounds exactly
    # like the true (possibly non-terminating) ratio under every decimal rounding mode.
    if rest == 0:
        stand_in = Decimal(whole)
    elif rest < Fraction(1, 2):
        stand_in = Decimal(whole) + Decimal("0.25")
    elif rest == Fraction(1, 2):
        stand_in = Decimal(whole) + Decimal("0.5")
    else:
        stand_in = Decimal(whole) + Decimal("0.75")
    with localcontext(_WIDE):
        k = stand_in.to_integral_value(rounding=rounding)
        return k * increment


def _round_to_increment(x: Decimal, increment: Decimal, rounding: str) -> Decimal:
    _require_positive_increment(increment)
    fast = _round_decimal_to_increment(x, increment, rounding)
    return fast if fast is not None else _round_fraction_to_increment(Fraction(x), increment, rounding)


def round_to_tick(price: Decimal, tick: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round `price` to a multiple of `tick` with the given decimal rounding mode (exact)."""
    return _round_to_increment(price, tick, rounding)


def floor_to_lot(quantity: Decimal, lot: Decimal) -> Decimal:
    """Largest multiple of `lot` not above `quantity` (for partial fills limited by volume)."""
    return _round_to_increment(quantity, lot, ROUND_FLOOR)


# ---------------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------------


def fill_price_for_market(
    side: Side | str, last_price: Decimal, slippage_bps: Decimal | int, tick_size: Decimal
) -> Decimal:
    """Taker price of a market order: last moved against the taker, rounded to the tick against it.

    buy:  ceil_tick(last * (1 + bps/10000))
    sell: floor_tick(last * (1 - bps/10000)), but at least one tick

    The direction of rounding is part of the slippage model: rounding half-even could hand back part of
    the slippage (or all of it for small bps), which a desk would call a free improvement.
    """
    side = _SIDES.get(side) or Side(side)
    bps = slippage_bps if slippage_bps.__class__ is Decimal else Decimal(slippage_bps)
    if not last_price.is_finite() or last_price <= 0:
        raise ValueError(f"last price must be positive, got {last_price}")
    if bps < 0:
        raise ValueError(f"slippage_bps must be >= 0, got {bps}")
    buy = side is Side.BUY
    rounding = ROUND_CEILING if buy else ROUND_FLOOR
    with localcontext(_WIDE) as ctx:  # exact: bps / 10000 terminates, and the product fits in 80 digits
        ctx.clear_flags()
        moved = last_price * (1 + bps / _BPS) if buy else last_price * (1 - bps / _BPS)
        exact = not (ctx.flags[Inexact] or ctx.flags[Rounded])
    if exact:
        price = _round_to_increment(moved, tick_size, rounding)
    else:  # (absurdly many digits): the Fraction path
        move = Fraction(bps) / Fraction(_BPS)
        factor = 1 + move if buy else 1 - move
        price = _round_fraction_to_increment(Fraction(last_price) * factor, tick_size, rounding)
    return price if buy or price > 0 else tick_size


def taker_price_for_limit(
    side: Side | str, last_price: Decimal, limit_price: Decimal, tick_size: Decimal
) -> Decimal:
    """Price of an immediately marketable limit: the last price on the tick grid, capped at the limit."""
    side = Side(side)
    if side is Side.BUY:
        return min(round_to_tick(last_price, tick_size, ROUND_CEILING), limit_price)
    return max(round_to_tick(last_price, tick_size, ROUND_FLOOR), limit_price)


def is_marketable(side: Side | str, last_price: Decimal, limit_price: Decimal) -> bool:
    """A limit is marketable (or touched) when the last price is at or through it."""
    return last_price <= limit_price if Side(side) is Side.BUY else last_price >= limit_price


def notional(quantity: Decimal, price: Decimal) -> Decimal:
    with localcontext(_WIDE):
        return quantity * price


def fee(notional: Decimal, rate: Decimal) -> Decimal:
    """Fee on one fill: notional * rate, rounded half-even to 1e-8 of the quote currency.

    Rounded per fill (not per order) because each fill is its own cash movement; 1e-8 is the finest
    increment any supported quote asset uses and fits the NUMERIC(38, 18) columns exactly. A negative
    rate (maker rebate) yields a negative fee.
    """
    with localcontext(_WIDE):
        fee = (notional * rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
    return fee if fee else _ZERO  # a zero fee is 0, not 0E-8 (which the events would store as text)


# ---------------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    """The parts of an order that matching needs."""

    side: Side
    type: OrderType
    tif: TimeInForce
    quantity: Decimal
    filled_quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    triggered: bool = False

    def __post_init__(self) -> None:
        # Accept the plain strings stored in the database.
        try:
            object.__setattr__(self, "side", _SIDES[self.side])
            object.__setattr__(self, "type", _TYPES[self.type])
            object.__setattr__(self, "tif", _TIFS[self.tif])
        except (KeyError, TypeError):
            Side(self.side), OrderType(self.type), TimeInForce(self.tif)  # raises the enum's ValueError
            raise
        if self.type in LIMIT_PRICED_TYPES and self.limit_price is None:
            raise ValueError(f"{self.type.value} order needs a limit_price")
        if self.type in STOP_TYPES and self.stop_price is None:
            raise ValueError(f"{self.type.value} order needs a stop_price")

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


Liquidity = Literal["taker", "maker"]


@dataclass(frozen=True)
class MatchResult:
    triggered: bool  # the order is executable at this price (non-stop orders always are)
    fill_qty: Decimal  # 0 when nothing fills
    fill_price: Decimal | None
    liquidity: Liquidity | None
    # True only for a stop whose trigger happened at this price: the caller records a `triggered` event.
    newly_triggered: bool = False

    @property
    def filled(self) -> bool:
        return self.fill_qty > 0


def is_triggered(order: OrderView, last_price: Decimal) -> bool:
    """Stops trigger at buy `last >= stop`, sell `last <= stop`, and stay triggered afterwards."""
    if order.type not in STOP_TYPES or order.triggered:
        return True
    assert order.stop_price is not None
    return last_price >= order.stop_price if order.side is Side.BUY else last_price <= order.stop_price


def match(
    order: OrderView,
    last_price: Decimal,
    available: Decimal | None,
    *,
    slippage_bps: Decimal | int,
    tick_size: Decimal,
    lot_size: Decimal,
    immediate: bool,
    market_price: Decimal | None = None,
) -> MatchResult:
    """What `order` does at `last_price`.

    `immediate` is True at placement and False when a new last price sweeps the resting book.
    `available` is the quantity available at this price (None = unlimited); the fill is
    min(remaining, available) floored to the lot size. Pricing:

    * market, triggered stop: `fill_price_for_market`, taker;
    * limit at placement, or stop-limit triggered by this price, if marketable: the last price on the
      tick grid, never worse than the limit, taker;
    * resting limit (or stop-limit triggered earlier) touched or crossed by this price: its limit
      price, maker.

    `market_price`, when given, is `fill_price_for_market(order.side, last_price, slippage_bps,
    tick_size)` already computed by the caller (placement prices a market order for its checks first).
    """
    triggered = is_triggered(order, last_price)
    newly = triggered and order.type in STOP_TYPES and not order.triggered
    none = MatchResult(
        triggered=triggered, fill_qty=_ZERO, fill_price=None, liquidity=None, newly_triggered=newly
    )
    if not triggered or order.remaining <= 0:
        return none

    price: Decimal
    liquidity: Liquidity
    if order.type in MARKET_LIKE_TYPES:
        if market_price is None:
            market_price = fill_price_for_market(order.side, last_price, slippage_bps, tick_size)
        price, liquidity = market_price, "taker"
    else:
        assert order.limit_price is not None
        if not is_marketable(order.side, last_price, order.limit_price):
            return none
        if immediate or newly:
            price = taker_price_for_limit(order.side, last_price, order.limit_price, tick_size)
            liquidity = "taker"
        else:
            price, liquidity = order.limit_price, "maker"

    qty = order.remaining if available is None else min(order.remaining, max(available, _ZERO))
    qty = floor_to_lot(qty, lot_size)
    if qty <= 0:
        return none
    return MatchResult(
        triggered=True, fill_qty=qty, fill_price=price, liquidity=liquidity, newly_triggered=newly
    )


def fill_status(order: OrderView, fill_qty: Decimal) -> OrderStatus:
    """Status a fill of `fill_qty` puts the order in (for the fill's own event)."""
    if fill_qty <= 0:
        raise ValueError("a fill needs a positive quantity")
    return (
        OrderStatus.FILLED
        if order.filled_quantity + fill_qty >= order.quantity
        else OrderStatus.PARTIALLY_FILLED
    )


# ---------------------------------------------------------------------------------------------------
# Trailing stops
# ---------------------------------------------------------------------------------------------------

_HUNDRED = Decimal(100)


def trail_hwm(side: Side | str, hwm: Decimal, last_price: Decimal) -> Decimal:
    """The best price since acceptance after `last_price`: a sell trails the highest, a buy the lowest.
    It only ever moves in the trader's favour."""
    return max(hwm, last_price) if side == Side.SELL else min(hwm, last_price)


def trailing_stop_price(
    side: Side | str, hwm: Decimal, trail_price: Decimal | None, trail_percent: Decimal | None,
    tick_size: Decimal,
) -> Decimal:
    """The stop of a trailing stop at `hwm`: sell `hwm - trail_price` or `hwm * (1 - trail_percent/100)`,
    buy `hwm + trail_price` or `hwm * (1 + trail_percent/100)`, rounded to the tick away from the market
    (sell down, buy up), so the trail is never tighter than asked. A sell stop is at least one tick."""
    sell = side == Side.SELL
    with localcontext(_WIDE):
        if trail_price is not None:
            raw = hwm - trail_price if sell else hwm + trail_price
        else:
            assert trail_percent is not None
            factor = trail_percent / _HUNDRED
            raw = hwm * (1 - factor) if sell else hwm * (1 + factor)
    stop = round_to_tick(raw, tick_size, ROUND_FLOOR if sell else ROUND_CEILING)
    return stop if not sell or stop > 0 else tick_size
