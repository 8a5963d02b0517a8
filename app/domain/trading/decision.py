"""What an order may do, decided on one snapshot of its instrument and account: pure, no I/O.

Placement (simple orders, `validate`'s dry run), contingent orders (their entry, as a simple order) and
replace (the replaced order as a new one) load the state, call these rules and write the outcome; the
rules never read or write themselves. A rule that fails raises a 4xx naming the field; a breached risk
limit is returned (`Plan.breach`), because the caller records it before refusing the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from app.domain.markets import clock
from app.domain.risk import checks as risk_checks
from app.domain.risk import pretrade
from app.domain.trading import rules, sizing
from app.domain.trading.book import AccountBook
from app.domain.trading.rules import InstrumentInfo
from app.lib.errors import invalid

ZERO = Decimal(0)


class Proposal(Protocol):
    """The order as the account checks read it: a placement body, or a replaced order's new values."""

    symbol: str
    side: str
    type: str
    quantity: Any  # Decimal once sized (a notional order is sized before the checks)
    limit_price: Decimal | None
    stop_price: Decimal | None


@dataclass(frozen=True, slots=True)
class Plan:
    """An order that passed every rule of this module: execute and write it, unless `breach` (an enabled
    risk limit of the account it would break: record the violation and refuse)."""

    book: AccountBook
    inst: InstrumentInfo
    price: Decimal  # the worst-case execution price (estimated_price)
    proposed: risk_checks.ProposedOrder
    breach: risk_checks.Breach | None = None


def is_contingent(data: Any) -> bool:
    """Whether a body asks for a contingent order or a trailing stop (or names one of their fields, to be
    refused with the field named): such orders take contingent.py's locked path, never placement.py's."""
    return (data.order_class != "simple" or data.type == "trailing_stop" or data.take_profit is not None
            or data.stop_loss is not None or data.trail_price is not None or data.trail_percent is not None)


def next_session_close(now: datetime, inst: InstrumentInfo) -> datetime:
    """When a `day` order placed at `now` expires: the end of the exchange's trading day, by the market
    clock (markets/clock.py): the close of the session open now, else of the coming one (a day order
    placed on a weekend or after the close lives until the next trading day's close). An exchange that
    never closes (a session rolling over every day) has no such close: there the order expires at the next
    `session_close` time of day."""
    state = clock.session_state(now, inst.timezone, inst.session_open, inst.session_close, inst.session_days)
    if state.next_close is not None:
        return state.next_close
    tz = ZoneInfo(inst.timezone)
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), inst.session_close, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), inst.session_close, tzinfo=tz)
    return candidate.astimezone(UTC)


def validate_against_instrument(data: Any, inst: InstrumentInfo | None) -> None:
    """A placement body against its instrument: known, trading, lot and tick multiples, a last price for a
    market order."""
    if inst is None:
        raise invalid(f"Unknown symbol {data.symbol!r}", "symbol", slug="unknown-symbol")
    if inst.status != "trading":
        raise invalid(f"{inst.symbol} is halted", "symbol", slug="instrument-halted")
    if not rules.is_multiple(data.quantity, inst.lot_size):
        raise invalid(f"quantity {data.quantity} is not a multiple of lot_size {inst.lot_size}", "quantity")
    if data.quantity < inst.min_quantity:
        raise invalid(f"quantity {data.quantity} is below min_quantity {inst.min_quantity}", "quantity")
    for name in ("limit_price", "stop_price"):
        price = getattr(data, name)
        if price is not None and not rules.is_multiple(price, inst.tick_size):
            raise invalid(f"{name} {price} is not a multiple of tick_size {inst.tick_size}", name)
    if data.type == "market" and inst.last_price is None:
        raise invalid(
            f"{inst.symbol} has no price yet: market orders cannot fill", "symbol", slug="no-market-price"
        )


def estimated_price(data: Proposal, inst: InstrumentInfo) -> Decimal:
    """Worst-case execution price used for buying power and risk: what the order may pay or receive."""
    if data.type == "market":
        assert inst.last_price is not None
        return rules.fill_price_for_market(data.side, inst.last_price, inst.slippage_bps, inst.tick_size)
    if data.type in ("limit", "stop_limit"):
        assert data.limit_price is not None
        return data.limit_price
    assert data.stop_price is not None
    reference = data.stop_price
    if data.side == "buy":
        reference = max(data.stop_price, inst.last_price or data.stop_price)
    return rules.fill_price_for_market(data.side, reference, inst.slippage_bps, inst.tick_size)


def reservation(qty: Decimal, price: Decimal, inst: InstrumentInfo) -> Decimal:
    """The cash a buy of `qty` at `price` holds back: its cost and the larger of the two fees."""
    rate = max(inst.maker_fee_rate, inst.taker_fee_rate, ZERO)
    return qty * price + rules.fee(qty * price, rate)


