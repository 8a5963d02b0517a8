"""An account's violations and alerts: lists and acknowledgement."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.risk.models import RiskAlert, RiskViolation
from app.domain.risk.schemas import (
    AlertOut,
    ViolationOut,
)
from app.domain.risk.services.access import visible_account
from app.domain.risk.services.mappers import (
    ALERT_COLS,
    VIOLATION_COLS,
    alert_out,
    violation_out,
)
from app.lib.db import tx, utcnow
from app.lib.errors import conflict, not_found
from app.lib.log import get_logger
from app.lib.pagination import decode_cursor, encode_cursor

log = get_logger("app.risk")
T = TypeVar("T")


async def list_violations(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    phase: str | None = None,
    limit_type: str | None = None,
) -> tuple[list[ViolationOut], str | None]:
    await visible_account(conn, principal, account_id)
    conditions = [RiskViolation.account_id == account_id]
    if cursor:
        ts, last = decode_cursor(cursor)
        conditions.append(func.row(RiskViolation.created_at, RiskViolation.id) < func.row(ts, last))
    if phase:
        conditions.append(RiskViolation.phase == phase)
    if limit_type:
        conditions.append(RiskViolation.limit_type == limit_type)
    rows = (
        await conn.execute(
            select(*VIOLATION_COLS)
            .where(and_(*conditions))
            .order_by(RiskViolation.created_at.desc(), RiskViolation.id.desc())
            .limit(limit + 1)
        )
    ).all()
    items = [violation_out(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def list_alerts(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    acknowledged: bool | None = None,
    severity: str | None = None,
) -> tuple[list[AlertOut], str | None]:
    await visible_account(conn, principal, account_id)
    return await alert_page(
        conn, RiskAlert, RiskAlert.account_id == account_id, ALERT_COLS, alert_out,
        limit=limit, cursor=cursor, acknowledged=acknowledged, severity=severity,
    )


async def acknowledge_alert(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, alert_id: uuid.UUID
) -> AlertOut:
    """Anyone who can see the account may acknowledge (alert_acknowledged has the race)."""
    async with tx(conn):
        await visible_account(conn, principal, account_id)
        return await alert_acknowledged(
            conn, principal, RiskAlert, RiskAlert.account_id == account_id, alert_id, ALERT_COLS, alert_out
        )


# The alert tables (`risk_alerts` of accounts, `risk_group_alerts` of groups) have the same columns but
# the owner's; these serve both, `owned` being the owner's condition.
async def alert_page(
    conn: AsyncConnection,
    table: Any,
    owned: Any,
    cols: Sequence[Any],
    to_out: Callable[[Any], T],
    *,
    limit: int,
    cursor: str | None,
    acknowledged: bool | None,
    severity: str | None,
) -> tuple[list[T], str | None]:
    """A page of an owner's alerts, newest first."""
    conditions = [owned]
    if cursor:
        ts, last = decode_cursor(cursor)
        conditions.append(func.row(table.created_at, table.id) < func.row(ts, last))
    if acknowledged is not None:
        column = table.acknowledged_at
        conditions.append(column.is_not(None) if acknowledged else column.is_(None))
    if severity:
        conditions.append(table.severity == severity)
    rows = (
        await conn.execute(
            select(*cols)
            .where(and_(*conditions))
            .order_by(table.created_at.desc(), table.id.desc())
            .limit(limit + 1)
        )
    ).all()
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return [to_out(r) for r in rows[:limit]], nxt


async def alert_acknowledged(
    conn: AsyncConnection,
    principal: Principal,
    table: Any,
    owned: Any,
    alert_id: uuid.UUID,
    cols: Sequence[Any],
    to_out: Callable[[Any], T],
) -> T:
    """Acknowledge an owner's alert in the caller's transaction: the conditional UPDATE makes a race end
    in one acknowledgement and a 409 for the rest; an alert of another owner is 404."""
    row = (
        await conn.execute(
            update(table)
            .where(table.id == alert_id, owned, table.acknowledged_at.is_(None))
            .values(acknowledged_at=utcnow(), acknowledged_by=principal.user_id)
            .returning(*cols)
        )
    ).one_or_none()
    if row is not None:
        return to_out(row)
    existing = (
        await conn.execute(
            select(table.acknowledged_at, table.acknowledged_by).where(table.id == alert_id, owned)
        )
    ).one_or_none()
    if existing is None:
        raise not_found("Alert")
    raise conflict(
        "Alert was already acknowledged",
        acknowledged_at=existing.acknowledged_at.isoformat(),
        acknowledged_by=str(existing.acknowledged_by) if existing.acknowledged_by else None,
    )
