"""The hook a new last price fires, inside the transaction that stores it.

Markets does not know about orders: the trading domain registers its matcher here, so each price
update matches resting orders in the same transaction (DOMAIN.md, "Paper exchange").
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
