"""Pre-trade risk checks and limit utilisation (pure, exact `Decimal`).

Callers build a `PortfolioState` from one read of the account and ask `check_pre_trade` about a
`ProposedOrder`: order placement (app/domain/trading/placement.py, through risk/pretrade.py) on the
snapshot its write then checks is still current, replace under the account lock; the first breach
becomes the 422 body and a violation row. The monitors measure limits with `utilisation` and `breaches`
(risk/monitoring.py `decide`, after the float screen of a batch), and the stress test revalues books in
float64 (risk/stress.py), not here.

Every figure is measured *as if the order filled completely at `ProposedOrder.price`*. Decisions beyond
DOMAIN.md (also stated on the functions):

* Checks run in the order of `LIMIT_TYPES` (per order, per position, portfolio, order counts, loss
  stops); within one type symbol-scoped limits come before account-wide ones, then by id. The first
  breach is returned.
* A breach is `would_be > value`; exactly at the limit passes. `max_daily_loss` and `max_drawdown_pct`
  are stops: once `>= value` they block every risk-increasing order.
* Position and portfolio limits (position quantity/notional, gross exposure, leverage, concentration)
  never block an order that does not increase the figure they measure, so an account that is over a
  limit (prices moved) can always trade back under it. Order-size and order-count limits always apply.
* A limit with `symbol` applies only to orders on that symbol. Account-wide position and concentration
  limits apply to every symbol: they measure the order's symbol, the only one the order changes.
* The order's symbol is marked at the order price for the "after" and the "before" figures, every
  other position at its last price; equity is taken as unchanged by the fill (a fill at the mark moves
  cash and position value by equal and opposite amounts; fees are ignored).
* With equity <= 0, leverage and concentration of a non-zero exposure are unbounded: `would_be` and
  utilisation are `UNBOUNDED` (Decimal Infinity), which cannot be stored in NUMERIC(38, 18): `storable`
  caps what is written at `NUMERIC_CAP`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction

from app.domain.trading.rules import Side

_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
# Ratios are reported with the ordinary 28 significant digits; comparisons are done exactly.
_REPORT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
UNBOUNDED = Decimal("Infinity")
# NUMERIC cannot hold Infinity (leverage with non-positive equity): a figure is stored as at most this.
NUMERIC_CAP = Decimal("1e20")


def storable(value: Decimal) -> Decimal:
    """`value` as a violation's `would_be` or an alert's utilisation can store it."""
    return value if value.is_finite() and abs(value) < NUMERIC_CAP else NUMERIC_CAP

LIMIT_TYPES: tuple[str, ...] = (
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
# Kinds that measure one instrument and so may carry a `symbol`.
SYMBOL_SCOPABLE_TYPES = frozenset(
    {
        "max_order_notional",
        "max_order_quantity",
        "max_position_quantity",
        "max_position_notional",
        "max_concentration_pct",
    }
)
PER_ORDER_TYPES = frozenset({"max_order_notional", "max_order_quantity"})
COUNT_TYPES = frozenset({"max_open_orders", "max_orders_per_minute"})
# Loss stops: block risk-increasing orders once the figure reaches the limit.
STOP_TYPES = frozenset({"max_daily_loss", "max_drawdown_pct"})
# Limits that only block orders that increase what they measure.
EXPOSURE_TYPES = frozenset(LIMIT_TYPES) - PER_ORDER_TYPES - COUNT_TYPES - STOP_TYPES
_ORDER = {t: i for i, t in enumerate(LIMIT_TYPES)}


@dataclass(frozen=True)
class Limit:
    id: str
    limit_type: str
    value: Decimal
    symbol: str | None = None
    enabled: bool = True
    warn_at_pct: Decimal = Decimal(80)


@dataclass
class PortfolioState:
    cash: Decimal
    positions: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # symbol -> (qty, last)
    open_orders: int = 0
    orders_last_minute: int = 0
    reserved_cash: Decimal = _ZERO  # held by open buy orders
    daily_pnl: Decimal = _ZERO
    drawdown_pct: Decimal = _ZERO  # percent, 0..100

    @property
    def equity(self) -> Decimal:
        with localcontext(_WIDE):
            return self.cash + sum((q * p for q, p in self.positions.values()), _ZERO)

    @property
    def buying_power(self) -> Decimal:
        return self.cash - self.reserved_cash

    def quantity(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, (_ZERO, _ZERO))[0]


@dataclass(frozen=True)
class ProposedOrder:
    symbol: str
    side: Side | str
    quantity: Decimal
    price: Decimal  # estimated execution price: the limit price, else the last price
    # What placing it adds to the open (or held) orders `max_open_orders` counts: 1 for a simple order,
    # every order of a contingent one (trading.decision.orders_added), 0 for a replace.
    orders: int = 1

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if Side(self.side) is Side.BUY else -self.quantity


@dataclass(frozen=True)
class Breach:
    limit_id: str
    limit_type: str
    limit_value: Decimal
    would_be: Decimal
    message: str
    symbol: str | None = None


# ---------------------------------------------------------------------------------------------------
# Position helpers
# ---------------------------------------------------------------------------------------------------


def _qty_after(state: PortfolioState, order: ProposedOrder) -> tuple[Decimal, Decimal]:
    before = state.quantity(order.symbol)
    with localcontext(_WIDE):
        return before, before + order.signed_quantity


def increases(before: Decimal, after: Decimal) -> bool:
    """Whether a position going from `before` to `after` takes on risk: it grows, or it flips through
    zero (a new position on the other side, of any size). Only shrinking toward zero, or closing to flat,
    does not; a loss stop must not let a long be sold into a fresh short in one order."""
    return abs(after) > abs(before) or (before > 0 > after) or (before < 0 < after)


def is_risk_increasing(state: PortfolioState, order: ProposedOrder) -> bool:
    """The order's symbol's position grows or flips (`increases`)."""
    before, after = _qty_after(state, order)
    return increases(before, after)


def is_reduce_only_ok(state: PortfolioState, order: ProposedOrder) -> bool:
    """The order shrinks an existing position without flipping it (closing to exactly flat is fine)."""
    before, after = _qty_after(state, order)
    if before == 0 or order.quantity <= 0:
        return False
    opposite = (before > 0) != (order.signed_quantity > 0)
    return opposite and abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))


def trading_state_rejection(trading_state: str, state: PortfolioState, order: ProposedOrder) -> str | None:
    """Reason the account's trading state rejects the order, or None."""
    if trading_state == "halted":
        return "account trading state is halted"
    if trading_state == "reduce_only" and not is_reduce_only_ok(state, order):
        return "account trading state is reduce_only: only orders that shrink an existing position"
    return None


