"""Risk management: limits (audited), metrics, post-trade monitoring, violations and alerts.

Access: whoever can see the account (owner, risk_manager, admin) reads; only risk_manager and admin change
limits (the owner gets 403); anybody else gets 404, filtered in SQL. Limit writes and the monitor lock the
account row like order placement does, so none of them interleave with an order's pre-trade check.

Decisions where DOMAIN.md / API.md are silent:

* Peak equity for drawdown is the highest of `accounts.peak_equity`, every equity snapshot and equity
  now; the monitor and the snapshot job write a higher peak back to `accounts.peak_equity`, so the
  pre-trade drawdown stop sees the same peak as the metrics.
* Historical VaR takes the last `lookback` daily closes of each held symbol and keeps the timestamps all
  of them share. A held symbol without daily candles leaves VaR/volatility null (it is listed in
  `missing_history`) rather than understating the risk of the rest; a flat book has zero VaR.
* The monitor records a post-trade violation on every run that finds a limit breached (it is the record
  of what each check saw); alerts, by contrast, are edge-triggered (risk/alerts.py).
* An automatic switch to reduce_only is a system decision: its audit row has no actor, even when a user
  asked for the check (who asked is kept on the violation's detail as `checked_by`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from math import isfinite
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account, EquitySnapshot, TradingStateChange
from app.domain.audit.services import record as audit
from app.domain.identity.schemas import Principal
from app.domain.markets.models import Instrument
from app.domain.risk import calculations, checks, monitoring, pretrade
from app.domain.risk.models import RiskAlert, RiskLimit, RiskLimitAudit, RiskViolation
from app.domain.risk.monitoring import NUMERIC_CAP as _NUMERIC_CAP
from app.domain.risk.monitoring import alert_message as _alert_message
from app.domain.risk.monitoring import as_check_limit as _as_check_limit
from app.domain.risk.monitoring import storable as _storable
from app.domain.risk.schemas import (
    AlertOut,
    LimitAuditOut,
    LimitCreate,
    LimitOut,
    LimitPatch,
    LimitUsage,
    MetricsOut,
    MonitorResult,
    VarMethodOut,
    VarOut,
    ViolationOut,
)
from app.domain.streams.events import defer_risk_messages
from app.domain.trading.book import AccountBook, load_book
from app.lib.db import tx, utcnow
from app.lib.errors import ApiError, conflict, not_found
from app.lib.log import get_logger
from app.lib.pagination import decode_cursor, decode_int_cursor, encode_cursor

log = get_logger("app.risk")

ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_NIL_UUID = uuid.UUID(int=0)

LIMIT_COLS = (
    RiskLimit.id,
    RiskLimit.account_id,
    RiskLimit.limit_type,
    RiskLimit.value,
    RiskLimit.symbol,
    RiskLimit.warn_at_pct,
    RiskLimit.enabled,
    RiskLimit.auto_reduce_only,
    RiskLimit.alert_level,
    RiskLimit.created_at,
    RiskLimit.updated_at,
)
VIOLATION_COLS = (
    RiskViolation.id,
    RiskViolation.account_id,
    RiskViolation.limit_id,
    RiskViolation.limit_type,
    RiskViolation.limit_value,
    RiskViolation.would_be,
    RiskViolation.phase,
    RiskViolation.detail,
    RiskViolation.created_at,
)
ALERT_COLS = (
    RiskAlert.id,
    RiskAlert.account_id,
    RiskAlert.limit_id,
    RiskAlert.limit_type,
    RiskAlert.severity,
    RiskAlert.utilisation,
    RiskAlert.message,
    RiskAlert.created_at,
    RiskAlert.acknowledged_at,
    RiskAlert.acknowledged_by,
)
AUDIT_COLS = (
    RiskLimitAudit.id,
    RiskLimitAudit.limit_id,
    RiskLimitAudit.account_id,
    RiskLimitAudit.actor_id,
    RiskLimitAudit.action,
    RiskLimitAudit.old,
    RiskLimitAudit.new,
    RiskLimitAudit.created_at,
)


# ------------------------------------------------------------------------------------------------- helpers


def _float(value: Any) -> float | None:
    """A JSON-safe statistic: NaN and infinities (and None) become null."""
    if value is None:
        return None
    out = float(value)
    return out if isfinite(out) else None


def _limit_out(row: Any) -> LimitOut:
    return LimitOut(*row)


def _violation_out(row: Any) -> ViolationOut:
    return ViolationOut(*row)


def _alert_out(row: Any) -> AlertOut:
    m = row._mapping
    return AlertOut(
        id=m["id"],
        account_id=m["account_id"],
        limit_id=m["limit_id"],
        limit_type=m["limit_type"],
        severity=m["severity"],
        utilisation=_float(m["utilisation"]) if m["utilisation"] < _NUMERIC_CAP else None,
        message=m["message"],
        created_at=m["created_at"],
        acknowledged_at=m["acknowledged_at"],
        acknowledged_by=m["acknowledged_by"],
    )


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


async def _visible_account(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, lock: bool = False
) -> Any:
    if lock:
        # A limit change is a change of what order placement decides on: it updates the account row (not
        # only locks it), so an order decided on the old limits fails its row-version check and is
        # decided again under the account lock, after this change (app/domain/trading/placement.py).
        stmt: Any = (
            update(Account)
            .where(Account.id == account_id, visible_to(principal))
            .values(updated_at=func.now())
            .returning(Account.id, Account.owner_id)
        )
    else:
        stmt = select(Account.id, Account.owner_id).where(Account.id == account_id, visible_to(principal))
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise not_found("Account")
    return row


def _ensure_may_manage(principal: Principal) -> None:
    if not principal.can_read_all_accounts:
        raise ApiError(403, "Managing risk limits requires the risk_manager or admin role")


def _validate(limit_type: str, value: Decimal, symbol: str | None, warn_at_pct: Decimal) -> None:
    raise_problems(checks.validate_limit(limit_type, value, symbol, warn_at_pct))


def raise_problems(problems: list[tuple[str, str]]) -> None:
    """A limit definition's (field, message) problems as one 422 naming every field."""
    if problems:
        raise ApiError(
            422,
            "; ".join(f"{f}: {m}" for f, m in problems),
            errors=[{"field": f, "message": m} for f, m in problems],
        )


