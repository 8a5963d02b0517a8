"""Security audit trail: writes one `audit_events` row and one `category=security` log line per event.

Events that change state (keys, roles, trading state) are written with `record()` on the caller's
connection, inside the caller's transaction: the change and its audit row commit or roll back together.
Events with no transaction of their own (authentication failures, admin requests) use
`record_detached()`, which never fails the request it describes: a lost audit row is logged instead.

Who acted, from where and in which request are read from the current request (`bind_request`, called
once per request by the auth middleware), so services add one line per event without growing their
signatures; outside a request (jobs, CLI) they are empty.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from litestar.types import Scope
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.audit.models import AuditEvent
from app.domain.audit.schemas import AuditEventOut
from app.lib.log import ThrottledWarning, get_logger
from app.lib.pagination import decode_int_cursor, encode_cursor

security_log = get_logger("app.security")
_warn_lost = ThrottledWarning(security_log, "audit_event_lost")

_REQUEST: ContextVar[Scope | None] = ContextVar("audit_request", default=None)

_COLS = (
    AuditEvent.id,
    AuditEvent.occurred_at,
    AuditEvent.type,
    AuditEvent.actor_id,
    AuditEvent.subject_user_id,
    AuditEvent.account_id,
    AuditEvent.target,
    AuditEvent.client_ip,
    AuditEvent.request_id,
    AuditEvent.details,
)


def bind_request(scope: Scope) -> None:
    """Make this request the context of every event recorded while it runs (one ContextVar.set)."""
    _REQUEST.set(scope)


def client_ip(scope: Scope) -> str:
    """The TCP peer's address. Behind a proxy this is the proxy: see docs/DEPLOYMENT.md (client IPs)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def _context() -> dict[str, Any]:
    scope = _REQUEST.get()
    if scope is None:
        return {"actor_id": None, "client_ip": None, "request_id": None}
    user = scope.get("user")
    return {
        "actor_id": user.user_id if user is not None else None,
        "client_ip": client_ip(scope)[:64],
        "request_id": scope.get("state", {}).get("request_id"),
    }


def _row(
    event_type: str,
    subject_user_id: uuid.UUID | None,
    account_id: uuid.UUID | None,
    target: str | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    row = {
        **_context(),
        "type": event_type,
        "subject_user_id": subject_user_id,
        "account_id": account_id,
        "target": target[:200] if target else None,
        "details": details or {},
    }
    security_log.info(
        "audit",
        category="security",
        audit_type=event_type,
        **{k: str(v) for k, v in row.items() if v is not None and k not in ("type", "details")},
        details=row["details"],
    )
    return row


async def record(
    conn: AsyncConnection,
    event_type: str,
    *,
    subject_user_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an event in the caller's transaction."""
    await conn.execute(
        insert(AuditEvent).values(**_row(event_type, subject_user_id, account_id, target, details))
    )


async def record_detached(
    engine: AsyncEngine,
    event_type: str,
    *,
    subject_user_id: uuid.UUID | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an event in its own transaction; a database failure is logged, never raised."""
    row = _row(event_type, subject_user_id, None, target, details)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(AuditEvent).values(**row))
    except Exception as exc:
        _warn_lost(audit_type=event_type, error=repr(exc)[:200])


async def list_events(
    conn: AsyncConnection,
    *,
    limit: int,
    cursor: str | None,
    event_type: str | None,
    user_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[AuditEventOut], str | None]:
    """Newest first. `user_id` matches the actor or the subject of an event."""
    conditions = []
    if cursor:
        ts, last = decode_int_cursor(cursor)
        conditions.append(func.row(AuditEvent.occurred_at, AuditEvent.id) < func.row(ts, last))
    if event_type:
        conditions.append(AuditEvent.type == event_type)
    if user_id:
        conditions.append(or_(AuditEvent.actor_id == user_id, AuditEvent.subject_user_id == user_id))
    if since:
        conditions.append(AuditEvent.occurred_at >= since)
    if until:
        conditions.append(AuditEvent.occurred_at < until)
    rows = (
        await conn.execute(
            select(*_COLS)
            .where(and_(True, *conditions))
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(limit + 1)
        )
    ).all()
    items = [AuditEventOut(*r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].occurred_at, items[-1].id) if len(rows) > limit else None
    return items, nxt