# ---------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------


def _gross(
    state: PortfolioState, symbol: str | None = None, qty: Decimal = _ZERO, price: Decimal = _ZERO
) -> Decimal:
    """Σ|q·p|, with `symbol` optionally re-marked at `price` and sized `qty`."""
    with localcontext(_WIDE):
        total = _ZERO
        for s, (q, p) in state.positions.items():
            if s != symbol:
                total += abs(q * p)
        if symbol is not None:
            total += abs(qty * price)
        return total


def _ratio(
    numerator: Decimal, denominator: Decimal, scale: Decimal = Decimal(1), *, exact: bool = True
) -> tuple[Decimal, Fraction | None]:
    """numerator * scale / denominator as (reported Decimal, exact Fraction); unbounded at equity <= 0.
    With `exact=False` the Fraction is not built (None): the monitor compares the reported figure."""
    if denominator <= 0:
        if numerator == 0:
            return _ZERO, Fraction(0)
        return UNBOUNDED, None
    fraction = Fraction(numerator) * Fraction(scale) / Fraction(denominator) if exact else None
    with localcontext(_REPORT):
        return (numerator * scale) / denominator, fraction


def _measure(
    state: PortfolioState, order: ProposedOrder, limit: Limit
) -> tuple[Decimal, Fraction | None, bool]:
    """(would_be, exact would_be or None if unbounded, whether the order increases the figure)."""
    kind = limit.limit_type
    before, after = _qty_after(state, order)
    grows = increases(before, after)
    with localcontext(_WIDE):
        if kind == "max_order_notional":
            v = order.quantity * order.price
            return v, Fraction(v), True
        if kind == "max_order_quantity":
            return order.quantity, Fraction(order.quantity), True
        if kind == "max_position_quantity":
            v = abs(after)
            return v, Fraction(v), grows
        if kind == "max_position_notional":
            v = abs(after * order.price)
            return v, Fraction(v), grows
        if kind in ("max_gross_exposure", "max_leverage"):
            g_after = _gross(state, order.symbol, after, order.price)
            g_before = _gross(state, order.symbol, before, order.price)
            gross_grows = g_after > g_before
            if kind == "max_gross_exposure":
                return g_after, Fraction(g_after), gross_grows
            v, exact = _ratio(g_after, state.equity)
            return v, exact, gross_grows
        if kind == "max_concentration_pct":
            v, exact = _ratio(abs(after * order.price), state.equity, _HUNDRED)
            return v, exact, grows
        if kind == "max_open_orders":
            v = Decimal(state.open_orders + order.orders)
            return v, Fraction(v), True
        if kind == "max_orders_per_minute":
            v = Decimal(state.orders_last_minute + 1)
            return v, Fraction(v), True
        if kind == "max_daily_loss":
            v = -state.daily_pnl
            return v, Fraction(v), grows
        if kind == "max_drawdown_pct":
            return state.drawdown_pct, Fraction(state.drawdown_pct), grows
    raise ValueError(f"unknown limit type {kind!r}")


