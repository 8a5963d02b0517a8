"""The hooks a new last price fires: inside the transaction that stores it, and after it commits.

Markets does not know about orders: the trading domain registers its matcher here, so each price
update matches resting orders in the same transaction (DOMAIN.md, "Paper exchange"). The risk domain
registers its post-trade check as a committed-price hook: it runs after the price (and its fills) are
visible, outside the price transaction, so the check neither lengthens nor can fail that transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

PriceHook = Callable[[AsyncConnection, str, Decimal, Decimal | None, datetime], Awaitable[int]]

PRICE_HOOKS: list[PriceHook] = []


def on_price(hook: PriceHook) -> PriceHook:
    if hook not in PRICE_HOOKS:
        PRICE_HOOKS.append(hook)
    return hook


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
