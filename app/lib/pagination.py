"""Keyset pagination cursors over (created_at, id): stable under inserts, never OFFSET."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from litestar.params import Parameter
from sqlalchemy import Select, func
from sqlalchemy.ext.asyncio import AsyncConnection

from app.lib.errors import ApiError

T = TypeVar("T")

# Litestar enforces bounds on query parameters through Parameter (msgspec Meta is ignored there).
Limit = Annotated[int, Parameter(ge=1, le=500, description="page size (1..500)")]
# A cursor is opaque: unpadded base64url, copied from a page's `next_cursor`. Not that shape: 400 (Litestar
# checks the pattern); that shape but not a cursor this API issued: 422 (decode_cursor).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
Cursor = Annotated[
    str | None,
    Parameter(
        max_length=200,
        pattern=CURSOR_PATTERN,
        description="opaque: the `next_cursor` of the previous page (unpadded base64url)",
    ),
]


def encode_cursor(ts: datetime, row_id: uuid.UUID | int) -> str:
    raw = f"{ts.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    return base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()


def _not_issued() -> ApiError:
    message = "not a cursor this API issued (use a page's next_cursor)"
    return ApiError(422, "Invalid cursor", errors=[{"field": "cursor", "message": message}])


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts_s, id_s = _b64(cursor).split("|", 1)
        return datetime.fromisoformat(ts_s), uuid.UUID(id_s)
    except Exception as exc:  # any garbage cursor is the client's error
        raise _not_issued() from exc


_BIGINT = 2**63


def decode_int_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        ts_s, id_s = _b64(cursor).split("|", 1)
        value = int(id_s)
        if not -_BIGINT <= value < _BIGINT:  # no row has it, and PostgreSQL's bigint would refuse it (a 500)
            raise ValueError(id_s)
        return datetime.fromisoformat(ts_s), value
    except Exception as exc:
        raise _not_issued() from exc


async def newest_first(
    conn: AsyncConnection,
    stmt: Select[Any],
    created_at: Any,
    row_id: Any,
    item: Callable[[Any], T],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """One page of `stmt`'s rows, newest first by (`created_at`, `row_id`), each made an item by `item`
    (which has `created_at` and `id`), and the cursor of the next page (None on the last)."""
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(created_at, row_id) < func.row(ts, last))
    rows = (await conn.execute(stmt.order_by(created_at.desc(), row_id.desc()).limit(limit + 1))).all()
    items = [item(r) for r in rows[:limit]]
    last_item: Any = items[-1] if items else None
    return items, encode_cursor(last_item.created_at, last_item.id) if len(rows) > limit else None