_MESSAGES = {
    "max_order_notional": "order notional {w} exceeds the limit {v}",
    "max_order_quantity": "order quantity {w} exceeds the limit {v}",
    "max_position_quantity": "position quantity {w} in {s} would exceed the limit {v}",
    "max_position_notional": "position notional {w} in {s} would exceed the limit {v}",
    "max_gross_exposure": "gross exposure {w} would exceed the limit {v}",
    "max_leverage": "leverage {w} would exceed the limit {v}",
    "max_concentration_pct": "concentration {w}% in {s} would exceed the limit {v}%",
    "max_open_orders": "{w} open orders would exceed the limit {v}",
    "max_orders_per_minute": "{w} orders in the last minute would exceed the limit {v}",
    "max_daily_loss": "daily loss {w} has reached the limit {v}: only risk-reducing orders are accepted",
    "max_drawdown_pct": "drawdown {w}% has reached the limit {v}%: only risk-reducing orders are accepted",
}


# Computed ratios in messages are shown to a reader's precision (percentages to 0.01, leverage to
# 0.0001), rounded up so that a figure over its limit never reads as equal to it; the exact figure stays
# in the breach's `would_be`. Every figure is in plain notation, never "1E+5".
_SHOWN_QUANTUM = {
    "max_concentration_pct": Decimal("0.01"),
    "max_drawdown_pct": Decimal("0.01"),
    "max_leverage": Decimal("0.0001"),
}


def _shown(value: Decimal, kind: str | None) -> str:
    quantum = _SHOWN_QUANTUM.get(kind) if kind else None
    if quantum is not None and value.is_finite():
        finer = value.as_tuple().exponent < quantum.as_tuple().exponent  # type: ignore[operator]
        if finer:
            with localcontext(_WIDE):
                value = value.quantize(quantum, rounding=ROUND_CEILING)
    return format(value, "f")


def _applies(limit: Limit, symbol: str) -> bool:
    return limit.enabled and (limit.symbol is None or limit.symbol == symbol)


def _sorted(limits: Iterable[Limit]) -> list[Limit]:
    for lim in limits:
        if lim.limit_type not in _ORDER:
            raise ValueError(f"unknown limit type {lim.limit_type!r}")
    return sorted(limits, key=lambda lim: (_ORDER[lim.limit_type], lim.symbol is None, str(lim.id)))


def pre_trade_breaches(state: PortfolioState, order: ProposedOrder, limits: Iterable[Limit]) -> list[Breach]:
    """Every breach the order would cause, in check order."""
    breaches: list[Breach] = []
    for lim in _sorted(list(limits)):
        if not _applies(lim, order.symbol):
            continue
        would_be, exact, increases = _measure(state, order, lim)
        limit_exact = Fraction(lim.value)
        if lim.limit_type in STOP_TYPES:
            breached = increases and exact is not None and exact >= limit_exact
        else:
            over = exact is None or exact > limit_exact
            breached = over and increases
        if breached:
            msg = _MESSAGES[lim.limit_type].format(
                w=_shown(would_be, lim.limit_type), v=_shown(lim.value, None), s=order.symbol
            )
            breaches.append(Breach(lim.id, lim.limit_type, lim.value, would_be, msg, lim.symbol))
    return breaches


def check_pre_trade(state: PortfolioState, order: ProposedOrder, limits: Iterable[Limit]) -> Breach | None:
    """The first breach (see module docstring for the order and the rules), or None if the order passes."""
    breaches = pre_trade_breaches(state, order, limits)
    return breaches[0] if breaches else None


# ---------------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------------