async def _ensure_symbol(conn: AsyncConnection, symbol: str | None) -> None:
    if (
        symbol is not None
        and await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol)) is None
    ):
        raise ApiError(
            422, f"Unknown symbol {symbol!r}", errors=[{"field": "symbol", "message": "unknown instrument"}]
        )


# -------------------------------------------------------------------------------------------------- limits


async def list_limits(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[LimitOut], str | None]:
    await _visible_account(conn, principal, account_id)
    stmt = select(*LIMIT_COLS).where(RiskLimit.account_id == account_id)
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(RiskLimit.created_at, RiskLimit.id) < func.row(ts, last))
    rows = (
        await conn.execute(stmt.order_by(RiskLimit.created_at.desc(), RiskLimit.id.desc()).limit(limit + 1))
    ).all()
    items = [_limit_out(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def get_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID
) -> LimitOut:
    await _visible_account(conn, principal, account_id)
    row = (
        await conn.execute(
            select(*LIMIT_COLS).where(RiskLimit.id == limit_id, RiskLimit.account_id == account_id)
        )
    ).one_or_none()
    if row is None:
        raise not_found("Risk limit")
    return _limit_out(row)


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
        await _visible_account(conn, principal, account_id, lock=True)
        _ensure_may_manage(principal)
        _validate(data.limit_type, data.value, data.symbol, data.warn_at_pct)
        await _ensure_symbol(conn, data.symbol)
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
    return _limit_out(row)


async def update_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID, data: LimitPatch
) -> LimitOut:
    async with tx(conn):
        await _visible_account(conn, principal, account_id, lock=True)
        _ensure_may_manage(principal)
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
            return _limit_out(current)
        merged = {**current._mapping, **changes}
        _validate(merged["limit_type"], merged["value"], merged["symbol"], merged["warn_at_pct"])
        if "symbol" in changes:
            await _ensure_symbol(conn, merged["symbol"])
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
    return _limit_out(row)


async def delete_limit(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, limit_id: uuid.UUID
) -> None:
    async with tx(conn):
        await _visible_account(conn, principal, account_id, lock=True)
        _ensure_may_manage(principal)
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
    await _visible_account(conn, principal, account_id)
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


