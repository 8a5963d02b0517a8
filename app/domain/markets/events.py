"""The hooks a new last price fires: inside the transaction that stores it, and after it commits.

Markets does not know about orders: the trading domain registers its matcher here, so each price
update matches resting orders in the same transaction (DOMAIN.md, "Paper exchange").

A hook may also register a *quiet band* provider: given the instrument (whose row the caller holds FOR
UPDATE), it answers the open interval (lower, upper) of prices at which the hook has nothing to do. The
price path then skips the hook for a price strictly inside the band (`feed_prices` in services.py), which
is what lets a replay run far faster than one matching transaction per price. A hook without a provider
runs for every price (and so turns the fast path off: keep hooks for work that must happen in the price's
transaction).

Whatever must see every price but needs no part in its transaction (publishing `prices:<symbol>` to a
stream, metrics) subscribes with `on_prices_committed`: it is called after each price-path transaction
commits, with the prices it stored, in order, quiet or not.

The risk domain registers its post-trade check as a committed-price hook (`on_price_committed`): it runs
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


def on_price(hook: PriceHook) -> PriceHook:
    if hook not in PRICE_HOOKS:
        PRICE_HOOKS.append(hook)
    return hook


def quiet_band_of(hook: PriceHook) -> Callable[[BandProvider], BandProvider]:
    """Register `provider` as the quiet band of `hook` (see the module docstring)."""

    def register(provider: BandProvider) -> BandProvider:
        QUIET_BANDS[hook] = provider
        return provider

    return register


async def quiet_band(conn: AsyncConnection, symbol: str) -> QuietBand:
    """The band in which no registered hook has anything to do. Call it with the instrument row locked
    FOR UPDATE, in a statement after the lock (so that it sees what the lock's previous holder committed)."""
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
    fills = 0
    for hook in PRICE_HOOKS:
        fills += await hook(conn, symbol, price, volume, ts)
    return fills


CommittedPriceHook = Callable[[AsyncConnection, str], Awaitable[None]]

COMMITTED_PRICE_HOOKS: list[CommittedPriceHook] = []


def on_price_committed(hook: CommittedPriceHook) -> CommittedPriceHook:
    if hook not in COMMITTED_PRICE_HOOKS:
        COMMITTED_PRICE_HOOKS.append(hook)
    return hook


async def publish_price_committed(conn: AsyncConnection, symbol: str) -> None:
    """Run every committed-price hook (after the price transaction has committed)."""
    for hook in COMMITTED_PRICE_HOOKS:
        await hook(conn, symbol)

