"""An SMA-cross bot that trades a replay of stored candles through the live stream.

It creates an account, starts a replay of SYMBOL's daily candles (admin or market-data key), listens to
`prices:SYMBOL` and its account's `trade_updates`, and trades the cross of a fast and a slow moving average
of the prices it sees: buy when the fast average crosses above the slow one, sell the position when it
crosses below. When the replay is done it prints its trades and checks that its position equals the sum of
its fills.

    python clients/python/examples/sma_cross_bot.py --url http://127.0.0.1:8000 --key "$KEY" --symbol DEMO
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import deque
from decimal import Decimal

from tradedesk_client import AsyncClient, TradeUpdate


class SmaCross:
    def __init__(self, fast: int, slow: int) -> None:
        self.fast, self.slow = deque(maxlen=fast), deque(maxlen=slow)
        self.above: bool | None = None

    def update(self, price: Decimal) -> str | None:
        """'buy' on a cross above, 'sell' on a cross below, else None."""
        self.fast.append(price)
        self.slow.append(price)
        if len(self.slow) < self.slow.maxlen:
            return None
        above = sum(self.fast) / len(self.fast) > sum(self.slow) / len(self.slow)
        crossed = self.above is not None and above != self.above
        self.above = above
        return ("buy" if above else "sell") if crossed else None


async def run(
    url: str,
    key: str,
    symbol: str,
    fast: int,
    slow: int,
    quantity: Decimal,
    speed: float | str,
    timeframe: str = "1d",
) -> dict:
    async with AsyncClient(url, api_key=key) as td:
        account = await td.accounts.create(f"sma {symbol} {fast}/{slow}", initial_cash="1000000")
        signal = SmaCross(fast, slow)
        position = Decimal(0)
        updates = 0
        stream = td.stream([f"prices:{symbol}", f"trade_updates:{account.id}"], yield_control=True)
        subscribed = asyncio.Event()

        async def trade() -> None:
            nonlocal position, updates
            async for message in stream:
                if isinstance(message, TradeUpdate):
                    updates += 1
                    if message.position_qty is not None:
                        position = Decimal(message.position_qty)
                elif message.get("type") == "subscribed":
                    subscribed.set()  # the market starts only now, so no price is missed
                elif message.get("type") == "price" and message.get("symbol") == symbol:
                    side = signal.update(Decimal(message["price"]))
                    if side == "buy" and position <= 0:
                        await td.orders.place(account.id, symbol, "buy", "market", quantity=quantity)
                        position += quantity
                    elif side == "sell" and position > 0:
                        await td.orders.place(account.id, symbol, "sell", "market", quantity=position)
                        position = Decimal(0)

        trader = asyncio.create_task(trade())
        await asyncio.wait_for(subscribed.wait(), 30)
        feed = await td.market.replay([symbol], timeframe, speed=speed)
        try:
            while feed.status not in ("completed", "stopped", "failed"):
                await asyncio.sleep(0.3)
                feed = await td.market.get_replay(feed.id)
        finally:
            if feed.status not in ("completed", "stopped", "failed"):
                # (the bot is dying: its replay would go on feeding the symbol, which a new replay of it
                # is refused while this one runs)
                with contextlib.suppress(Exception):
                    await td.market.stop_replay(feed.id)
        await asyncio.sleep(1.0)  # the last prices and fills are still on their way
        trader.cancel()
        await asyncio.gather(trader, return_exceptions=True)
        stream.close()
        fills = [f async for f in td.fills.iter(account.id)]
        held = sum((f.quantity if f.side == "buy" else -f.quantity for f in fills), Decimal(0))
        positions = {p.symbol: p.quantity for p in await td.positions.list(account.id)}
        assert positions.get(symbol, Decimal(0)) == held, (positions, held)
        final = await td.accounts.get(account.id)
        return {
            "account": str(account.id),
            "fills": len(fills),
            "position": str(held),
            "trade_updates": updates,
            "equity": str(final.equity),
            "replay": feed.status,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an admin or market-data API key (it starts the replay)")
    parser.add_argument("--symbol", default="DEMO")
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    parser.add_argument("--quantity", type=Decimal, default=Decimal(10))
    parser.add_argument("--speed", default="864000", help='bar-time seconds per wall second, or "max"')
    args = parser.parse_args()
    speed = args.speed if args.speed == "max" else float(args.speed)
    result = asyncio.run(run(args.url, args.key, args.symbol, args.fast, args.slow, args.quantity, speed))
    for name, value in result.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
