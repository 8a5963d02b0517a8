"""Small helpers shared by controllers."""

from __future__ import annotations

from typing import Any, AsyncContextManager

from litestar import Request, Response
from litestar.serialization import default_serializer
from litestar.types import Serializer
from sqlalchemy.ext.asyncio import AsyncConnection

from app.lib.cache import Cache
from app.lib.decimals import has_exponent, plain_decimals


class ApiResponse(Response):
    """The app's response class: JSON with every decimal in plain notation (see app/lib/decimals.py).

    Controllers that build a response themselves use it too (`ApiResponse(order, status_code=201)`)."""

    def render(self, content: Any, media_type: str, enc_hook: Serializer = default_serializer) -> bytes:
        body = super().render(content, media_type, enc_hook)
        if has_exponent(body) and not isinstance(content, (bytes, str)) and media_type.endswith("json"):
            body = super().render(plain_decimals(content, enc_hook), media_type, enc_hook)
        return body


def cache_of(request: Request) -> Cache:
    return request.app.state.cache


def json_bytes(payload: bytes, status_code: int = 200) -> Response[bytes]:
    """Send pre-encoded JSON (cache hits) without decoding and re-encoding it."""
    return ApiResponse(payload, media_type="application/json", status_code=status_code)


def connect(request: Request) -> AsyncContextManager[AsyncConnection]:
    """A pooled connection opened only when needed: cached reads that hit never check one out."""
    return request.app.state.engine.connect()
