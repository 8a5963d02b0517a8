from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

# Every event type the trail records (GET /api/v1/audit?type= accepts exactly these).
AuditType = Literal[
    "key.created",
    "key.rotated",
    "key.revoked",
    "user.role_changed",
    "user.activated",
    "user.deactivated",
    "account.trading_state_changed",
    "admin.action",
    "auth.failed",
    "auth.ip_blocked",
]


class AuditEventOut(msgspec.Struct):
    id: int
    occurred_at: datetime
    type: str
    actor_id: UUID | None
    subject_user_id: UUID | None
    account_id: UUID | None
    target: str | None
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditPage(msgspec.Struct):
    items: list[AuditEventOut]
    next_cursor: str | None