# ------------------------------------------------------------------------------------------------- metrics


async def _peak_and_state(conn: AsyncConnection, book: AccountBook) -> tuple[checks.PortfolioState, Decimal]:
    """The portfolio as the limits measure it, with drawdown from the highest equity ever observed."""
    state = pretrade.portfolio_state(book)
    snapshot_peak = await conn.scalar(
        select(func.max(EquitySnapshot.equity)).where(EquitySnapshot.account_id == book.id)
    )
    equity = state.equity
    peak = max(book.peak_equity, snapshot_peak if snapshot_peak is not None else book.peak_equity, equity)
    fraction = calculations.drawdown(equity, peak)
    state = replace(state, drawdown_pct=fraction * _HUNDRED if fraction is not None else ZERO)
    return state, peak


_CLOSES_SQL = text(
    """
    SELECT s.symbol, c.ts, c.close
      FROM unnest(CAST(:symbols AS text[])) AS s(symbol)
      CROSS JOIN LATERAL (
        SELECT ts, close FROM candles
         WHERE symbol = s.symbol AND timeframe = '1d'
         ORDER BY ts DESC
         LIMIT :lookback) c
    """
)


async def _var(
    conn: AsyncConnection,
    positions: dict[str, tuple[Decimal, Decimal]],
    lookback: int,
    exposure: dict[str, Any],
) -> VarOut:
    held = sorted(s for s, (q, _) in positions.items() if q != 0)
    if not held:
        # A flat book has no market risk: zero, not "unknown".
        return VarOut(
            lookback=lookback,
            observations=0,
            var_95=0.0,
            cvar_95=0.0,
            var_99=0.0,
            cvar_99=0.0,
            var_95_amount=ZERO,
            cvar_95_amount=ZERO,
            var_99_amount=ZERO,
            cvar_99_amount=ZERO,
            annual_volatility=0.0,
            base_amount=ZERO,
            missing_history=[],
            parametric=_FLAT_METHOD,
            monte_carlo=_FLAT_METHOD,
        )
    quantities = [positions[s][0] for s in held]
    # Same rule as calculations.returns_base, kept exact: long-only value, else gross exposure.
    base: Decimal = exposure["net"] if all(q >= 0 for q in quantities) else exposure["gross"]
    series: dict[str, dict[datetime, float]] = {s: {} for s in held}
    for symbol, ts, close in await conn.execute(_CLOSES_SQL, {"symbols": held, "lookback": lookback}):
        series[symbol][ts] = float(close)
    missing = [s for s in held if not series[s]]
    common = sorted(set.intersection(*(set(v) for v in series.values()))) if not missing else []
    models = None
    if len(common) >= 2:
        closes = np.array([[series[s][ts] for s in held] for ts in common], dtype=np.float64)
        q = np.array([float(q) for q in quantities])
        returns = calculations.portfolio_returns(q, closes)
        models = calculations.model_var_report(q, closes, base)
    else:
        returns = np.empty(0, dtype=np.float64)
    report = calculations.var_report(returns, base)
    return VarOut(
        lookback=lookback,
        observations=int(report["observations"]),  # type: ignore[call-overload]
        var_95=_float(report["var_95"]),
        cvar_95=_float(report["cvar_95"]),
        var_99=_float(report["var_99"]),
        cvar_99=_float(report["cvar_99"]),
        var_95_amount=report["var_95_amount"],
        cvar_95_amount=report["cvar_95_amount"],  # type: ignore[arg-type]
        var_99_amount=report["var_99_amount"],
        cvar_99_amount=report["cvar_99_amount"],  # type: ignore[arg-type]
        annual_volatility=_float(calculations.annualised_volatility(returns)),
        base_amount=base,
        missing_history=missing,
        parametric=_method_out(models["parametric"]) if models else None,
        monte_carlo=_method_out(models["monte_carlo"]) if models else None,
    )


_FLAT_METHOD = VarMethodOut(
    var_95=0.0,
    cvar_95=0.0,
    var_99=0.0,
    cvar_99=0.0,
    var_95_amount=ZERO,
    cvar_95_amount=ZERO,
    var_99_amount=ZERO,
    cvar_99_amount=ZERO,
)


