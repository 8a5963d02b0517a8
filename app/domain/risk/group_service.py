"""Risk groups: the tree of desks under the firm, membership and group limits (the risk manager's
overview and portfolio VaR per group: group_reports.py).

Only risk_manager and admin see or change groups (a trader gets 403: groups are the firm's structure,
not a trader's resource). Every write that can change whether an account's groups carry an enabled
limit recomputes `accounts.group_limited` for the accounts concerned and moves their row version, so
order placement decided on the old state is decided again (app/domain/trading/placement.py). Every
change of a group's limits, and every change of membership (for each group whose sums it changes: the
old and the new group and their ancestors), also moves the groups' `version`, which placement's
optimistic group guard checks (app/domain/risk/group_pretrade.py). Lock order: group rows (in id order
when several), then account rows in id order (as placement's group path and the price path take them).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.risk import groups
from app.domain.risk.models import RiskGroup, RiskGroupLimit
from app.domain.risk.schemas import (
    AccountGroupIn,
    AccountGroupOut,
    GroupCreate,
    GroupLimitCreate,
    GroupLimitOut,
    GroupLimitPatch,
    GroupOut,
    GroupPatch,
)
from app.domain.risk.services import (
    ensure_symbol,
    raise_problems,
)
from app.lib.db import tx, utcnow
from app.lib.errors import RoleRequired, conflict, invalid, not_found
from app.lib.pagination import newest_first

_ZERO = Decimal(0)
GROUP_COLS = (RiskGroup.id, RiskGroup.name, RiskGroup.parent_id, RiskGroup.is_firm, RiskGroup.created_at)
GROUP_LIMIT_COLS = (
    RiskGroupLimit.id,
    RiskGroupLimit.group_id,
    RiskGroupLimit.limit_type,
    RiskGroupLimit.value,
    RiskGroupLimit.symbol,
    RiskGroupLimit.warn_at_pct,
    RiskGroupLimit.enabled,
    RiskGroupLimit.created_at,
    RiskGroupLimit.updated_at,
    RiskGroupLimit.alert_level,
)

# Whether the group `{group}` or one of its ancestors has an enabled limit.
GROUP_LIMITED_SQL = """(WITH RECURSIVE anc AS (
      SELECT g.id, g.parent_id FROM risk_groups g WHERE g.id = {group}
      UNION ALL
      SELECT g.id, g.parent_id FROM risk_groups g JOIN anc ON g.id = anc.parent_id)
    SELECT EXISTS (SELECT 1 FROM anc JOIN risk_group_limits l ON l.group_id = anc.id AND l.enabled))"""

_REFRESH_SQL = text(
    """
    WITH RECURSIVE sub AS (
      SELECT id FROM risk_groups WHERE id = :group_id
      UNION ALL
      SELECT g.id FROM risk_groups g JOIN sub ON g.parent_id = sub.id
    ), locked AS (
      SELECT a.id FROM accounts a WHERE a.group_id IN (SELECT id FROM sub) ORDER BY a.id FOR UPDATE
    )
    UPDATE accounts a SET group_limited = """
    + GROUP_LIMITED_SQL.format(group="a.group_id")
    + """, updated_at = now()
      FROM locked WHERE a.id = locked.id
    """
)


# Moves the version of the groups `:groups` and of their ancestors, taking their rows in id order.
_BUMP_CHAINS_SQL = text(
    """
    WITH RECURSIVE anc AS (
      SELECT g.id, g.parent_id FROM risk_groups g WHERE g.id = ANY(CAST(:groups AS uuid[]))
      UNION
      SELECT g.id, g.parent_id FROM risk_groups g JOIN anc ON g.id = anc.parent_id
    ), locked AS (
      SELECT g.id FROM risk_groups g WHERE g.id IN (SELECT id FROM anc) ORDER BY g.id FOR NO KEY UPDATE OF g
    )
    UPDATE risk_groups g SET version = g.version + 1 FROM locked WHERE g.id = locked.id
    """
)


def ensure_risk_manager(principal: Principal) -> None:
    if not principal.can_read_all_accounts:
        raise RoleRequired("Risk groups require the risk_manager or admin role")


async def _lock_group(conn: AsyncConnection, group_id: uuid.UUID) -> Any:
    row = (
        await conn.execute(select(*GROUP_COLS).where(RiskGroup.id == group_id).with_for_update())
    ).one_or_none()
    if row is None:
        raise not_found("Group")
    # Its limits change: an order decided on the old ones must not commit (group_pretrade).
    await conn.execute(
        update(RiskGroup).where(RiskGroup.id == group_id).values(version=RiskGroup.version + 1)
    )
    return row


# -------------------------------------------------------------------------------------------------- groups


async def create_group(conn: AsyncConnection, principal: Principal, data: GroupCreate) -> GroupOut:
    ensure_risk_manager(principal)
    async with tx(conn):
        firm = await conn.scalar(select(RiskGroup.id).where(RiskGroup.is_firm))
        if data.is_firm:
            if data.parent_id is not None:
                raise invalid("the firm group is the top group and has no parent", "parent_id")
            if firm is not None:
                raise conflict("A firm group already exists", group_id=str(firm))
        parent = data.parent_id if data.parent_id is not None or data.is_firm else firm
        if (
            data.parent_id is not None
            and await conn.scalar(select(RiskGroup.id).where(RiskGroup.id == data.parent_id)) is None
        ):
            raise invalid(f"unknown group {data.parent_id}", "parent_id")
        try:
            async with conn.begin_nested():
                row = (
                    await conn.execute(
                        insert(RiskGroup)
                        .values(id=uuid.uuid4(), name=data.name, parent_id=parent, is_firm=data.is_firm)
                        .returning(*GROUP_COLS)
                    )
                ).one()
        except IntegrityError as exc:
            raise conflict("A group with this name (or a firm group) already exists") from exc
    return GroupOut(*row)


async def list_groups(
    conn: AsyncConnection, principal: Principal, *, limit: int, cursor: str | None
) -> tuple[list[GroupOut], str | None]:
    ensure_risk_manager(principal)
    return await newest_first(
        conn, select(*GROUP_COLS), RiskGroup.created_at, RiskGroup.id, lambda r: GroupOut(*r),
        limit=limit, cursor=cursor,
    )


async def rename_group(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, data: GroupPatch
) -> GroupOut:
    """A new name; the version moves too (a kept group state carries the name into its breach messages)."""
    ensure_risk_manager(principal)
    if data.name is None:
        raise invalid("the body names no field to change", "name")
    async with tx(conn):
        try:
            async with conn.begin_nested():
                row = (
                    await conn.execute(
                        update(RiskGroup)
                        .where(RiskGroup.id == group_id)
                        .values(name=data.name, version=RiskGroup.version + 1)
                        .returning(*GROUP_COLS)
                    )
                ).one_or_none()
        except IntegrityError as exc:
            raise conflict("A group with this name already exists") from exc
        if row is None:
            raise not_found("Group")
    return GroupOut(*row)


async def delete_group(conn: AsyncConnection, principal: Principal, group_id: uuid.UUID) -> None:
    """Remove a group with no accounts and no sub-groups (409 naming what is left), its limits with it.
    The row is locked first: an account moving in (a foreign key check, KEY SHARE) waits, then finds the
    group gone."""
    ensure_risk_manager(principal)
    async with tx(conn):
        if await conn.scalar(select(RiskGroup.id).where(RiskGroup.id == group_id).with_for_update()) is None:
            raise not_found("Group")
        accounts = await conn.scalar(
            select(func.count()).select_from(Account).where(Account.group_id == group_id)
        )
        children = await conn.scalar(
            select(func.count()).select_from(RiskGroup).where(RiskGroup.parent_id == group_id)
        )
        if accounts or children:
            raise conflict(
                f"the group still has {accounts} account(s) and {children} sub-group(s): move them out first",
                accounts=accounts,
                groups=children,
            )
        await conn.execute(delete(RiskGroup).where(RiskGroup.id == group_id))


async def get_group(conn: AsyncConnection, principal: Principal, group_id: uuid.UUID) -> GroupOut:
    ensure_risk_manager(principal)
    row = (await conn.execute(select(*GROUP_COLS).where(RiskGroup.id == group_id))).one_or_none()
    if row is None:
        raise not_found("Group")
    return GroupOut(*row)


async def set_account_group(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, data: AccountGroupIn
) -> AccountGroupOut:
    async with tx(conn):
        visible = (
            await conn.execute(
                select(Account.group_id).where(Account.id == account_id, visible_to(principal))
            )
        ).one_or_none()
        if visible is None:
            raise not_found("Account")
        ensure_risk_manager(principal)
        if data.group_id is not None:
            exists = await conn.scalar(select(RiskGroup.id).where(RiskGroup.id == data.group_id))
            if exists is None:
                raise invalid(f"unknown group {data.group_id}", "group_id")
        # The sums of the old and the new group and of their ancestors change: move their versions (and
        # hold their rows, so that a limit added to one of them meanwhile is seen by the flag below).
        changed = [str(g) for g in (visible.group_id, data.group_id) if g is not None]
        if changed:
            await conn.execute(_BUMP_CHAINS_SQL, {"groups": changed})
        limited = text(f"SELECT {GROUP_LIMITED_SQL.format(group='CAST(:g AS uuid)')}")
        flag = bool(await conn.scalar(limited, {"g": data.group_id})) if data.group_id else False
        await conn.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(group_id=data.group_id, group_limited=flag, updated_at=func.now())
        )
    return AccountGroupOut(account_id=account_id, group_id=data.group_id, group_limited=flag)


# ------------------------------------------------------------------------------------------- group limits


def _validate(limit_type: str, value: Decimal, symbol: str | None, warn_at_pct: Decimal) -> None:
    raise_problems(groups.validate_group_limit(limit_type, value, symbol, warn_at_pct))


async def create_group_limit(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, data: GroupLimitCreate
) -> GroupLimitOut:
    ensure_risk_manager(principal)
    _validate(data.limit_type, data.value, data.symbol, data.warn_at_pct)
    async with tx(conn):
        await _lock_group(conn, group_id)
        await ensure_symbol(conn, data.symbol)
        row = (
            await conn.execute(
                insert(RiskGroupLimit)
                .values(
                    id=uuid.uuid4(),
                    group_id=group_id,
                    limit_type=data.limit_type,
                    value=data.value,
                    symbol=data.symbol,
                    warn_at_pct=data.warn_at_pct,
                    enabled=data.enabled,
                )
                .returning(*GROUP_LIMIT_COLS)
            )
        ).one()
        await conn.execute(_REFRESH_SQL, {"group_id": group_id})
    return GroupLimitOut(*row)


async def list_group_limits(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[GroupLimitOut], str | None]:
    await get_group(conn, principal, group_id)
    stmt = select(*GROUP_LIMIT_COLS).where(RiskGroupLimit.group_id == group_id)
    return await newest_first(
        conn, stmt, RiskGroupLimit.created_at, RiskGroupLimit.id, lambda r: GroupLimitOut(*r),
        limit=limit, cursor=cursor,
    )


async def update_group_limit(
    conn: AsyncConnection,
    principal: Principal,
    group_id: uuid.UUID,
    limit_id: uuid.UUID,
    data: GroupLimitPatch,
) -> GroupLimitOut:
    ensure_risk_manager(principal)
    if all(v is msgspec.UNSET for v in msgspec.structs.astuple(data)):
        raise invalid("the body names no field to change", "body")
    async with tx(conn):
        await _lock_group(conn, group_id)
        current = (
            await conn.execute(
                select(*GROUP_LIMIT_COLS).where(
                    RiskGroupLimit.id == limit_id, RiskGroupLimit.group_id == group_id
                )
            )
        ).one_or_none()
        if current is None:
            raise not_found("Group limit")
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        merged = {**current._mapping, **changes}
        _validate(merged["limit_type"], merged["value"], merged["symbol"], merged["warn_at_pct"])
        # A limit that now measures something else, or is switched off, starts its alerting afresh (as an
        # account limit does).
        if "symbol" in changes or changes.get("enabled") is False:
            changes["alert_level"] = None
        row = (
            await conn.execute(
                update(RiskGroupLimit)
                .where(RiskGroupLimit.id == limit_id)
                .values(**changes, updated_at=utcnow())
                .returning(*GROUP_LIMIT_COLS)
            )
        ).one()
        await conn.execute(_REFRESH_SQL, {"group_id": group_id})
    return GroupLimitOut(*row)


async def delete_group_limit(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, limit_id: uuid.UUID
) -> None:
    ensure_risk_manager(principal)
    async with tx(conn):
        await _lock_group(conn, group_id)
        deleted = await conn.scalar(
            delete(RiskGroupLimit)
            .where(RiskGroupLimit.id == limit_id, RiskGroupLimit.group_id == group_id)
            .returning(RiskGroupLimit.id)
        )
        if deleted is None:
            raise not_found("Group limit")
        await conn.execute(_REFRESH_SQL, {"group_id": group_id})
