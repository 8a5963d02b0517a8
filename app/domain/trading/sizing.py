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

# The open quantity of the account's other reduce-only orders on one symbol and side ($4: the root of the
# order being replaced, left out with its group; NULL at placement). The two exits of a bracket or OCO
# group share one quantity (a fill of one reduces the other), so a group counts once: its stop-loss leg is
# left out while its take-profit leg is open (an OCO's stop-loss leg has the take-profit leg as parent, a
# bracket's legs share the entry as parent). Held legs are not open: they wait for an entry fill that
# grows the position by as much as they may take off; an active leg of a partly filled entry counts what
# the entry filled (queries.active_quantity). Read only for reduce-only orders (and for every order of an
# account in the `reduce_only` trading state: `OPEN_ON_SIDE_SQL`, the same sum over all its open orders of
# the side), so the placement reads of every other order stay as they are. On the optimistic placement
# path it runs after the account's version was read: an order placed or canceled since changed the
# account row (its event counter), so the version check of the write fails and the locked path decides
# again, after this query under the account lock.
def _open_sql(reduce_only: bool) -> str:
    return f"""
SELECT coalesce(sum({active_quantity("o")}), 0)::text FROM orders o
 WHERE o.account_id = $1 AND o.symbol = $2 AND o.side = $3{" AND o.reduce_only" if reduce_only else ""}
   AND o.status IN {OPEN} AND ($4::uuid IS NULL OR coalesce(o.parent_id, o.id) <> $4::uuid)
   AND NOT (o.leg = 'stop_loss' AND o.parent_id IS NOT NULL AND EXISTS (
         SELECT 1 FROM orders t
          WHERE t.leg = 'take_profit' AND t.status IN {OPEN}
            AND (t.id = o.parent_id OR t.parent_id = o.parent_id)))
"""


OPEN_REDUCE_ONLY_SQL = _open_sql(reduce_only=True)
OPEN_ON_SIDE_SQL = _open_sql(reduce_only=False)


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
    book: AccountBook, symbol: str, side: str, quantity: Decimal, other_open: Decimal,
    others: str = "reduce-only orders", quantity_field: str = "quantity",
) -> None:
    """A reduce-only order must face the position (sell a long, buy a short), and together with the
    account's other open reduce-only orders on that side (`others` names what `other_open` sums) it may at
    most close it, never reverse it."""
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
            f"reduce_only {side} of {quantity} with {other_open} already open on {others} would "
            f"reverse the position of {position} in {symbol}",
            quantity_field,
            slug="reduce-only",
        )


async def open_reduce_only(
    apg: Any, account_id: uuid.UUID, symbol: str, side: str, exclude_root: uuid.UUID | None = None
) -> Decimal:
    """The open reduce-only quantity of the account's `side` in `symbol`, leaving out the orders whose
    root (`coalesce(parent_id, id)`) is `exclude_root`: a replaced order, or a replaced leg's whole
    group, whose exits share one quantity and are counted once, as the replaced leg."""
    return Decimal(await apg.fetchval(OPEN_REDUCE_ONLY_SQL, account_id, symbol, side, exclude_root))


# What the reduce-only rule sums for an order: the account's other open reduce-only orders on its side,
# or, in the `reduce_only` trading state (which accepts only orders that shrink a position without
# flipping it), all its open orders on that side, whatever their flag: several resting orders that each
# fit the position must not together reverse it.
STATE_OTHERS = "open orders of a reduce_only account"


async def reduce_only_others(
    apg: Any, book: AccountBook, symbol: str, side: str, reduce_only: bool,
    exclude_root: uuid.UUID | None = None,
) -> tuple[Decimal | None, str]:
    """The open quantity the reduce-only rule adds to an order (None: the rule does not apply) and what it
    sums."""
    if reduce_only:
        return await open_reduce_only(apg, book.id, symbol, side, exclude_root), "reduce-only orders"
    if book.trading_state == "reduce_only":
        found = await apg.fetchval(OPEN_ON_SIDE_SQL, book.id, symbol, side, exclude_root)
        return Decimal(found), STATE_OTHERS
    return None, ""