def _method_out(report: dict[str, Any]) -> VarMethodOut:
    return VarMethodOut(
        **{k: _float(v) if isinstance(v, float) else v for k, v in report.items()}  # type: ignore[arg-type]
    )


def _usage(state: checks.PortfolioState, rows: list[Any]) -> list[LimitUsage]:
    limits = [_as_check_limit(r) for r in rows]
    breached = {b.limit_id for b in checks.current_breaches(state, limits)}
    out = []
    for row, lim in zip(rows, limits, strict=True):
        used = checks.current_value(state, lim)
        util = checks.utilisation(state, lim)
        level = None
        if util is not None:
            pct = util * _HUNDRED
            level = "critical" if pct >= _HUNDRED else "warning" if pct >= lim.warn_at_pct else "ok"
        out.append(
            LimitUsage(
                id=row.id,
                limit_type=row.limit_type,
                symbol=row.symbol,
                value=row.value,
                warn_at_pct=row.warn_at_pct,
                used=used if used is not None and used.is_finite() else None,
                utilisation=_float(util),
                alert_level=row.alert_level,
                current_level=level,  # type: ignore[arg-type]
                breached=lim.id in breached,
            )
        )
    return out


async def _enabled_limits(conn: AsyncConnection, account_id: uuid.UUID, *, lock: bool = False) -> list[Any]:
    stmt = (
        select(*LIMIT_COLS)
        .where(RiskLimit.account_id == account_id, RiskLimit.enabled)
        .order_by(RiskLimit.created_at, RiskLimit.id)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await conn.execute(stmt)).all())


async def risk_metrics(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, lookback: int = 250
) -> MetricsOut:
    book = await load_book(conn, account_id, with_stats=True, reader=principal)
    if book is None:
        raise not_found("Account")
    base_currency = await conn.scalar(select(Account.base_currency).where(Account.id == account_id))
    state, peak = await _peak_and_state(conn, book)
    rows = await _enabled_limits(conn, account_id)
    equity = state.equity
    exposure = calculations.exposures(state.positions, equity)
    var = await _var(conn, state.positions, lookback, exposure)
    fraction = calculations.drawdown(equity, peak)
    return MetricsOut(
        account_id=account_id,
        as_of=utcnow(),
        base_currency=base_currency or "",
        equity=equity,
        cash=book.cash,
        gross_exposure=exposure["gross"],
        net_exposure=exposure["net"],  # type: ignore[arg-type]
        leverage=_float(exposure["leverage"]),
        concentration_pct=_float(exposure["concentration_pct"]),
        largest_symbol=exposure["largest_symbol"],  # type: ignore[arg-type]
        daily_pnl=equity - book.day_open_equity if book.day_open_equity is not None else None,
        day_open_equity=book.day_open_equity,
        peak_equity=peak,
        drawdown=_float(fraction),
        trading_state=book.trading_state,
        open_orders=book.open_orders,
        orders_last_minute=book.orders_last_minute,
        var=var,
        limits=_usage(state, rows),
    )


# ---------------------------------------------------------------------------------------------- monitoring


