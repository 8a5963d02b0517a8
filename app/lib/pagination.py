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


def encode_cursor(ts: datetime, row_id: uuid.UUID | int) -> str:
    raw = f"{ts.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    return base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts_s, id_s = _b64(cursor).split("|", 1)
        return datetime.fromisoformat(ts_s), uuid.UUID(id_s)
    except Exception as exc:  # any garbage cursor is the client's error
        raise ApiError(400, "Invalid cursor", errors=[{"field": "cursor", "message": "malformed cursor"}]) from exc


def decode_int_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        ts_s, id_s = _b64(cursor).split("|", 1)
        return datetime.fromisoformat(ts_s), int(id_s)
    except Exception as exc:
        raise ApiError(400, "Invalid cursor", errors=[{"field": "cursor", "message": "malformed cursor"}]) from exc
