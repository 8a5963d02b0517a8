"""An account's violations and alerts: lists and acknowledgement."""

from __future__ import annotations

import uuid

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
    conditions = [RiskAlert.account_id == account_id]
    if cursor:
        ts, last = decode_cursor(cursor)
        conditions.append(func.row(RiskAlert.created_at, RiskAlert.id) < func.row(ts, last))
    if acknowledged is not None:
        conditions.append(
            RiskAlert.acknowledged_at.is_not(None) if acknowledged else RiskAlert.acknowledged_at.is_(None)
        )
    if severity:
        conditions.append(RiskAlert.severity == severity)
    rows = (
        await conn.execute(
            select(*ALERT_COLS)
            .where(and_(*conditions))
            .order_by(RiskAlert.created_at.desc(), RiskAlert.id.desc())
            .limit(limit + 1)
        )
    ).all()
    items = [alert_out(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def acknowledge_alert(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, alert_id: uuid.UUID
) -> AlertOut:
    """Anyone who can see the account may acknowledge; the conditional UPDATE makes a race end in one
    acknowledgement and a 409 for the rest."""
    async with tx(conn):
        await visible_account(conn, principal, account_id)
        row = (
            await conn.execute(
                update(RiskAlert)
                .where(
                    RiskAlert.id == alert_id,
                    RiskAlert.account_id == account_id,
                    RiskAlert.acknowledged_at.is_(None),
                )
                .values(acknowledged_at=utcnow(), acknowledged_by=principal.user_id)
                .returning(*ALERT_COLS)
            )
        ).one_or_none()
        if row is None:
            existing = (
                await conn.execute(
                    select(RiskAlert.acknowledged_at, RiskAlert.acknowledged_by).where(
                        RiskAlert.id == alert_id, RiskAlert.account_id == account_id
                    )
                )
            ).one_or_none()
            if existing is None:
                raise not_found("Alert")
            raise conflict(
                "Alert was already acknowledged",
                acknowledged_at=existing.acknowledged_at.isoformat(),
                acknowledged_by=str(existing.acknowledged_by) if existing.acknowledged_by else None,
            )
    return alert_out(row)
