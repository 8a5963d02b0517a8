"""A bot that protects every entry with a take-profit and a stop-loss, against a simulated live market.

It starts a seeded random-walk feed for SYMBOL (admin or market-data key) and places ROUNDS bracket
orders one after the other: a market buy of QUANTITY whose two exit legs, a take-profit limit sell
TAKE_PROFIT % above the last price and a stop sell STOP_LOSS % below, are held by the exchange until the
entry fills and then rest as one-cancels-the-other (the first exit to fill cancels its sibling in the
same transaction, so the position never goes short). It follows its `trade_updates` until an exit leg
fills, prints each round, and checks at the end that its position is flat and equals the sum of its
fills. A symbol that already has a feed (`make run` simulates the demo symbols) is traded on that feed.
A round whose exit has not filled within --wait seconds ends the bot: it cancels its open orders and
closes its position first.

    python clients/python/examples/bracket_bot.py --url http://127.0.0.1:8000 --key "$KEY" --symbol DEMO
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradedesk_client import AsyncClient, TradeUpdate
from tradedesk_client.errors import Conflict


def to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


async def run(
    url: str,
    key: str,
    symbol: str,
    quantity: Decimal,
    take_profit: Decimal,
    stop_loss: Decimal,
    rounds: int,
    seed: int,
    wait_seconds: float,
) -> dict:
    async with AsyncClient(url, api_key=key) as td:
        instrument = await td.instruments.get(symbol)
        account = await td.accounts.create(f"bracket {symbol}", initial_cash="1000000")
        stream = td.stream([f"trade_updates:{account.id}"], yield_control=True)
        updates: asyncio.Queue = asyncio.Queue()

        async def listen() -> None:
            async for message in stream:
                await updates.put(message)

        listener = asyncio.create_task(listen())
        while (await updates.get()).get("type") != "subscribed":
            pass
        try:
            feed = await td.market.simulate([symbol], interval_ms=20, annual_volatility=3.0, seed=seed)
        except Conflict as exc:  # already fed (one replay or simulation per symbol): trade on that feed
            print(f"feed: {exc.detail}")
            feed = None
        results: list = []
        try:
            for n in range(rounds):
                price = (await td.instruments.price(symbol)).price
                target = to_tick(price * (1 + take_profit / 100), instrument.tick_size, ROUND_CEILING)
                stop = to_tick(price * (1 - stop_loss / 100), instrument.tick_size, ROUND_FLOOR)
                entry = await td.orders.bracket(
                    account.id, symbol, "buy", quantity, type="market", take_profit=target, stop_loss=stop
                )
                legs = entry.legs or []
                exits = {leg.id: "take_profit" if leg.type == "limit" else "stop_loss" for leg in legs}
                # One deadline per round: every stream message (a heartbeat every 15 s) would restart a
                # per-message timeout, which then never fires.
                deadline = asyncio.get_running_loop().time() + wait_seconds
                try:
                    while True:
                        left = deadline - asyncio.get_running_loop().time()
                        message = await asyncio.wait_for(updates.get(), max(left, 0))
                        is_exit = isinstance(message, TradeUpdate) and message.order.id in exits
                        if is_exit and message.event == "fill":
                            break
                except TimeoutError:
                    # No exit in time: leave nothing behind (the legs, then the position) and stop.
                    await td.orders.cancel_all(account.id, symbol=symbol)
                    await td.positions.close(account.id, symbol)
                    timed_out = f"no exit within {wait_seconds:g} s: closed"
                    results.append((n, str(entry.avg_fill_price), timed_out, ""))
                    break
                results.append(
                    (n, str(entry.avg_fill_price), exits[message.order.id], str(message.order.avg_fill_price))
                )
        finally:
            if feed is not None:
                await td.market.stop_simulation(feed.id)
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            stream.close()
        fills = [f async for f in td.fills.iter(account.id)]
        held = sum((f.quantity if f.side == "buy" else -f.quantity for f in fills), Decimal(0))
        positions = {p.symbol: p.quantity for p in await td.positions.list(account.id)}
        assert positions.get(symbol, Decimal(0)) == held, (positions, held)
        return {"account": str(account.id), "rounds": results, "position": str(held), "fills": len(fills)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an admin or market-data API key (it starts the feed)")
    parser.add_argument("--symbol", default="DEMO")
    parser.add_argument("--quantity", type=Decimal, default=Decimal(10))
    parser.add_argument("--take-profit", type=Decimal, default=Decimal("0.5"), help="percent above the entry")
    parser.add_argument("--stop-loss", type=Decimal, default=Decimal("0.5"), help="percent below the entry")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for a round's exit")
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.url,
            args.key,
            args.symbol,
            args.quantity,
            args.take_profit,
            args.stop_loss,
            args.rounds,
            args.seed,
            args.wait,
        )
    )
    for name, value in result.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
