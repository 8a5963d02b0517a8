"""Post-trade checks of group limits: edge-triggered alerts when a group's sums cross a limit's warning
line or the limit itself, and the risk manager's list and acknowledgement of them.

Pre-trade, a group limit refuses an order that would take the group past it (group_pretrade.py). What
moves a group's sums without such an order (a price that revalues its positions, the fills of resting
orders it makes, the day's losses) is seen here, with the rules of the account alerts (risk/alerts.py):
one alert when utilisation rises through `warn_at_pct` (warning) or 100 % (critical), none while it
stays up, re-armed once it falls below the warning line. The state is the limit's `alert_level`, moved
compare-and-set, so the check after a price (post_trade.py) and the scheduled sweep (monitor_all) racing
raise one alert per crossing between them. Group limits switch no account to `reduce_only`: a group's
`max_daily_loss` is already a stop at placement for every account of the group.

The sums are those of the pre-trade check (group_pretrade.FIGURES_SQL: positions marked at the last
price, at cost when never priced; open orders and held legs; daily PnL from the day's first snapshot),
computed in one statement for a set of groups. An alert is published on the `risk` stream to the
subscribers who read every account (risk managers and admins) as a `group_risk_alert` message.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.risk import alerts as alerting
from app.domain.risk import checks, groups
from app.domain.risk.group_service import ensure_risk_manager, get_group
from app.domain.risk.models import RiskGroupAlert, RiskGroupLimit
from app.domain.risk.schemas import GroupAlertOut
from app.domain.risk.services.feeds import alert_acknowledged, alert_page
from app.domain.risk.services.mappers import alert_utilisation
from app.domain.streams import publish
from app.domain.trading.queries import OPEN_OR_HELD_STATUS_SQL, OPEN_STATUS_SQL
from app.lib.db import tx, utcnow
from app.lib.decimals import encode_json

_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
# The owner in a group message's stream header: no user owns a group, so only the subscribers who read
# every account (route key "*") receive it.
_NO_OWNER = uuid.UUID(int=0)

# Per group of :groups with at least one account: gross, net, the net quantity per symbol (JSON), open
# orders and held legs, daily PnL, over its accounts and its sub-groups' (as group_pretrade.FIGURES_SQL
# sums them for one account's groups; numbers as text). Positions are summed per account group and
# symbol first, then rolled up to each asked group over its tree, so an account in a desk under the firm
# is read once for both; the day's opening equity (two index probes per account) only when :daily (a
# `max_daily_loss` limit is among them).
_SUMS_SQL = text(
    f"""
    WITH RECURSIVE tree AS (
      SELECT id AS root, id AS member FROM risk_groups WHERE id = ANY(CAST(:groups AS uuid[]))
      UNION ALL
      SELECT tree.root, g.id FROM risk_groups g JOIN tree ON g.parent_id = tree.member
    ), accts AS (
      SELECT a.id, a.group_id, a.cash FROM accounts a WHERE a.group_id IN (SELECT member FROM tree)
    ), pos AS (
      SELECT a.group_id, a.id, p.symbol, p.quantity,
             p.quantity * coalesce(i.last_price, p.avg_entry_price) AS value
        FROM accts a JOIN positions p ON p.account_id = a.id JOIN instruments i ON i.symbol = p.symbol
       WHERE p.quantity <> 0
    ), by_symbol AS (
      SELECT group_id, symbol, sum(quantity) AS q, sum(value) AS net, sum(abs(value)) AS gross
        FROM pos GROUP BY group_id, symbol
    ), opened AS (
      SELECT a.group_id, count(*) AS n FROM accts a JOIN orders o ON o.account_id = a.id
       WHERE o.{OPEN_OR_HELD_STATUS_SQL} GROUP BY a.group_id
    ), daily AS (
      SELECT e.group_id, sum(e.now - coalesce(
               (SELECT s.equity FROM equity_snapshots s
                 WHERE s.account_id = e.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
               (SELECT s.equity FROM equity_snapshots s
                 WHERE s.account_id = e.id AND s.ts < date_trunc('day', now(), 'UTC')
                 ORDER BY s.ts DESC LIMIT 1),
               e.now)) AS pnl
        FROM (SELECT a.group_id, a.id, a.cash + coalesce(v.net, 0) AS now
                FROM accts a LEFT JOIN (SELECT pos.id, sum(pos.value) AS net FROM pos GROUP BY pos.id) v
                     ON v.id = a.id
               WHERE CAST(:daily AS boolean)) e
       GROUP BY e.group_id
    ), held AS (
      SELECT t.root, b.symbol, sum(b.q) AS q, sum(b.net) AS net, sum(b.gross) AS gross
        FROM tree t JOIN by_symbol b ON b.group_id = t.member GROUP BY t.root, b.symbol
    )
    SELECT t.root,
           coalesce((SELECT sum(h.gross) FROM held h WHERE h.root = t.root), 0)::text AS gross,
           coalesce((SELECT sum(h.net) FROM held h WHERE h.root = t.root), 0)::text AS net,
           coalesce((SELECT json_object_agg(h.symbol, h.q::text) FROM held h WHERE h.root = t.root),
                    '{{}}')::text AS positions,
           coalesce(sum(o.n), 0) AS open_orders,
           coalesce(sum(d.pnl), 0)::text AS daily_pnl
      FROM tree t LEFT JOIN opened o ON o.group_id = t.member LEFT JOIN daily d ON d.group_id = t.member
     GROUP BY t.root
    """
)
_NO_MEMBERS = groups.GroupFigures(gross=_ZERO, net=_ZERO, daily_pnl=_ZERO, open_orders=0, net_position={})

# The groups whose sums prices of :symbols can move: the chains of the groups of the accounts holding one
# or with an open order in one (the price may fill it; a held leg waits on an open entry in its symbol),
# as far as they carry an enabled limit. Without any enabled group limit the one-time filter skips the
# scans: the cost of this check on a desk without group limits.
_HOLDING_GROUPS_SQL = text(
    f"""
    WITH RECURSIVE touched AS (
      SELECT DISTINCT a.group_id AS id FROM accounts a
       WHERE (SELECT true FROM risk_group_limits WHERE enabled LIMIT 1)
         AND a.group_limited AND a.id IN (
         SELECT p.account_id FROM positions p
          WHERE p.symbol = ANY(CAST(:symbols AS text[])) AND p.quantity <> 0
         UNION
         SELECT o.account_id FROM orders o
          WHERE o.symbol = ANY(CAST(:symbols AS text[])) AND o.{OPEN_STATUS_SQL})
    ), chain AS (
      SELECT g.id, g.parent_id FROM risk_groups g JOIN touched ON touched.id = g.id
      UNION
      SELECT g.id, g.parent_id FROM risk_groups g JOIN chain ON g.id = chain.parent_id
    )
    SELECT DISTINCT chain.id FROM chain JOIN risk_group_limits l ON l.group_id = chain.id AND l.enabled
    """
)

_LIMIT_COLS = (
    RiskGroupLimit.id,
    RiskGroupLimit.group_id,
    RiskGroupLimit.limit_type,
    RiskGroupLimit.value,
    RiskGroupLimit.symbol,
    RiskGroupLimit.warn_at_pct,
    RiskGroupLimit.alert_level,
)
ALERT_COLS = (
    RiskGroupAlert.id,
    RiskGroupAlert.group_id,
    RiskGroupAlert.limit_id,
    RiskGroupAlert.limit_type,
    RiskGroupAlert.severity,
    RiskGroupAlert.utilisation,
    RiskGroupAlert.message,
    RiskGroupAlert.created_at,
    RiskGroupAlert.acknowledged_at,
    RiskGroupAlert.acknowledged_by,
)


class GroupRiskMessage(msgspec.Struct, kw_only=True):
    """`group_risk_alert` on the `risk` stream: the stored alert as the REST list shows it, under `data`."""

    type: str
    group_id: uuid.UUID
    at: datetime
    data: dict[str, Any]


def alert_out(row: Any) -> GroupAlertOut:
    m = row._mapping
    return GroupAlertOut(
        id=m["id"],
        group_id=m["group_id"],
        limit_id=m["limit_id"],
        limit_type=m["limit_type"],
        severity=m["severity"],
        utilisation=alert_utilisation(m["utilisation"]),
        message=m["message"],
        created_at=m["created_at"],
        acknowledged_at=m["acknowledged_at"],
        acknowledged_by=m["acknowledged_by"],
    )


def figures_of(row: Any) -> groups.GroupFigures:
    """A group's sums as _SUMS_SQL returns them."""
    positions = msgspec.json.decode(row.positions, type=dict[str, str])
    return groups.GroupFigures(
        gross=Decimal(row.gross),
        net=Decimal(row.net),
        daily_pnl=Decimal(row.daily_pnl),
        open_orders=int(row.open_orders),
        net_position={symbol: Decimal(q) for symbol, q in positions.items()},
    )


def message(limit: Any, severity: str, util: Decimal) -> str:
    scope = f" ({limit.symbol})" if limit.symbol else ""
    pct = f"{util * _HUNDRED:.2f}%"
    text_ = f"group {limit.limit_type}{scope} is at {pct} of its limit {limit.value}"
    return text_ if severity == alerting.CRITICAL else f"{text_} (warning at {limit.warn_at_pct}%)"


async def check_groups(conn: AsyncConnection, group_ids: Collection[uuid.UUID] | None = None) -> int:
    """Measure every enabled limit of the groups `group_ids` (None: of every group) and raise the alerts
    their crossings call for, in one transaction; returns the number of alerts raised."""
    async with tx(conn):
        stmt = select(*_LIMIT_COLS).where(RiskGroupLimit.enabled).order_by(RiskGroupLimit.id)
        if group_ids is not None:
            if not group_ids:
                return 0
            stmt = stmt.where(RiskGroupLimit.group_id.in_(list(group_ids)))
        limits = (await conn.execute(stmt)).all()
        if not limits:
            return 0
        roots = sorted({row.group_id for row in limits})
        daily = any(row.limit_type == "max_daily_loss" for row in limits)
        # The planner's estimates for the recursive tree are far off, past the JIT threshold; compiling the
        # statement cost ~1 s against ~0.1 s of execution for 10,000 accounts.
        await conn.execute(text("SET LOCAL jit = off"))
        found = await conn.execute(_SUMS_SQL, {"groups": roots, "daily": daily})
        sums = {row.root: figures_of(row) for row in found}
        now = utcnow()
        raised = 0
        for row in limits:
            limit = groups.GroupLimit(
                str(row.id), str(row.group_id), "", row.limit_type, row.value, row.symbol, row.warn_at_pct
            )
            util = groups.current_value(sums.get(row.group_id, _NO_MEMBERS), limit) / row.value
            level, severity = alerting.next_alert(row.alert_level, util * _HUNDRED, row.warn_at_pct)
            if level == row.alert_level:
                continue
            moved = await conn.scalar(
                update(RiskGroupLimit)
                .where(
                    RiskGroupLimit.id == row.id,
                    RiskGroupLimit.enabled,
                    RiskGroupLimit.alert_level.is_not_distinct_from(row.alert_level),
                )
                .values(alert_level=level)
                .returning(RiskGroupLimit.id)
            )
            if moved is None or severity is None:
                continue  # (another check moved it first; or a re-arm, which raises nothing)
            stored = (
                await conn.execute(
                    RiskGroupAlert.__table__.insert()
                    .values(
                        id=uuid.uuid4(), group_id=row.group_id, limit_id=row.id, limit_type=row.limit_type,
                        severity=severity, utilisation=checks.storable(util),
                        message=message(row, severity, util), created_at=now,
                    )
                    .returning(*ALERT_COLS)
                )
            ).one()
            raised += 1
            _defer_message(conn, row.group_id, now, alert_out(stored))
        return raised


def _defer_message(conn: AsyncConnection, group_id: uuid.UUID, at: datetime, alert: GroupAlertOut) -> None:
    if not publish.wanted(_NO_OWNER, group_id):
        return
    data = msgspec.to_builtins(alert)
    body = GroupRiskMessage(type="group_risk_alert", group_id=group_id, at=at, data=data)
    publish.defer(conn, publish.RISK, publish.header(_NO_OWNER, group_id) + encode_json(body))


async def groups_moved_by(conn: AsyncConnection, symbols: list[str]) -> list[uuid.UUID]:
    """The groups with an enabled limit whose sums prices of `symbols` can move."""
    return list((await conn.execute(_HOLDING_GROUPS_SQL, {"symbols": symbols})).scalars())


async def list_alerts(
    conn: AsyncConnection,
    principal: Principal,
    group_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    acknowledged: bool | None = None,
    severity: str | None = None,
) -> tuple[list[GroupAlertOut], str | None]:
    await get_group(conn, principal, group_id)  # (a risk manager's; an unknown group is 404)
    return await alert_page(
        conn, RiskGroupAlert, RiskGroupAlert.group_id == group_id, ALERT_COLS, alert_out,
        limit=limit, cursor=cursor, acknowledged=acknowledged, severity=severity,
    )


async def acknowledge_alert(
    conn: AsyncConnection, principal: Principal, group_id: uuid.UUID, alert_id: uuid.UUID
) -> GroupAlertOut:
    """As an account alert's: one acknowledgement wins a race, the rest are 409."""
    ensure_risk_manager(principal)
    async with tx(conn):
        owned = RiskGroupAlert.group_id == group_id
        return await alert_acknowledged(
            conn, principal, RiskGroupAlert, owned, alert_id, ALERT_COLS, alert_out
        )