def current_value(
    state: PortfolioState, limit: Limit, memo: dict[str, Decimal] | None = None
) -> Decimal | None:
    """The figure a limit measures right now ("used"), or None for per-order kinds. `memo` keeps the
    account-wide figures (gross exposure, equity) between calls on one state (`assess`)."""
    kind = limit.limit_type
    if kind not in _ORDER:
        raise ValueError(f"unknown limit type {kind!r}")
    if kind in PER_ORDER_TYPES:
        return None
    if memo is None:
        memo = {}
    with localcontext(_WIDE):
        if kind in ("max_gross_exposure", "max_leverage"):
            gross = memo.get("gross")
            if gross is None:
                gross = memo["gross"] = _gross(state)
            if kind == "max_gross_exposure":
                return gross
            return _ratio(gross, _equity(state, memo), exact=False)[0]
        if kind in ("max_position_quantity", "max_position_notional", "max_concentration_pct"):
            items = [(q, p) for s, (q, p) in state.positions.items() if limit.symbol in (None, s)]
            if kind == "max_position_quantity":
                return max((abs(q) for q, _ in items), default=_ZERO)
            largest = max((abs(q * p) for q, p in items), default=_ZERO)
            if kind == "max_position_notional":
                return largest
            return _ratio(largest, _equity(state, memo), _HUNDRED, exact=False)[0]
        if kind == "max_open_orders":
            return Decimal(state.open_orders)
        if kind == "max_orders_per_minute":
            return Decimal(state.orders_last_minute)
        if kind == "max_daily_loss":
            return max(-state.daily_pnl, _ZERO)
        return max(state.drawdown_pct, _ZERO)  # max_drawdown_pct


def _equity(state: PortfolioState, memo: dict[str, Decimal]) -> Decimal:
    equity = memo.get("equity")
    if equity is None:
        equity = memo["equity"] = state.equity
    return equity


def utilisation(state: PortfolioState, limit: Limit) -> Decimal | None:
    """used / value as a fraction (1 = at the limit); None for per-order kinds and disabled limits.

    Multiply by 100 for `alerts.next_alert`. UNBOUNDED when leverage/concentration have no equity.
    """
    if not limit.enabled or limit.value <= 0:
        return None
    return _utilisation(limit, current_value(state, limit))


def _utilisation(limit: Limit, used: Decimal | None) -> Decimal | None:
    if used is None or not limit.enabled or limit.value <= 0:
        return None
    if used.is_infinite():
        return UNBOUNDED
    with localcontext(_REPORT):
        return used / limit.value


def _breach(limit: Limit, used: Decimal | None) -> Breach | None:
    if used is None or not limit.enabled:
        return None
    over = used >= limit.value if limit.limit_type in STOP_TYPES else used > limit.value
    if not over:
        return None
    scope = f" ({limit.symbol})" if limit.symbol else ""
    msg = f"{limit.limit_type}{scope} is {used}, limit {limit.value}"
    return Breach(limit.id, limit.limit_type, limit.value, used, msg, limit.symbol)


def current_breaches(state: PortfolioState, limits: Iterable[Limit]) -> list[Breach]:
    """Limits the account is over right now (for the monitor): used > value, or >= for loss stops."""
    return assess(state, list(limits))[0]


def assess(state: PortfolioState, limits: list[Limit]) -> tuple[list[Breach], list[Decimal | None]]:
    """`current_breaches` (in check order) and each limit's `utilisation` (in the order given), measuring
    every limit once: the monitor's whole decision input."""
    memo: dict[str, Decimal] = {}
    used = [current_value(state, lim, memo) if lim.enabled else None for lim in limits]
    position = {id(lim): i for i, lim in enumerate(limits)}
    breaches = [b for lim in _sorted(limits) if (b := _breach(lim, used[position[id(lim)]])) is not None]
    return breaches, [_utilisation(lim, u) for lim, u in zip(limits, used, strict=True)]


def validate_limit(
    limit_type: str, value: Decimal, symbol: str | None = None, warn_at_pct: Decimal = Decimal(80)
) -> list[tuple[str, str]]:
    """(field, message) problems with a limit definition; empty when it is valid."""
    errors: list[tuple[str, str]] = []
    if limit_type not in _ORDER:
        errors.append(("limit_type", f"must be one of {', '.join(LIMIT_TYPES)}"))
    if not value.is_finite() or value <= 0:
        errors.append(("value", "must be a positive number"))
    elif limit_type in COUNT_TYPES and value != value.to_integral_value():
        errors.append(("value", "must be a whole number of orders"))
    if symbol is not None and limit_type in _ORDER and limit_type not in SYMBOL_SCOPABLE_TYPES:
        errors.append(("symbol", f"{limit_type} is account-wide and cannot be scoped to a symbol"))
    if not warn_at_pct.is_finite() or not (0 < warn_at_pct <= 100):
        errors.append(("warn_at_pct", "must be in (0, 100]"))
    return errors
