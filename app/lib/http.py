"""Small helpers shared by controllers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, AsyncContextManager

from litestar import Request, Response
from litestar.params import Parameter
from litestar.serialization import default_serializer
from litestar.types import Serializer
from sqlalchemy.ext.asyncio import AsyncConnection

from app.lib.cache import Cache
from app.lib.decimals import needs_rendering, plain_decimals
from app.lib.errors import ApiError

# A time in a query string: RFC 3339, or a date (midnight UTC). Read as text and parsed here, because the
# lenient conversion of query values would take "0.5" or "1e3" as seconds since the epoch.
TIME_QUERY_PATTERN = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?)?$"
TimeQuery = Annotated[
    str | None,
    Parameter(pattern=TIME_QUERY_PATTERN, description="RFC 3339 time, or a date (midnight UTC)"),
]


def query_time(value: str | None, name: str) -> datetime | None:
    """A `TimeQuery` value as an aware UTC datetime (naive times are UTC). One of the documented shape
    that names no real time (February 30th) is a 422, like any well-formed value that breaks a rule."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        message = f"`{name}` is not a valid time: {value[:40]!r}"
        raise ApiError(422, message, errors=[{"field": name, "message": message}]) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ApiResponse(Response):
    """The app's response class: JSON with every decimal in plain notation (see app/lib/decimals.py).

    Controllers that build a response themselves use it too (`ApiResponse(order, status_code=201)`)."""

    def render(self, content: Any, media_type: str, enc_hook: Serializer = default_serializer) -> bytes:
        body = super().render(content, media_type, enc_hook)
        if needs_rendering(body) and not isinstance(content, (bytes, str)) and media_type.endswith("json"):
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
