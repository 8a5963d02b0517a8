"""Keyset pagination cursors over (created_at, id): stable under inserts, never OFFSET."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

from litestar.params import Parameter

from app.lib.errors import ApiError

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
