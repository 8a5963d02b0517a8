"""The smallest ASGI WebSocket app: accept, answer every text message with `{"type":"subscribed"}`,
nothing else. `benchmarks.measure_streams --idle-baseline` serves it with the same granian settings as
`tradedesk serve` to separate the server's memory per WebSocket connection from the stream code's."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": '{"type":"subscribed"}'})
