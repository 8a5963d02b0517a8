"""The hooks a new last price fires: inside the transaction that stores it, and after it commits.

Markets does not know about orders: the composition root (app/server/wiring.py, `wire()`) registers the
trading domain's matcher here, so each price update matches resting orders in the same transaction
(DOMAIN.md, "Paper exchange"). Nothing registers itself on import: every API process and every worker
calls `wire()` at start, and the price path refuses to run before it did (app/lib/wired.py), so a
process that forgot it cannot store prices without matching them.

A hook may also come with a *quiet band* provider: given the instrument (whose row the caller holds FOR
UPDATE), it answers the open interval (lower, upper) of prices at which the hook has nothing to do. The
price path then skips the hook for a price strictly inside the band (`feed_prices` in services.py), which
is what lets a replay run far faster than one matching transaction per price. A hook without a provider
runs for every price (and so turns the fast path off: keep hooks for work that must happen in the price's
transaction).

Whatever must see every price but needs no part in its transaction (publishing `prices:<symbol>` to a
stream, metrics) is registered with `on_prices_committed`: it is called after each price-path transaction
commits, with the prices it stored, in order, quiet or not.

The risk domain's post-trade check is a committed-price hook (`on_price_committed`): it runs
after the price (and its fills) are visible, outside the price transaction, on the caller's connection, so
the check neither lengthens nor can fail that transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.lib.wired import require_wired

PriceHook = Callable[[AsyncConnection, str, Decimal, Decimal | None, datetime], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class QuietBand:
    """Prices p with `lower < p < upper` need no hook (None: unbounded on that side). `always` means some
    hook must see every price (e.g. a triggered stop still waiting for volume)."""

    lower: Decimal | None = None
    upper: Decimal | None = None
    always: bool = False

    def contains(self, price: Decimal) -> bool:
        return (
            not self.always
            and (self.lower is None or price > self.lower)
            and (self.upper is None or price < self.upper)
        )

    def narrowed(self, other: QuietBand) -> QuietBand:
        lower = (
            other.lower
            if self.lower is None
            else self.lower
            if other.lower is None
            else max(self.lower, other.lower)
        )
        upper = (
            other.upper
            if self.upper is None
            else self.upper
            if other.upper is None
            else min(self.upper, other.upper)
        )
        return QuietBand(lower, upper, self.always or other.always)


ALWAYS = QuietBand(always=True)
BandProvider = Callable[[AsyncConnection, str], Awaitable[QuietBand]]

PRICE_HOOKS: list[PriceHook] = []
QUIET_BANDS: dict[PriceHook, BandProvider] = {}
# Called with (symbol, prices) after commit; each price has `.price`, `.ts` and `.volume` (PricePoint).
CommittedPrices = Callable[[str, Sequence[Any]], Awaitable[None]]
COMMITTED_PRICE_OBSERVERS: list[CommittedPrices] = []
CommittedPriceHook = Callable[[AsyncConnection, str], Awaitable[None]]
COMMITTED_PRICE_HOOKS: list[CommittedPriceHook] = []


def on_prices_committed(observer: CommittedPrices) -> CommittedPrices:
    if observer not in COMMITTED_PRICE_OBSERVERS:
        COMMITTED_PRICE_OBSERVERS.append(observer)
    return observer


async def prices_committed(symbol: str, prices: Sequence[Any]) -> None:
    """Tell every observer; an observer's failure is logged, never raised (the prices are stored)."""
    for observer in COMMITTED_PRICE_OBSERVERS:
        try:
            await observer(symbol, prices)
        except Exception as exc:
            from app.lib.log import get_logger

            get_logger("app.markets.events").warning("price_observer_failed", symbol=symbol, error=repr(exc)[:300])


def on_price(hook: PriceHook, quiet_band: BandProvider | None = None) -> PriceHook:
    """Register `hook` for every stored price, with the provider of its quiet band if it has one."""
    if hook not in PRICE_HOOKS:
        PRICE_HOOKS.append(hook)
    if quiet_band is not None:
        QUIET_BANDS[hook] = quiet_band
    return hook


async def quiet_band(conn: AsyncConnection, symbol: str) -> QuietBand:
    """The band in which no registered hook has anything to do. Call it with the instrument row locked
    FOR UPDATE, in a statement after the lock (so that it sees what the lock's previous holder committed)."""
    require_wired("the price path (quiet band)")
    band = QuietBand()
    for hook in PRICE_HOOKS:
        provider = QUIET_BANDS.get(hook)
        if provider is None:
            return ALWAYS
        band = band.narrowed(await provider(conn, symbol))
    return band


async def publish_price(
    conn: AsyncConnection, symbol: str, price: Decimal, volume: Decimal | None, ts: datetime
) -> int:
    """Run every hook; returns the number of fills they made."""
    require_wired("the price path (price hooks)")
    fills = 0
    for hook in PRICE_HOOKS:
        fills += await hook(conn, symbol, price, volume, ts)
    return fills


def on_price_committed(hook: CommittedPriceHook) -> CommittedPriceHook:
    if hook not in COMMITTED_PRICE_HOOKS:
        COMMITTED_PRICE_HOOKS.append(hook)
    return hook


async def publish_price_committed(conn: AsyncConnection, symbol: str) -> None:
    """Run every committed-price hook (after the price transaction has committed)."""
    for hook in COMMITTED_PRICE_HOOKS:
        await hook(conn, symbol)

