"""Average-cost position accounting and cash movements (pure, exact `Decimal`).

Cash and positions change only through fills, so replaying an account's fills in order from its initial
cash (`reconcile`) must reproduce exactly what the incremental updates (`apply_fill`, `cash_delta`) stored.

Decisions beyond DOMAIN.md:

* The average entry price is rounded half-even to 1e-10 (only when it has more decimals). A weighted
  average is generally non-terminating; 1e-10 is far below any tick, and with quantities of at most
  8 decimals the realised PnL `(price - avg) * qty` then has at most 18 decimals and is stored exactly
  in the NUMERIC(38, 18) columns.
* Realised PnL is gross: fees are excluded from it and from the average, and are charged to cash only.
* Closing through zero realises the closed part at the old average and opens the rest at the fill price.
* A flat position has average entry price 0 but keeps its realised PnL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

from app.domain.trading.rules import Side
from app.lib.decimals import nonnegative_zero

_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
AVG_PRICE_QUANTUM = Decimal("1E-10")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class PositionState:
    quantity: Decimal  # signed: negative is short
    avg_entry_price: Decimal
    realized_pnl: Decimal

    @classmethod
    def flat(cls) -> PositionState:
        return cls(quantity=_ZERO, avg_entry_price=_ZERO, realized_pnl=_ZERO)

    def unrealized_pnl(self, mark_price: Decimal) -> Decimal:
        """(mark - avg) * quantity; the sign of the quantity makes this right for shorts as well."""
        with localcontext(_WIDE):
            # (a short marked at its entry: -q * 0.00 is a negative zero)
            return nonnegative_zero((mark_price - self.avg_entry_price) * self.quantity)

    def market_value(self, mark_price: Decimal) -> Decimal:
        with localcontext(_WIDE):
            return self.quantity * mark_price


def _round_avg(price: Decimal) -> Decimal:
    # Keep short exact averages as they are ("100.5", not "100.5000000000").
    if price.as_tuple().exponent >= -10:  # type: ignore[operator]
        return price
    return price.quantize(AVG_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)


def apply_fill(pos: PositionState, side: Side | str, qty: Decimal, price: Decimal) -> PositionState:
    """Position after one fill under average-cost accounting.

    * same direction (or from flat): quantity-weighted average of old average and fill price;
    * opposite direction: realise `(price - avg) * closed` on a long, `(avg - price) * closed` on a
      short, where `closed = min(qty, |position|)`; the average is unchanged while the position shrinks,
      0 when it becomes flat, and the fill price for any remainder opened on the other side.
    """
    side = Side(side)
    if qty <= 0:
        raise ValueError(f"fill quantity must be positive, got {qty}")
    if price <= 0:
        raise ValueError(f"fill price must be positive, got {price}")
    with localcontext(_WIDE):
        signed = qty if side is Side.BUY else -qty
        q0 = pos.quantity
        q1 = q0 + signed
        if q0 == 0 or (q0 > 0) == (signed > 0):
            avg = (abs(q0) * pos.avg_entry_price + qty * price) / abs(q1)
            return replace(pos, quantity=q1, avg_entry_price=_round_avg(avg))
        closed = min(qty, abs(q0))
        pnl = (price - pos.avg_entry_price) * closed if q0 > 0 else (pos.avg_entry_price - price) * closed
        realized = pos.realized_pnl + pnl
        if q1 == 0:
            avg = _ZERO
        elif (q1 > 0) == (q0 > 0):
            avg = pos.avg_entry_price
        else:
            avg = price
        return PositionState(quantity=q1, avg_entry_price=avg, realized_pnl=realized)


def cash_delta(side: Side | str, qty: Decimal, price: Decimal, fee: Decimal) -> Decimal:
    """Cash change of one fill in the quote currency: buy -(qty*price) - fee, sell +(qty*price) - fee."""
    with localcontext(_WIDE):
        gross = qty * price
        return -gross - fee if Side(side) is Side.BUY else gross - fee


@dataclass(frozen=True)
class FillRecord:
    symbol: str
    side: Side | str
    quantity: Decimal
    price: Decimal
    fee: Decimal


def reconcile(fills: Iterable[FillRecord], initial_cash: Decimal) -> tuple[Decimal, dict[str, PositionState]]:
    """Replay fills (in execution order) from the initial cash: (cash, positions by symbol).

    Symbols that traded and are flat again stay in the result, because their realised PnL still counts.
    """
    cash = initial_cash
    positions: dict[str, PositionState] = {}
    with localcontext(_WIDE):
        for f in fills:
            cash += cash_delta(f.side, f.quantity, f.price, f.fee)
            positions[f.symbol] = apply_fill(
                positions.get(f.symbol, PositionState.flat()), f.side, f.quantity, f.price
            )
    return cash, positions
