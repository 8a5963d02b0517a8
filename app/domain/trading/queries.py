"""The SQL fragments of orders that several statements share, each written once.

Generated from the rules they express where a rule decides them (the open statuses from
`rules.OPEN_STATUSES`, the instrument columns from `rules.InstrumentInfo`, the order columns from
`schemas.OrderOut`), so a statement and the Python that reads its rows cannot drift apart. Plain strings:
the asyncpg hot paths (placement, the orders list) and SQLAlchemy `text()` statements both compose them.
No statement runs here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import get_args

import msgspec

from app.domain.trading.rules import INSTRUMENT_FIELDS, OPEN_OR_HELD_STATUSES, OPEN_STATUSES, OrderStatus
from app.domain.trading.schemas import OrderOut


def status_list(statuses: Iterable[OrderStatus]) -> str:
    """`('new', 'accepted', ...)`: the statuses in their declaration order (the text the partial indexes
    on open orders were created with, so the planner matches them)."""
    wanted = set(statuses)
    return "(" + ", ".join(f"'{s.value}'" for s in OrderStatus if s in wanted) + ")"


OPEN = status_list(OPEN_STATUSES)  # ('new', 'accepted', 'partially_filled')
OPEN_OR_HELD = status_list(OPEN_OR_HELD_STATUSES)  # ('new', 'held', 'accepted', 'partially_filled')
# The predicate of the partial indexes on open orders (models.py) and of the queries they serve.
OPEN_STATUS_SQL = f"status IN {OPEN}"
# What `max_open_orders` counts (account and group limits): open orders and held legs, which become open
# when their entry fills, with no check of their own.
OPEN_OR_HELD_STATUS_SQL = f"status IN {OPEN_OR_HELD}"

# The instrument with its exchange (`instruments i JOIN exchanges e`), in InstrumentInfo's field order.
_EXCHANGE_FIELDS = frozenset(
    {"maker_fee_rate", "taker_fee_rate", "slippage_bps", "timezone", "session_close", "session_open",
     "session_days"}
)
INSTRUMENT_COLUMNS = ", ".join(("e." if f in _EXCHANGE_FIELDS else "i.") + f for f in INSTRUMENT_FIELDS)
INSTRUMENT_JOIN = "instruments i JOIN exchanges e ON e.code = i.exchange_code"

# An order as the API shows it (OrderOut's fields in order, `legs` aside), from `orders o`.
ORDER_FIELDS: tuple[str, ...] = tuple(f for f in OrderOut.__struct_fields__ if f != "legs")
ORDER_COLUMNS = ", ".join(f"o.{f}" for f in ORDER_FIELDS)


def _as_text(tp: object) -> bool:
    return tp in (Decimal, uuid.UUID) or any(_as_text(arg) for arg in get_args(tp))


# The same as one JSON array (numbers and ids as text, so no value passes through a float): decoded into an
# OrderOut by `msgspec.convert(dict(zip(ORDER_FIELDS, values)), OrderOut)`.
ORDER_JSON = "json_build_array(" + ", ".join(
    f"o.{f.name}::text" if _as_text(f.type) else f"o.{f.name}"
    for f in msgspec.structs.fields(OrderOut) if f.name != "legs"
) + ")"


def active_quantity(o: str) -> str:
    """What an open order `o` may still fill: its remaining quantity, except for an exit leg of a bracket
    or OTO whose entry is still open. Such a leg is placed with the entry's whole quantity Q and is active
    only for what the entry filled, E: it keeps `quantity - filled_quantity = Q - X` (X: the group's exit
    fills) while it may fill `E - X`, so the entry's unfilled `Q - E` is taken off. Once the entry ends,
    its legs shrink to E themselves (groups.py `on_entry_final`). An OCO's legs have no entry. The CASE
    keeps the subquery off every order that is not such a leg."""
    return f"""greatest({o}.quantity - {o}.filled_quantity - CASE
             WHEN {o}.parent_id IS NOT NULL AND {o}.order_class IN ('bracket', 'oto') THEN coalesce(
               (SELECT greatest(e.quantity - e.filled_quantity, 0) FROM orders e
                 WHERE e.id = {o}.parent_id AND e.status IN {OPEN}), 0)
             ELSE 0 END, 0)"""


def open_sells(symbol: str) -> str:
    """The quantity of account `a`'s open sell orders in `symbol` (a parameter), as text: what a long-only
    account may no longer sell. The two exit legs of a group share one quantity and count once: a
    stop-loss leg is left out when its group has a take-profit leg too (bracket, OCO; contingent.py). Held
    legs are not open: they count from their activation, for what their entry filled."""
    return f"""(SELECT coalesce(sum({active_quantity("o")}), 0)::text FROM orders o
               WHERE o.account_id = a.id AND o.status IN {OPEN}
                 AND o.side = 'sell' AND o.symbol = {symbol}
                 AND (o.leg IS DISTINCT FROM 'stop_loss' OR o.order_class = 'oto'))"""