async def monitor_account(
    conn: AsyncConnection, account_id: uuid.UUID, *, actor_id: uuid.UUID | None = None
) -> MonitorResult:
    """The post-trade check of one account, in one transaction with the account row locked.

    Records a violation per limit breached now, moves each limit's edge-triggered alert state (raising
    an alert only on the way up), and switches an active account to reduce_only when a loss stop with
    `auto_reduce_only` is breached. Callers check access; this trusts `account_id`.
    """
    now = utcnow()
    async with tx(conn):
        book = await load_book(conn, account_id, with_stats=True)
        if book is None:
            raise not_found("Account")
        rows = await _enabled_limits(conn, account_id, lock=True)
        state, peak = await _peak_and_state(conn, book)
        if peak > book.peak_equity:
            await conn.execute(update(Account).where(Account.id == account_id).values(peak_equity=peak))
        decision = monitoring.decide(state, rows, book.trading_state)
        breaches = decision.breaches
        violations: list[ViolationOut] = []
        if breaches:
            values = [
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "limit_id": uuid.UUID(b.limit_id),
                    "limit_type": b.limit_type,
                    "limit_value": b.limit_value,
                    "would_be": _storable(b.would_be),
                    "phase": "post_trade",
                    "detail": monitoring.violation_detail(b, state.equity, actor_id),
                }
                for b in breaches
            ]
            position = {v["id"]: i for i, v in enumerate(values)}
            result = await conn.execute(insert(RiskViolation).values(values).returning(*VIOLATION_COLS))
            violations = sorted((_violation_out(r) for r in result), key=lambda v: position[v.id])

        raised: list[AlertOut] = []
        for t in decision.transitions:
            row = t.row
            await conn.execute(update(RiskLimit).where(RiskLimit.id == row.id).values(alert_level=t.new))
            if t.severity is not None:
                alert = (
                    await conn.execute(
                        insert(RiskAlert)
                        .values(
                            id=uuid.uuid4(),
                            account_id=account_id,
                            limit_id=row.id,
                            limit_type=row.limit_type,
                            severity=t.severity,
                            utilisation=_storable(t.utilisation),
                            message=_alert_message(row, t.severity, t.utilisation),
                            created_at=now,
                        )
                        .returning(*ALERT_COLS)
                    )
                ).one()
                raised.append(_alert_out(alert))

        new_state = book.trading_state
        reason = decision.reduce_only_reason
        if reason is not None and decision.stop is not None:
            new_state = "reduce_only"
            await conn.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(trading_state=new_state, trading_state_reason=reason, updated_at=now)
            )
            await conn.execute(
                insert(TradingStateChange).values(
                    account_id=account_id,
                    actor_id=None,
                    old_state=book.trading_state,
                    new_state=new_state,
                    reason=reason,
                )
            )
            log.warning(
                "risk_auto_reduce_only", account_id=str(account_id), limit_type=decision.stop.limit_type
            )
            change = {"from": book.trading_state, "to": new_state, "reason": reason, "automatic": True}
            await audit(conn, "account.trading_state_changed", account_id=account_id, details=change)
        defer_risk_messages(conn, book, now, violations, raised, new_state)  # the streams, after commit
    return MonitorResult(
        account_id=account_id,
        checked_at=now,
        limits_checked=len(rows),
        violations=violations,
        alerts=raised,
        trading_state=new_state,
        previous_trading_state=book.trading_state,
    )


async def run_monitor(conn: AsyncConnection, principal: Principal, account_id: uuid.UUID) -> MonitorResult:
    await _visible_account(conn, principal, account_id)
    return await monitor_account(conn, account_id, actor_id=principal.user_id)


