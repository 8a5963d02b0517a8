"""Order sizing rules that placement and replace share: `notional` market orders and `reduce_only`.

Pure rules plus the one query the reduce-only rule needs; no transaction of its own (the caller's read
or lock decides what it sees, see `open_reduce_only`). Rules in docs/TRADING.md.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Any

from app.domain.trading.book import AccountBook
from app.domain.trading.queries import OPEN, active_quantity
from app.lib.errors import invalid

ZERO = Decimal(0)

# The open quantity of the account's other reduce-only orders on one symbol and side ($4: the order
# being replaced, left out; NULL at placement). The two exits of a bracket or OCO group share one
# quantity (a fill of one reduces the other), so a group counts once: its stop-loss leg is left out
# while its take-profit leg is open (an OCO's stop-loss leg has the take-profit leg as parent, a
# bracket's legs share the entry as parent). Held legs are not open: they wait for an entry fill that
# grows the position by as much as they may take off; an active leg of a partly filled entry counts what
# the entry filled (queries.active_quantity). Read only for reduce-only orders, so the
# placement reads of every other order stay as they are. On the optimistic placement path it runs after
# the account's version was read: an order placed or canceled since changed the account row (its event
# counter), so the version check of the write fails and the locked path decides again, after this
# query under the account lock.
OPEN_REDUCE_ONLY_SQL = f"""
SELECT coalesce(sum({active_quantity("o")}), 0)::text FROM orders o
 WHERE o.account_id = $1 AND o.symbol = $2 AND o.side = $3 AND o.reduce_only
   AND o.status IN {OPEN} AND ($4::uuid IS NULL OR coalesce(o.parent_id, o.id) <> $4::uuid)
   AND NOT (o.leg = 'stop_loss' AND o.parent_id IS NOT NULL AND EXISTS (
         SELECT 1 FROM orders t
          WHERE t.leg = 'take_profit' AND t.status IN {OPEN}
            AND (t.id = o.parent_id OR t.parent_id = o.parent_id)))
"""


def check_sizing_shape(data: Any) -> None:
    """`quantity` or `notional`, never both; `notional` only on a market order (422 naming the field)."""
    if data.notional is None:
        return
    if data.quantity is not None:
        raise invalid(
            "give either `quantity` or `notional`, not both", "notional", slug="quantity-or-notional"
        )
    if data.type != "market":
        raise invalid(
            f"`notional` is for market orders only, not {data.type} orders",
            "notional",
            slug="notional-market-only",
        )


def quantity_for_notional(notional: Decimal, last_price: Decimal, lot_size: Decimal) -> Decimal:
    """notional / last price, floored to the lot, exactly: in Fractions, so no rounded quotient (a
    1000 / 3 that Decimal would round) can move the floor across a lot boundary."""
    lots = floor(Fraction(notional) / (Fraction(last_price) * Fraction(lot_size)))
    return lot_size * lots if lots > 0 else ZERO


def size_notional(data: Any, inst: Any) -> None:
    """Set a notional market order's `quantity` from the instrument's last price (again on every decision:
    a retried placement sizes at the price it is decided on). Below `min_quantity` is 422 on `notional`."""
    if inst.last_price is None:
        raise invalid(
            f"{inst.symbol} has no price yet: a notional order cannot be sized",
            "notional",
            slug="no-market-price",
        )
    qty = quantity_for_notional(data.notional, inst.last_price, inst.lot_size)
    if qty <= 0 or qty < inst.min_quantity:
        raise invalid(
            f"notional {data.notional} buys {qty} at {inst.last_price} (lot_size {inst.lot_size}), "
            f"below min_quantity {inst.min_quantity}",
            "notional",
        )
    data.quantity = qty


def check_reduce_only(
    book: AccountBook, symbol: str, side: str, quantity: Decimal, other_open: Decimal
) -> None:
    """A reduce-only order must face the position (sell a long, buy a short), and together with the
    account's other open reduce-only orders on that side it may at most close it, never reverse it."""
    position = book.position(symbol).quantity
    if position == 0 or (position > 0) == (side == "buy"):
        held = (
            "no position" if position == 0 else f"a {'long' if position > 0 else 'short'} of {abs(position)}"
        )
        raise invalid(
            f"reduce_only {side} would open or grow a position: the account holds {held} in {symbol}",
            "side",
            slug="reduce-only",
        )
    if quantity + other_open > abs(position):
        raise invalid(
            f"reduce_only {side} of {quantity} with {other_open} already open on reduce-only orders would "
            f"reverse the position of {position} in {symbol}",
            "quantity",
            slug="reduce-only",
        )


async def open_reduce_only(
    apg: Any, account_id: uuid.UUID, symbol: str, side: str, exclude_root: uuid.UUID | None = None
) -> Decimal:
    """The open reduce-only quantity of the account's `side` in `symbol`, leaving out the orders whose
    root (`coalesce(parent_id, id)`) is `exclude_root`: a replaced order, or a replaced leg's whole
    group, whose exits share one quantity and are counted once, as the replaced leg."""
    return Decimal(await apg.fetchval(OPEN_REDUCE_ONLY_SQL, account_id, symbol, side, exclude_root))
