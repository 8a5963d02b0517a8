"""What the risk manager reads across groups: the overview (firm and group totals, limit utilisations,
open alerts of accounts and of groups) and the parametric portfolio VaR of a group's accounts with each
account's component.
Read-only; the groups, their members and limits are group_service.py's."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.risk import calculations, checks, group_alerts, groups
from app.domain.risk.group_service import GROUP_COLS, GROUP_LIMIT_COLS, ensure_risk_manager, get_group
from app.domain.risk.models import RiskAlert, RiskGroup, RiskGroupAlert, RiskGroupLimit
from app.domain.risk.portfolios import Portfolio, load_portfolios
from app.domain.risk.schemas import (
    ComponentVarOut,
    GroupOverviewOut,
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
)
from app.lib.db import utcnow

_ZERO = Decimal(0)
TOP_UTILISATIONS = 10
RECENT_ALERTS = 20


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
    ensure_risk_manager(principal)
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
    open_group_alerts = await conn.scalar(
        select(func.count()).select_from(RiskGroupAlert).where(RiskGroupAlert.acknowledged_at.is_(None))
    )
    recent_group = (
        await conn.execute(
            select(*group_alerts.ALERT_COLS)
            .where(RiskGroupAlert.acknowledged_at.is_(None))
            .order_by(RiskGroupAlert.created_at.desc(), RiskGroupAlert.id.desc())
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
        open_group_alerts=int(open_group_alerts or 0),
        recent_group_alerts=[group_alerts.alert_out(r) for r in recent_group],
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
    ensure_risk_manager(principal)
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
