"""Group limits (pure, exact `Decimal`): the sums a group limit bounds and the pre-trade check on them.

A group's figures sum over every account of the group and of its sub-groups:

* `max_gross_exposure`: `Σ|q·p|` over every position of every account;
* `max_net_exposure`: `|Σ q·p|` (long and short positions of different accounts offset);
* `max_net_position`: `|Σ q|` of one symbol over the accounts (with `symbol`: that symbol; without:
  every symbol, measured on the order's);
* `max_daily_loss`: `-Σ daily PnL` of the accounts, a stop like the account's: once reached, only
  orders that shrink an account's position toward zero (or close it) are accepted, not one that grows
  or flips it (checks.increases);
* `max_open_orders`: the accounts' open orders and held legs together, plus every order the new one
  places (`ProposedOrder.orders`).

The pre-trade rules are the account rules (risk/checks.py) applied to the sums: figures are measured as
if the order filled completely at its estimated price; the order's symbol is re-marked at that price
for the "before" and "after" figures of the ordering account; exposure and position limits only block
an order that increases the figure they measure; a breach is `would_be > value` (`>=` for the stop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from app.domain.risk import checks

GROUP_LIMIT_TYPES: tuple[str, ...] = (
    "max_gross_exposure",
    "max_net_exposure",
    "max_net_position",
    "max_daily_loss",
    "max_open_orders",
)
SYMBOL_SCOPABLE = frozenset({"max_net_position"})
_ORDER = {t: i for i, t in enumerate(GROUP_LIMIT_TYPES)}
_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN)
_ZERO = Decimal(0)

_MESSAGES = {
    "max_gross_exposure": "group {g} gross exposure {w} would exceed the limit {v}",
    "max_net_exposure": "group {g} net exposure {w} would exceed the limit {v}",
    "max_net_position": "group {g} net position {w} in {s} would exceed the limit {v}",
    "max_daily_loss": "group {g} daily loss {w} has reached the limit {v}: only risk-reducing orders pass",
    "max_open_orders": "group {g} would have {w} open orders, over the limit {v}",
}


@dataclass(frozen=True)
class GroupLimit:
    id: str
    group_id: str
    group_name: str
    limit_type: str
    value: Decimal
    symbol: str | None = None
    warn_at_pct: Decimal = Decimal(80)


@dataclass
class GroupFigures:
    """A group's sums right now. `net_position` holds the symbols that were asked for."""

    gross: Decimal = _ZERO
    net: Decimal = _ZERO
    daily_pnl: Decimal = _ZERO
    open_orders: int = 0
    net_position: dict[str, Decimal] = field(default_factory=dict)


def validate_group_limit(
    limit_type: str, value: Decimal, symbol: str | None, warn_at_pct: Decimal
) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if limit_type not in _ORDER:
        errors.append(("limit_type", f"must be one of {', '.join(GROUP_LIMIT_TYPES)}"))
    if not value.is_finite() or value <= 0:
        errors.append(("value", "must be a positive number"))
    elif limit_type == "max_open_orders" and value != value.to_integral_value():
        errors.append(("value", "must be a whole number of orders"))
    if symbol is not None and limit_type in _ORDER and limit_type not in SYMBOL_SCOPABLE:
        errors.append(("symbol", f"{limit_type} is group-wide and cannot be scoped to a symbol"))
    if not warn_at_pct.is_finite() or not (0 < warn_at_pct <= 100):
        errors.append(("warn_at_pct", "must be in (0, 100]"))
    return errors


def current_value(figures: GroupFigures, limit: GroupLimit) -> Decimal:
    """What a group limit measures now (for utilisation); an unscoped net position limit measures the
    largest net position among the symbols in `figures.net_position`."""
    kind = limit.limit_type
    if kind == "max_gross_exposure":
        return figures.gross
    if kind == "max_net_exposure":
        return abs(figures.net)
    if kind == "max_net_position":
        if limit.symbol is not None:
            return abs(figures.net_position.get(limit.symbol, _ZERO))
        return max((abs(v) for v in figures.net_position.values()), default=_ZERO)
    if kind == "max_daily_loss":
        return max(-figures.daily_pnl, _ZERO)
    if kind == "max_open_orders":
        return Decimal(figures.open_orders)
    raise ValueError(f"unknown group limit type {kind!r}")


def check_pre_trade(
    figures: GroupFigures,
    limits: list[GroupLimit],
    order: checks.ProposedOrder,
    account_quantity: Decimal,
    last_price: Decimal | None,
) -> checks.Breach | None:
    """The first group limit the order would breach (in GROUP_LIMIT_TYPES order), or None.

    `figures` are the group's sums before the order, `account_quantity` the ordering account's position
    in the order's symbol and `last_price` the mark that position is valued at in the sums (None: at
    the order price).
    """
    with localcontext(_WIDE):
        after_qty = account_quantity + order.signed_quantity
        grows = checks.increases(account_quantity, after_qty)
        mark = last_price if last_price is not None else order.price
        # The account's position in the symbol, re-marked at the order price before and after.
        gross_before = figures.gross - abs(account_quantity * mark) + abs(account_quantity * order.price)
        gross_after = gross_before - abs(account_quantity * order.price) + abs(after_qty * order.price)
        net_before = figures.net - account_quantity * mark + account_quantity * order.price
        net_after = net_before + order.signed_quantity * order.price
        position_before = figures.net_position.get(order.symbol, _ZERO)
        position_after = position_before + order.signed_quantity
        for lim in sorted(limits, key=lambda x: (_ORDER[x.limit_type], x.symbol is None, x.id)):
            kind = lim.limit_type
            if kind == "max_net_position" and lim.symbol not in (None, order.symbol):
                continue
            if kind == "max_gross_exposure":
                would_be, breached = gross_after, gross_after > lim.value and gross_after > gross_before
            elif kind == "max_net_exposure":
                would_be = abs(net_after)
                breached = would_be > lim.value and would_be > abs(net_before)
            elif kind == "max_net_position":
                would_be = abs(position_after)
                breached = would_be > lim.value and would_be > abs(position_before)
            elif kind == "max_daily_loss":
                would_be = max(-figures.daily_pnl, _ZERO)
                breached = grows and would_be >= lim.value
            else:  # max_open_orders
                would_be = Decimal(figures.open_orders + order.orders)
                breached = would_be > lim.value
            if breached:
                message = _MESSAGES[kind].format(g=lim.group_name, w=would_be, v=lim.value, s=order.symbol)
                return checks.Breach(lim.id, kind, lim.value, would_be, message, lim.symbol)
    return None
