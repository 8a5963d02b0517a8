"""The smallest ASGI WebSocket app: accept, answer every text message with `{"type":"subscribed"}`,
nothing else; a message that is a number N is answered with N frames of ~700 bytes (a trade_update's
size) and then `done`. `benchmarks.measure_streams --idle-baseline` serves it with the same granian
settings as `tradedesk serve` to separate the server's memory per WebSocket connection from the stream
code's; `benchmarks.measure_ws_servers` measures each server's own CPU per frame with it."""

from __future__ import annotations

from typing import Any

FRAME = '{"type":"trade_update","order":"' + "x" * 670 + '"}'


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
        text = message.get("text") or ""
        if text.isdigit():
            for _ in range(int(text)):
                await send({"type": "websocket.send", "text": FRAME})
            await send({"type": "websocket.send", "text": "done"})
            continue
        await send({"type": "websocket.send", "text": '{"type":"subscribed"}'})
