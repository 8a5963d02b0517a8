"""Risk groups: the tree of desks under the firm, membership, group limits, the risk manager's overview
and portfolio VaR per group.

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
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.risk import calculations, checks, groups
from app.domain.risk.models import RiskAlert, RiskGroup, RiskGroupLimit
from app.domain.risk.portfolios import Portfolio, load_portfolios
from app.domain.risk.schemas import (
    AccountGroupIn,
    AccountGroupOut,
    ComponentVarOut,
    GroupCreate,
    GroupLimitCreate,
    GroupLimitOut,
    GroupLimitPatch,
    GroupOut,
    GroupOverviewOut,
    GroupPatch,
    OverviewOut,
    PortfolioVarOut,
    TotalsOut,
    UtilisationOut,
)
from app.domain.risk.services import (
    ALERT_COLS,
    CLOSES_SQL,
    alert_out,
    as_float,
    ensure_symbol,
    raise_problems,
)
from app.lib.db import tx, utcnow
from app.lib.errors import RoleRequired, conflict, invalid, not_found
from app.lib.pagination import decode_cursor, encode_cursor

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
)
TOP_UTILISATIONS = 10
RECENT_ALERTS = 20

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


def _ensure_risk_manager(principal: Principal) -> None:
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
    _ensure_risk_manager(principal)
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
    _ensure_risk_manager(principal)
    stmt = select(*GROUP_COLS)
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(RiskGroup.created_at, RiskGroup.id) < func.row(ts, last))
    rows = (
        await conn.execute(stmt.order_by(RiskGroup.created_at.desc(), RiskGroup.id.desc()).limit(limit + 1))
    ).all()
    items = [GroupOut(*r) for r in rows[:limit]]
    return items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None


async def rename_group(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, data: GroupPatch
) -> GroupOut:
    """A new name; the version moves too (a kept group state carries the name into its breach messages)."""
    _ensure_risk_manager(principal)
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
    _ensure_risk_manager(principal)
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
    _ensure_risk_manager(principal)
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
        _ensure_risk_manager(principal)
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
    _ensure_risk_manager(principal)
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
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID
) -> list[GroupLimitOut]:
    await get_group(conn, principal, group_id)
    rows = await conn.execute(
        select(*GROUP_LIMIT_COLS)
        .where(RiskGroupLimit.group_id == group_id)
        .order_by(RiskGroupLimit.created_at.desc(), RiskGroupLimit.id.desc())
    )
    return [GroupLimitOut(*r) for r in rows]


async def update_group_limit(
    conn: AsyncConnection,
    principal: Principal,
    group_id: uuid.UUID,
    limit_id: uuid.UUID,
    data: GroupLimitPatch,
) -> GroupLimitOut:
    _ensure_risk_manager(principal)
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
    _ensure_risk_manager(principal)
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


# ------------------------------------------------------------------------------------ overview and VaR


async def _tree(conn: AsyncConnection) -> tuple[dict[uuid.UUID, Any], dict[uuid.UUID, list[uuid.UUID]]]:
    """Every group, and each group's chain of itself and its ancestors."""
    rows = {r.id: r for r in (await conn.execute(select(*GROUP_COLS).order_by(RiskGroup.name))).all()}
    chains: dict[uuid.UUID, list[uuid.UUID]] = {}
    for gid in rows:
        chain, cursor, seen = [], gid, set()
        while cursor is not None and cursor not in seen:
            seen.add(cursor)
            chain.append(cursor)
            cursor = rows[cursor].parent_id
        chains[gid] = chain
    return rows, chains


def _totals(members: list[Portfolio]) -> tuple[TotalsOut, dict[str, Decimal]]:
    equity = gross = net = daily = _ZERO
    orders = 0
    net_position: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    for p in members:
        exposure = calculations.exposures(p.state.positions, p.equity)
        equity += p.equity
        gross += exposure["gross"]  # type: ignore[operator]
        net += exposure["net"]  # type: ignore[operator]
        daily += p.state.daily_pnl
        orders += p.state.open_orders
        for symbol, (q, _) in p.state.positions.items():
            net_position[symbol] += q
    totals = TotalsOut(
        accounts=len(members),
        equity=equity,
        gross_exposure=gross,
        net_exposure=net,
        daily_pnl=daily,
        open_orders=orders,
    )
    return totals, dict(net_position)


