"""The post-trade monitor of one account, the per-account and the set-based sweeps over accounts."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.models import Account, TradingStateChange
from app.domain.audit.services import record as audit
from app.domain.identity.schemas import Principal
from app.domain.risk import monitoring
from app.domain.risk.checks import storable
from app.domain.risk.models import RiskAlert, RiskLimit, RiskViolation
from app.domain.risk.monitoring import alert_message as _alert_message
from app.domain.risk.schemas import (
    AlertOut,
    MonitorResult,
    ViolationOut,
)
from app.domain.risk.services.access import visible_account
from app.domain.risk.services.mappers import (
    ALERT_COLS,
    VIOLATION_COLS,
    alert_out,
    violation_out,
)
from app.domain.risk.services.metrics import enabled_limits, peak_and_state
from app.domain.streams.events import defer_risk_messages
from app.domain.trading.book import load_book
from app.lib.db import tx, utcnow
from app.lib.errors import ApiError, not_found
from app.lib.gcpause import paused_gc
from app.lib.log import get_logger

log = get_logger("app.risk")

_NIL_UUID = uuid.UUID(int=0)


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
        rows = await enabled_limits(conn, account_id, lock=True)
        state, peak = await peak_and_state(conn, book)
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
                    "would_be": storable(b.would_be),
                    "phase": "post_trade",
                    "detail": monitoring.violation_detail(b, state.equity, actor_id),
                }
                for b in breaches
            ]
            position = {v["id"]: i for i, v in enumerate(values)}
            result = await conn.execute(insert(RiskViolation).values(values).returning(*VIOLATION_COLS))
            violations = sorted((violation_out(r) for r in result), key=lambda v: position[v.id])

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
                            utilisation=storable(t.utilisation),
                            message=_alert_message(row, t.severity, t.utilisation),
                            created_at=now,
                        )
                        .returning(*ALERT_COLS)
                    )
                ).one()
                raised.append(alert_out(alert))

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
    await visible_account(conn, principal, account_id)
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
    are checked one by one with monitor_account; one failing account is logged and counted. The batch runs
    with the cyclic garbage collector paused (app/lib/gcpause.py): its temporaries are freed by reference
    counting, and full collections walking the process heap were most of a check's CPU in one batch of two.
    """
    with paused_gc():
        await _check_accounts(conn, ids, counts)


async def _check_accounts(conn: AsyncConnection, ids: list[uuid.UUID], counts: dict[str, int]) -> None:
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
