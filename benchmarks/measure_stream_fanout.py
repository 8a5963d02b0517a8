"""CPU of the in-process fan-out per delivered message, without a network: one trade_update dispatched
to N clients of one account, each client's sender task taking it from its buffer and handing it to a
send that does nothing (the ASGI server's own cost per WebSocket frame is not included).

    python -m benchmarks.measure_stream_fanout [--clients 100] [--messages 2000]

Reports `process_time` per delivered message (messages x clients), median of 5 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from app.domain.identity.schemas import Principal
from app.domain.streams import publish
from app.domain.streams.hub import Client, StreamHub, _Cursor
from app.domain.streams.log import trade_update_payload
from app.domain.streams.messages import trade_update
from app.domain.trading.schemas import OrderOut


class _NoPlugin:
    _channels: dict = {}

    class _backend:  # noqa: N801
        @staticmethod
        async def subscribe(channels):
            return None


async def run(clients: int, messages: int) -> float:
    hub = StreamHub(_NoPlugin(), None, 3600)  # type: ignore[arg-type]
    owner, account = uuid.uuid4(), uuid.uuid4()
    principal = Principal(user_id=owner, role="trader", key_id=uuid.uuid4(), email="f@example.com")
    now = datetime.now(UTC)
    order = OrderOut(
        uuid.uuid4(),
        None,
        account,
        "DEMO",
        "buy",
        "limit",
        Decimal(1),
        Decimal(0),
        None,
        Decimal(90),
        None,
        "gtc",
        "accepted",
        None,
        Decimal(0),
        now,
        now,
    )
    payloads = [
        trade_update_payload(owner, trade_update(account, s, "accepted", now, order, None, None, None))
        for s in range(1, messages + 1)
    ]
    subs = [Client(hub, principal, messages + 10) for _ in range(clients)]
    for c in subs:
        hub.attach(c)
        c.streams = {f"trade_updates:{account}"}
        c.cursors[account.hex] = _Cursor(0)
        hub.routes["trade_updates"].setdefault("a" + account.hex, set()).add(c)
    sent = 0
    all_sent = asyncio.Event()

    async def sender(c: Client) -> None:
        nonlocal sent
        while await c.take() is not None:
            sent += 1  # stands for `await send(...)`
            if sent == clients * messages:
                all_sent.set()

    tasks = [asyncio.create_task(sender(c)) for c in subs]
    await asyncio.sleep(0)
    started = time.process_time()
    for p in payloads:
        hub.dispatch(publish.TRADE_UPDATES, p)
        await asyncio.sleep(0)
    await all_sent.wait()
    cpu = time.process_time() - started
    for c in subs:
        c.close(1000, "done")
    await asyncio.gather(*tasks)
    return cpu / (clients * messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    runs = [asyncio.run(run(args.clients, args.messages)) for _ in range(5)]
    print(
        f"{statistics.median(runs):.2f} us CPU per delivered message ({args.clients} clients; runs: "
        f"{', '.join(f'{r:.2f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()