async def overview(conn: AsyncConnection, principal: Principal) -> OverviewOut:
    _ensure_risk_manager(principal)
    tree, chains = await _tree(conn)
    membership = dict((await conn.execute(select(Account.id, Account.group_id).order_by(Account.id))).all())
    portfolios = await load_portfolios(conn, list(membership))
    by_group: dict[uuid.UUID, list[Portfolio]] = defaultdict(list)
    for p in portfolios:
        gid = membership.get(p.id)
        for ancestor in chains.get(gid, []) if gid else []:
            by_group[ancestor].append(p)
    limit_rows = (await conn.execute(select(*GROUP_LIMIT_COLS).where(RiskGroupLimit.enabled))).all()
    limits_of: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in limit_rows:
        limits_of[row.group_id].append(row)
    utilisations: list[UtilisationOut] = []
    group_out = []
    for gid, g in tree.items():
        totals, net_position = _totals(by_group.get(gid, []))
        figures = groups.GroupFigures(
            gross=totals.gross_exposure,
            net=totals.net_exposure,
            daily_pnl=totals.daily_pnl,
            open_orders=totals.open_orders,
            net_position=net_position,
        )
        used_here = [_group_usage(gid, row, figures) for row in limits_of.get(gid, [])]
        utilisations.extend(used_here)
        group_out.append(GroupOverviewOut(gid, g.name, g.parent_id, g.is_firm, totals, used_here))
    for p in portfolios:
        for row in p.limits:
            lim = checks.Limit(str(row.id), row.limit_type, row.value, row.symbol, True, row.warn_at_pct)
            used = checks.current_value(p.state, lim)
            if used is None:
                continue
            util = checks.utilisation(p.state, lim)
            utilisations.append(
                UtilisationOut(
                    "account",
                    p.id,
                    row.id,
                    row.limit_type,
                    row.symbol,
                    row.value,
                    used if used.is_finite() else None,
                    as_float(util),
                )  # fmt: skip
            )
    top = sorted(
        (u for u in utilisations if u.utilisation is not None),
        key=lambda u: u.utilisation or 0.0,
        reverse=True,
    )[:TOP_UTILISATIONS]
    open_alerts = await conn.scalar(
        select(func.count()).select_from(RiskAlert).where(RiskAlert.acknowledged_at.is_(None))
    )
    recent = (
        await conn.execute(
            select(*ALERT_COLS)
            .where(RiskAlert.acknowledged_at.is_(None))
            .order_by(RiskAlert.created_at.desc(), RiskAlert.id.desc())
            .limit(RECENT_ALERTS)
        )
    ).all()
    firm, _ = _totals(portfolios)
    return OverviewOut(
        as_of=utcnow(),
        firm=firm,
        groups=group_out,
        top_utilisations=top,
        open_alerts=int(open_alerts or 0),
        recent_alerts=[alert_out(r) for r in recent],
    )


def _group_usage(group_id: uuid.UUID, row: Any, figures: groups.GroupFigures) -> UtilisationOut:
    lim = groups.GroupLimit(
        str(row.id), str(group_id), "", row.limit_type, row.value, row.symbol, row.warn_at_pct
    )
    used = groups.current_value(figures, lim)
    return UtilisationOut(
        "group", group_id, row.id, row.limit_type, row.symbol, row.value, used, float(used / row.value)
    )


async def portfolio_var(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID | None, *, lookback: int = 250
) -> PortfolioVarOut:
    """Parametric VaR of the group's accounts together (firm-wide without a group), with components."""
    _ensure_risk_manager(principal)
    stmt = select(Account.id).order_by(Account.id)
    if group_id is not None:
        await get_group(conn, principal, group_id)
        sub = text(
            """WITH RECURSIVE sub AS (SELECT id FROM risk_groups WHERE id = :g
                 UNION ALL SELECT g.id FROM risk_groups g JOIN sub ON g.parent_id = sub.id)
               SELECT a.id FROM accounts a WHERE a.group_id IN (SELECT id FROM sub) ORDER BY a.id"""
        )
        ids = list((await conn.execute(sub, {"g": group_id})).scalars())
    else:
        ids = list((await conn.execute(stmt)).scalars())
    portfolios = await load_portfolios(conn, ids, with_orders=False)
    held = sorted({s for p in portfolios for s, (q, _) in p.state.positions.items() if q})
    empty = PortfolioVarOut(group_id, len(portfolios), lookback, 0, _ZERO, _ZERO, [], [])
    if not held:
        return empty
    series: dict[str, dict[datetime, float]] = {s: {} for s in held}
    for symbol, ts, close in await conn.execute(CLOSES_SQL, {"symbols": held, "lookback": lookback}):
        series[symbol][ts] = float(close)
    missing = [s for s in held if not series[s]]
    common = sorted(set.intersection(*(set(v) for v in series.values()))) if not missing else []
    if len(common) < 3:
        return PortfolioVarOut(
            group_id, len(portfolios), lookback, max(len(common) - 1, 0), None, None, missing, []
        )
    closes = np.array([[series[s][ts] for s in held] for ts in common], dtype=np.float64)
    column = {s: j for j, s in enumerate(held)}
    # Today's exposures: each position at its mark (the last price, as the accounts' equity values it);
    # the returns come from the closes.
    exposures = np.zeros((len(portfolios), len(held)))
    for i, p in enumerate(portfolios):
        for symbol, (q, mark) in p.state.positions.items():
            if q:
                exposures[i, column[symbol]] = float(q) * float(mark)
    mean, cov = calculations.return_moments(calculations.asset_returns(closes))
    total95, _ = calculations.parametric_var(exposures.sum(axis=0), mean, cov, 0.95)
    total99, _ = calculations.parametric_var(exposures.sum(axis=0), mean, cov, 0.99)
    c95 = calculations.component_var(exposures, mean, cov, 0.95)
    c99 = calculations.component_var(exposures, mean, cov, 0.99)
    amount = lambda v: calculations.amount(float(v), Decimal(1)) or _ZERO  # noqa: E731
    return PortfolioVarOut(
        group_id=group_id,
        accounts=len(portfolios),
        lookback=lookback,
        observations=len(common) - 1,
        var_95_amount=amount(total95),
        var_99_amount=amount(total99),
        missing_history=missing,
        components=[ComponentVarOut(p.id, amount(c95[i]), amount(c99[i])) for i, p in enumerate(portfolios)],
    )
