"""ASGI entry point for granian/uvicorn: `app.server.asgi:app`."""

from typing import Any

from app.domain.streams.controllers import RAW_SEND
from app.server.app import create_app

_app = create_app()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        scope[RAW_SEND] = send  # the server's own send, for the stream's sender (streams/controllers.py)
    await _app(scope, receive, send)
