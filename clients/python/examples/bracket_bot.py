"""A bot that protects every entry with a take-profit and a stop-loss, against a simulated live market.

It starts a seeded random-walk feed for SYMBOL (admin or market-data key), buys QUANTITY at market, then
rests a take-profit limit sell TAKE_PROFIT % above its fill and a stop sell STOP_LOSS % below, and follows
its `trade_updates`: when one exit fills it cancels the other (one-cancels-the-other, kept by the bot; if
both filled before the cancel landed, it buys the extra back), and
a new entry follows until ROUNDS entries are done. It prints each round and checks at the end that its
position equals the sum of its fills.

    python clients/python/examples/bracket_bot.py --url http://127.0.0.1:8000 --key "$KEY" --symbol DEMO
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradedesk_client import AsyncClient, Conflict, TradeUpdate


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
) -> dict:
    async with AsyncClient(url, api_key=key) as td:
        instrument = await td.instruments.get(symbol)
        # Two resting exits for one position: without an exchange-side OCO group each counts against the
        # sellable position, so the account allows shorting and the bot keeps only one exit standing.
        account = await td.accounts.create(f"bracket {symbol}", initial_cash="1000000", allow_short=True)
        stream = td.stream([f"trade_updates:{account.id}"], yield_control=True)
        updates: asyncio.Queue = asyncio.Queue()

        async def listen() -> None:
            async for message in stream:
                await updates.put(message)

        listener = asyncio.create_task(listen())
        while (await updates.get()).get("type") != "subscribed":
            pass
        feed = await td.market.simulate([symbol], interval_ms=20, annual_volatility=3.0, seed=seed)
        results = []
        try:
            for n in range(rounds):
                entry = await td.orders.place(account.id, symbol, "buy", "market", quantity=quantity)
                price = entry.avg_fill_price
                target = to_tick(price * (1 + take_profit / 100), instrument.tick_size, ROUND_CEILING)
                stop = to_tick(price * (1 - stop_loss / 100), instrument.tick_size, ROUND_FLOOR)
                exits = {
                    (
                        await td.orders.place(
                            account.id, symbol, "sell", "limit", quantity=quantity, limit_price=target
                        )
                    ).id: "take_profit",
                    (
                        await td.orders.place(
                            account.id, symbol, "sell", "stop", quantity=quantity, stop_price=stop
                        )
                    ).id: "stop_loss",
                }
                while True:
                    message = await asyncio.wait_for(updates.get(), 120)
                    if not isinstance(message, TradeUpdate) or message.order.id not in exits:
                        continue
                    if message.event == "fill":
                        other = next(i for i in exits if i != message.order.id)
                        try:
                            await td.orders.cancel(account.id, other)
                        except Conflict:  # it filled too in the meantime: close the short it opened
                            await td.orders.place(account.id, symbol, "buy", "market", quantity=quantity)
                        results.append(
                            (n, str(price), exits[message.order.id], str(message.order.avg_fill_price))
                        )
                        break
        finally:
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
        )
    )
    for name, value in result.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