async def monitor_all(
    conn: AsyncConnection,
    *,
    batch_size: int = 500,
    time_budget_seconds: float = 240.0,
    start_after: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Monitor every account that has an enabled limit, in id order, a batch at a time, set-based
    (risk/monitoring.py: a fixed number of statements per batch, the same decisions as monitor_account).

    Stops at the time budget (checked between batches) and reports where it got to (`resume_after`), so
    a scheduler can continue. Accounts whose row changed between the batch's read and its write, and
    every account of a batch whose set-based write failed, are checked one by one with monitor_account;
    one failing account is logged and counted; it does not stop the others.
    """
    deadline = time.monotonic() + time_budget_seconds
    counts = {"accounts": 0, "violations": 0, "alerts": 0, "reduce_only": 0, "failed": 0}
    after = start_after or _NIL_UUID
    complete = True
    while True:
        ids = list(
            (
                await conn.execute(
                    select(Account.id)
                    .where(
                        Account.id > after,
                        select(RiskLimit.id)
                        .where(RiskLimit.account_id == Account.id, RiskLimit.enabled)
                        .exists(),
                    )
                    .order_by(Account.id)
                    .limit(batch_size)
                )
            ).scalars()
        )
        await conn.rollback()
        if not ids:
            break
        if time.monotonic() >= deadline:
            complete = False
            break
        await check_accounts(conn, ids, counts)
        after = ids[-1]
        if len(ids) < batch_size:
            break
    return {**counts, "complete": complete, "resume_after": None if complete else str(after)}


async def check_accounts(conn: AsyncConnection, ids: list[uuid.UUID], counts: dict[str, int]) -> None:
    """The post-trade check of `ids` (one set-based batch), adding to `counts`. Accounts whose row moved
    between the batch's read and its write, and every account of a batch whose set-based write failed,
    are checked one by one with monitor_account; one failing account is logged and counted."""
    try:
        swept = await monitoring.sweep_batch(conn, ids)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("risk_sweep_batch_failed", first_account=str(ids[0]), accounts=len(ids))
        swept = monitoring.SweepResult(stale=list(ids))
    counts["accounts"] += swept.accounts
    counts["violations"] += swept.violations
    counts["alerts"] += swept.alerts
    counts["reduce_only"] += swept.reduce_only
    for account_id in swept.stale:
        try:
            result = await monitor_account(conn, account_id)
        except asyncio.CancelledError:
            raise
        except ApiError:
            continue  # deleted since the batch was read
        except Exception:
            log.exception("risk_monitor_failed", account_id=str(account_id))
            counts["failed"] += 1
        else:
            counts["accounts"] += 1
            counts["violations"] += len(result.violations)
            counts["alerts"] += len(result.alerts)
            counts["reduce_only"] += result.trading_state != result.previous_trading_state


_SNAPSHOT_SQL = text(
    """
    WITH batch AS (
      SELECT id, cash FROM accounts WHERE id > :after ORDER BY id LIMIT :limit
    ), valued AS (
      -- Per-account LATERAL: each batch account reads its own positions through pk_positions; a plain
      -- join let the planner hash-join the whole positions table for every batch (55 ms -> 28 ms per
      -- 1,000 accounts at 10,000 accounts, measured by benchmarks/explain_plans.py).
      SELECT b.id, b.cash, b.cash + coalesce(mv.value, 0) AS equity
        FROM batch b
        LEFT JOIN LATERAL (
          SELECT sum(p.quantity * coalesce(i.last_price, p.avg_entry_price)) AS value
            FROM positions p LEFT JOIN instruments i ON i.symbol = p.symbol
           WHERE p.account_id = b.id AND p.quantity <> 0
        ) mv ON true
    ), inserted AS (
      INSERT INTO equity_snapshots (account_id, ts, equity, cash)
      SELECT id, :ts, equity, cash FROM valued
      RETURNING account_id
    ), raisable AS (
      -- Accounts busy with an order are skipped, not waited for (no lock waits, no deadlock with
      -- price updates); a fill raises its own peak and the next run catches the rest.
      SELECT a.id, v.equity FROM accounts a JOIN valued v ON v.id = a.id
       WHERE v.equity > a.peak_equity
       ORDER BY a.id
         FOR UPDATE OF a SKIP LOCKED
    ), raised AS (
      UPDATE accounts a SET peak_equity = r.equity
        FROM raisable r
       WHERE a.id = r.id AND r.equity > a.peak_equity
      RETURNING a.id
    )
    SELECT (SELECT count(*) FROM inserted) AS snapshots,
           (SELECT count(*) FROM raised) AS peaks_raised,
           (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last_id
    """
)


async def snapshot_equity(conn: AsyncConnection, *, batch_size: int = 1000) -> dict[str, int]:
    """Write an equity snapshot (cash + Σ q·last price, cost for never-priced symbols) for every account."""
    after = _NIL_UUID
    totals = {"snapshots": 0, "peaks_raised": 0}
    while True:
        async with tx(conn):
            row = (
                await conn.execute(_SNAPSHOT_SQL, {"after": after, "limit": batch_size, "ts": utcnow()})
            ).one()
        totals["snapshots"] += row.snapshots
        totals["peaks_raised"] += row.peaks_raised
        if row.last_id is None or row.snapshots < batch_size:
            return totals
        after = row.last_id


# ------------------------------------------------------------------------------------- violations, alerts


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
    await _visible_account(conn, principal, account_id)
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
    items = [_violation_out(r) for r in rows[:limit]]
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
    await _visible_account(conn, principal, account_id)
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
    items = [_alert_out(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def acknowledge_alert(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, alert_id: uuid.UUID
) -> AlertOut:
    """Anyone who can see the account may acknowledge; the conditional UPDATE makes a race end in one
    acknowledgement and a 409 for the rest."""
    async with tx(conn):
        await _visible_account(conn, principal, account_id)
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
    return _alert_out(row)
