"""Per-account risk limits: list, create, change and delete them, each change audited."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.markets.models import Instrument
from app.domain.risk import checks
from app.domain.risk.models import RiskLimit, RiskLimitAudit
from app.domain.risk.schemas import (
    LimitAuditOut,
    LimitCreate,
    LimitOut,
    LimitPatch,
)
from app.domain.risk.services.access import ensure_may_manage, visible_account
from app.domain.risk.services.mappers import (
    AUDIT_COLS,
    LIMIT_COLS,
    limit_out,
)
from app.lib.db import tx, utcnow
from app.lib.errors import Invalid, not_found
from app.lib.log import get_logger
from app.lib.pagination import decode_int_cursor, encode_cursor, newest_first

log = get_logger("app.risk")


def _audit_state(row: Any) -> dict[str, Any]:
    """A limit's definition as stored in the audit trail: decimals as strings, never floats."""
    m = row._mapping
    return {
        "limit_type": m["limit_type"],
        "value": str(m["value"]),
        "symbol": m["symbol"],
        "warn_at_pct": str(m["warn_at_pct"]),
        "enabled": m["enabled"],
        "auto_reduce_only": m["auto_reduce_only"],
    }


def _validate(limit_type: str, value: Decimal, symbol: str | None, warn_at_pct: Decimal) -> None:
    raise_problems(checks.validate_limit(limit_type, value, symbol, warn_at_pct))


def raise_problems(problems: list[tuple[str, str]]) -> None:
    """A limit definition's (field, message) problems as one 422 naming every field."""
    if problems:
        raise Invalid(
            "; ".join(f"{f}: {m}" for f, m in problems),
            errors=[{"field": f, "message": m} for f, m in problems],
        )


async def ensure_symbol(conn: AsyncConnection, symbol: str | None) -> None:
    if (
        symbol is not None
        and await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol)) is None
    ):
        raise Invalid(
            f"Unknown symbol {symbol!r}", errors=[{"field": "symbol", "message": "unknown instrument"}]
        )


async def list_limits(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[LimitOut], str | None]:
    await visible_account(conn, principal, account_id)
    stmt = select(*LIMIT_COLS).where(RiskLimit.account_id == account_id)
    return await newest_first(
        conn, stmt, RiskLimit.created_at, RiskLimit.id, limit_out, limit=limit, cursor=cursor
    )


async def get_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID
) -> LimitOut:
    await visible_account(conn, principal, account_id)
    row = (
        await conn.execute(
            select(*LIMIT_COLS).where(RiskLimit.id == limit_id, RiskLimit.account_id == account_id)
        )
    ).one_or_none()
    if row is None:
        raise not_found("Risk limit")
    return limit_out(row)


async def _audit(
    conn: AsyncConnection,
    limit_id: uuid.UUID,
    account_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    action: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    await conn.execute(
        insert(RiskLimitAudit).values(
            limit_id=limit_id, account_id=account_id, actor_id=actor_id, action=action, old=old, new=new
        )
    )


async def create_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, data: LimitCreate
) -> LimitOut:
    async with tx(conn):
        await visible_account(conn, principal, account_id, lock=True)
        ensure_may_manage(principal)
        _validate(data.limit_type, data.value, data.symbol, data.warn_at_pct)
        await ensure_symbol(conn, data.symbol)
        now = utcnow()
        row = (
            await conn.execute(
                insert(RiskLimit)
                .values(
                    id=uuid.uuid4(),
                    account_id=account_id,
                    limit_type=data.limit_type,
                    value=data.value,
                    symbol=data.symbol,
                    warn_at_pct=data.warn_at_pct,
                    enabled=data.enabled,
                    auto_reduce_only=data.auto_reduce_only,
                    created_at=now,
                    updated_at=now,
                )
                .returning(*LIMIT_COLS)
            )
        ).one()
        await _audit(conn, row.id, account_id, principal.user_id, "create", None, _audit_state(row))
    return limit_out(row)


async def update_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID, data: LimitPatch
) -> LimitOut:
    async with tx(conn):
        await visible_account(conn, principal, account_id, lock=True)
        ensure_may_manage(principal)
        current = (
            await conn.execute(
                select(*LIMIT_COLS)
                .where(RiskLimit.id == limit_id, RiskLimit.account_id == account_id)
                .with_for_update()
            )
        ).one_or_none()
        if current is None:
            raise not_found("Risk limit")
        changes = {
            name: getattr(data, name)
            for name in ("value", "symbol", "warn_at_pct", "enabled", "auto_reduce_only")
            if getattr(data, name) is not msgspec.UNSET and getattr(data, name) != getattr(current, name)
        }
        if not changes:
            return limit_out(current)
        merged = {**current._mapping, **changes}
        _validate(merged["limit_type"], merged["value"], merged["symbol"], merged["warn_at_pct"])
        if "symbol" in changes:
            await ensure_symbol(conn, merged["symbol"])
        # A limit that now measures something else, or is switched off, starts its alerting afresh.
        if "symbol" in changes or changes.get("enabled") is False:
            changes["alert_level"] = None
        row = (
            await conn.execute(
                update(RiskLimit)
                .where(RiskLimit.id == limit_id)
                .values(**changes, updated_at=utcnow())
                .returning(*LIMIT_COLS)
            )
        ).one()
        await _audit(
            conn, limit_id, account_id, principal.user_id, "update", _audit_state(current), _audit_state(row)
        )
    return limit_out(row)


async def delete_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID
) -> None:
    async with tx(conn):
        await visible_account(conn, principal, account_id, lock=True)
        ensure_may_manage(principal)
        row = (
            await conn.execute(
                delete(RiskLimit)
                .where(RiskLimit.id == limit_id, RiskLimit.account_id == account_id)
                .returning(*LIMIT_COLS)
            )
        ).one_or_none()
        if row is None:
            raise not_found("Risk limit")
        await _audit(conn, limit_id, account_id, principal.user_id, "delete", _audit_state(row), None)


async def limit_audit(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    limit_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[LimitAuditOut], str | None]:
    """The limit's audit trail, newest first; still readable after the limit is deleted."""
    await visible_account(conn, principal, account_id)
    conditions = [RiskLimitAudit.account_id == account_id, RiskLimitAudit.limit_id == limit_id]
    if cursor:
        ts, last = decode_int_cursor(cursor)
        conditions.append(func.row(RiskLimitAudit.created_at, RiskLimitAudit.id) < func.row(ts, last))
    rows = (
        await conn.execute(
            select(*AUDIT_COLS)
            .where(and_(*conditions))
            .order_by(RiskLimitAudit.created_at.desc(), RiskLimitAudit.id.desc())
            .limit(limit + 1)
        )
    ).all()
    if not rows and not cursor:
        raise not_found("Risk limit")
    items = [LimitAuditOut(*r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt
