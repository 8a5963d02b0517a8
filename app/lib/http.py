"""Small helpers shared by controllers."""

from __future__ import annotations

from typing import AsyncContextManager

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from app.lib.cache import Cache


def cache_of(request: Request) -> Cache:
    return request.app.state.cache


def json_bytes(payload: bytes, status_code: int = 200) -> Response[bytes]:
    """Send pre-encoded JSON (cache hits) without decoding and re-encoding it."""
    return Response(payload, media_type="application/json", status_code=status_code)


def connect(request: Request) -> AsyncContextManager[AsyncConnection]:
    """A pooled connection opened only when needed: cached reads that hit never check one out."""
    return request.app.state.engine.connect()