def check_account(
    book: AccountBook, data: Proposal, inst: InstrumentInfo, price: Decimal, quantity_field: str = "quantity"
) -> None:
    """The account's trading state, its sellable position (long-only accounts) and its buying power; a size
    the account cannot carry names `quantity_field` (`notional` for an order sized by its notional)."""
    state = pretrade.portfolio_state(book)
    proposed = risk_checks.ProposedOrder(data.symbol, data.side, data.quantity, price)
    reason = risk_checks.trading_state_rejection(book.trading_state, state, proposed)
    if reason is not None:
        slug = "account-halted" if book.trading_state == "halted" else "reduce-only"
        raise invalid(reason, "side" if book.trading_state == "reduce_only" else "account", slug=slug)
    position = book.position(data.symbol).quantity
    if data.side == "sell" and not book.allow_short:
        sellable = position - book.open_sell_quantity
        if data.quantity > sellable:
            raise invalid(
                f"sell of {data.quantity} exceeds the sellable position {max(sellable, ZERO)} "
                "(this account does not allow short selling)",
                quantity_field,
                slug="insufficient-position",
            )
    if data.side == "buy":
        cost = reservation(data.quantity, price, inst)
        available = book.buying_power
        multiplier = pretrade.margin_multiplier(book)
        if multiplier > 1:
            gross = sum((abs(q * p) for q, p in state.positions.values()), ZERO)
            available = max(available, book.equity * multiplier - gross - book.reserved_cash)
        if cost > available:
            raise invalid(
                f"order needs {cost} but buying power is {available}",
                quantity_field,
                slug="insufficient-buying-power",
            )


def decide(
    data: Proposal,
    inst: InstrumentInfo,
    book: AccountBook,
    *,
    other_reduce_only: Decimal | None = None,
    others: str = "reduce-only orders",
    notional_quantity: Decimal | None = None,
    notional_field: str = "quantity",
    orders: int | None = None,
) -> Plan:
    """Every account rule for an order already valid for its instrument: its estimated price, the
    instrument's minimum notional (on `notional_quantity`, the order's whole quantity, when `data.quantity`
    is only what it leaves open), the account checks, the reduce-only rule (`other_reduce_only`: the open
    quantity of the account's other reduce-only orders on that side, `others` naming what it sums, None
    for an order the rule does not apply to: sizing.reduce_only_others) and the account's risk limits.
    Group limits are the caller's (they need a read)."""
    price = estimated_price(data, inst)
    total = data.quantity if notional_quantity is None else notional_quantity
    if total * price < inst.min_notional:
        # (valued at what it would trade at: a stop far from the market, a trailing stop's wide trail,
        # makes a small order of a big position; the message says which price that was)
        basis = {"market": "the last price", "limit": "its limit price", "stop_limit": "its limit price"}.get(
            data.type, "its stop price"
        )
        value = f"notional {total * price} ({total} at {basis}, {price})"
        raise invalid(f"{value} is below min_notional {inst.min_notional}", notional_field)
    check_account(book, data, inst, price, notional_field)
    if other_reduce_only is not None:
        sizing.check_reduce_only(book, data.symbol, data.side, data.quantity, other_reduce_only, others,
                                 quantity_field=notional_field)
    added = orders_added(data) if orders is None else orders
    proposed = risk_checks.ProposedOrder(data.symbol, data.side, data.quantity, price, added)
    breach = pretrade.check(book, pretrade.portfolio_state(book), proposed) if book.limits else None
    return Plan(book, inst, price, proposed, breach)


def orders_added(data: Proposal) -> int:
    """How many orders placing `data` adds to what `max_open_orders` counts (open orders and held legs):
    a simple order 1; an OCO its order and its stop-loss leg; a bracket or OTO its entry and each exit
    leg (held until the entry fills, then open with no check of their own). (A replace adds none: it
    passes `orders=0` to `decide`.)"""
    order_class = getattr(data, "order_class", None) or "simple"
    if order_class == "simple":
        return 1
    stop_loss = getattr(data, "stop_loss", None) is not None
    if order_class == "oco":
        return 1 + stop_loss
    return 1 + (getattr(data, "take_profit", None) is not None) + stop_loss


def same_fields(data: Any, existing: Any) -> bool:
    """Whether a simple order's body repeats the stored order of its client_order_id (an idempotent
    replay). A notional order is compared by its notional: its quantity depends on the price at acceptance."""
    size = data.notional if data.notional is not None else data.quantity
    stored = existing.notional if existing.notional is not None else existing.quantity
    return (data.symbol, data.side, data.type, size, data.limit_price, data.stop_price, data.time_in_force,
            data.reduce_only) == (
        existing.symbol, existing.side, existing.type, stored, existing.limit_price, existing.stop_price,
        existing.time_in_force, existing.reduce_only,
    )
