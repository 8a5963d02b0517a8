"""Post-trade monitoring: what a check of one account decides (`decide`, pure) and the set-based sweep.

`decide` is the single rule for every post-trade check (the per-account monitor, the sweep and the
event-driven check after a price update): the limits breached now (each recorded as a violation), each
limit's edge-triggered alert transition (risk/alerts.py) and, for an active account, the switch to
reduce_only when a loss stop with `auto_reduce_only` is breached.

The sweep (`sweep_batch`) checks a batch of accounts with a fixed number of statements instead of one
transaction per account (docs/BENCHMARKS.md, "Risk at desk scale": 10,000 accounts went from 33-44 s to
about a second):

1. read: the batch's accounts (with their row versions), positions and enabled limits, three statements,
   no locks (risk/portfolios.py);
2. decide every account in Python, exactly as the per-account monitor does;
3. write, in one transaction: lock, in id order, every account that has something to write and compare
   its row version with the one read. Everything a check decides on except prices moves the account
   row (fills, placements, cancels, limit changes, trading-state changes), so an account whose row is
   unchanged was decided on current state; one whose row moved is left out of the batch write and
   checked again on its own (`stale`, run through the per-account monitor by the caller). Then one
   statement per kind of write: peaks and reduce_only switches (with their audit rows), violations,
   alert transitions with their alerts.

Alert transitions are compare-and-set (`alert_level IS NOT DISTINCT FROM` the level the decision read),
so two checkers of one limit (the sweep, the per-account monitor, an event-driven check) raise one alert
per crossing: the loser's transition matches no row and inserts no alert. Accounts are locked in id
order, as the price path locks the accounts it fills, so the sweep cannot deadlock with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.audit.services import record as audit
from app.domain.risk import alerts as alerting
from app.domain.risk import checks, stress
from app.domain.risk.portfolios import Portfolio, as_books, load_portfolios
from app.lib.db import tx, utcnow
from app.lib.log import get_logger

log = get_logger("app.risk")

_HUNDRED = Decimal(100)


def as_check_limit(row: Any) -> checks.Limit:
    return checks.Limit(
        id=str(row.id),
        limit_type=row.limit_type,
        value=row.value,
        symbol=row.symbol,
        enabled=row.enabled,
        warn_at_pct=row.warn_at_pct,
    )


def alert_message(row: Any, severity: str, util: Decimal) -> str:
    scope = f" ({row.symbol})" if row.symbol else ""
    pct = f"{(util * _HUNDRED):.2f}%" if util.is_finite() else "unbounded"
    if severity == alerting.CRITICAL:
        return f"{row.limit_type}{scope} is at {pct} of its limit {row.value}"
    return f"{row.limit_type}{scope} is at {pct} of its limit {row.value} (warning at {row.warn_at_pct}%)"


@dataclass(frozen=True)
class Transition:
    """A limit's alert state moves from `old` to `new`; `severity` is the alert to raise (or None)."""

    row: Any
    old: str | None
    new: str | None
    severity: str | None
    utilisation: Decimal


@dataclass
class Decision:
    breaches: list[checks.Breach] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    stop: checks.Breach | None = None  # the loss stop that switches the account to reduce_only

    @property
    def reduce_only_reason(self) -> str | None:
        if self.stop is None:
            return None
        s = self.stop
        return f"automatic: {s.limit_type} limit {s.limit_id} breached ({s.message})"


def decide(state: checks.PortfolioState, rows: Sequence[Any], trading_state: str) -> Decision:
    """The post-trade check of one account (pure). `rows` are its enabled limits with `alert_level` and
    `auto_reduce_only`."""
    limits = [as_check_limit(r) for r in rows]
    breaches, utilisations = checks.assess(state, limits)
    decision = Decision(breaches=breaches)
    for row, util in zip(rows, utilisations, strict=True):
        if util is None:
            continue
        level, severity = alerting.next_alert(row.alert_level, util * _HUNDRED, row.warn_at_pct)
        if level != row.alert_level:  # an alert is raised only on a move up
            decision.transitions.append(Transition(row, row.alert_level, level, severity, util))
    stops = [b for b in decision.breaches if b.limit_type in checks.STOP_TYPES]
    if trading_state == "active" and stops:
        by_id = {str(r.id): r for r in rows}
        decision.stop = next((b for b in stops if by_id[b.limit_id].auto_reduce_only), None)
    return decision


def violation_detail(breach: checks.Breach, equity: Decimal, actor_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "message": breach.message,
        "symbol": breach.symbol,
        "equity": str(equity),
        "checked_by": str(actor_id) if actor_id else None,
    }


# Relative margin of the float screen below. Its figures are within about 1e-14 (relative) of the exact
# ones: equity, peak and daily PnL are converted from their exact Decimal values, and the rest are sums of
# a few products of converted numbers; a limit within the margin of its warning line is decided exactly.
SCREEN_MARGIN = 1e-9


def quiet(portfolios: Sequence[Portfolio]) -> list[bool]:
    """Which accounts `decide` would find nothing for (no breach, no alert transition, hence no stop),
    screened in float64 with numpy over the whole batch: each limit a price moves is measured at once by
    the stress core with no shock (risk/stress.py computes the monitor's figures), and an account is quiet
    when every limit has no alert state and is clearly below its warning line (`warn_at_pct`, at most
    100% of the limit). An account with an alert state, a limit within SCREEN_MARGIN of its warning line,
    or a quantity or order-count limit (not measured here) is decided exactly with `decide`. Most accounts
    sit well under their limits, and the exact `Decimal` decision is most of a check's cost
    (docs/BENCHMARKS.md, "Risk at desk scale")."""
    loud = [
        any(
            r.alert_level is not None
            or (r.limit_type not in stress.KIND_CODE and r.limit_type not in checks.PER_ORDER_TYPES)
            for r in p.limits
        )
        for p in portfolios
    ]
    symbols = sorted({s for p in portfolios for s in p.state.positions})
    books, rows = as_books(portfolios, symbols)
    if rows:
        used = stress.run(books, np.zeros((1, len(symbols)))).used[0]
        warn = [getattr(r, "warn_f", None) or float(min(r.warn_at_pct, 100)) / 100 for r in rows]
        line = np.array(warn, dtype=np.float64) * books.limit_value * (1.0 - SCREEN_MARGIN)
        near = ~(used < line)  # inf (no equity left) and nan are near too
        for i in np.flatnonzero(np.bincount(books.limit_account[near], minlength=len(portfolios))):
            loud[i] = True
    return [not x for x in loud]


# ------------------------------------------------------------------------------------------- the sweep

_LOCK_SQL = text(
    """
    SELECT id, xmin::text AS version FROM accounts
     WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
    """
)
_ACCOUNTS_SQL = text(
    """
    WITH v AS (
      SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:peaks AS numeric[]), CAST(:reasons AS text[]))
                 AS v(id, peak, reason)
    ), changed AS (
      UPDATE accounts a
         SET peak_equity = greatest(a.peak_equity, coalesce(v.peak, a.peak_equity)),
             trading_state = CASE WHEN v.reason IS NULL THEN a.trading_state ELSE 'reduce_only' END,
             trading_state_reason = CASE WHEN v.reason IS NULL THEN a.trading_state_reason ELSE v.reason END,
             updated_at = CASE WHEN v.reason IS NULL THEN a.updated_at ELSE :now END
        FROM v
       WHERE a.id = v.id
      RETURNING a.id, v.reason
    )
    INSERT INTO trading_state_changes (account_id, actor_id, old_state, new_state, reason, created_at)
    SELECT id, NULL, 'active', 'reduce_only', reason, :now FROM changed WHERE reason IS NOT NULL
    """
)
_OWNERS_SQL = text("SELECT id, owner_id FROM accounts WHERE id = ANY(CAST(:ids AS uuid[]))")
_VIOLATIONS_SQL = text(
    """
    INSERT INTO risk_violations (id, account_id, limit_id, limit_type, limit_value, would_be, phase, detail,
                                 created_at)
    SELECT v.id, v.account_id, v.limit_id, v.limit_type, v.limit_value, v.would_be, 'post_trade',
           CAST(v.detail AS jsonb), :now
      FROM unnest(CAST(:ids AS uuid[]), CAST(:accounts AS uuid[]), CAST(:limits AS uuid[]),
                  CAST(:types AS text[]), CAST(:values AS numeric[]), CAST(:would_be AS numeric[]),
                  CAST(:details AS text[]))
           AS v(id, account_id, limit_id, limit_type, limit_value, would_be, detail)
    """
)
_ALERTS_SQL = text(
    """
    WITH t AS (
      SELECT * FROM unnest(CAST(:limits AS uuid[]), CAST(:old AS text[]), CAST(:new AS text[]))
                 AS t(limit_id, old, new)
    ), moved AS (
      UPDATE risk_limits r SET alert_level = t.new
        FROM t
       WHERE r.id = t.limit_id AND r.enabled AND r.alert_level IS NOT DISTINCT FROM t.old
      RETURNING r.id
    )
    INSERT INTO risk_alerts (id, account_id, limit_id, limit_type, severity, utilisation, message, created_at)
    SELECT a.id, a.account_id, a.limit_id, a.limit_type, a.severity, a.utilisation, a.message, :now
      FROM unnest(CAST(:alert_ids AS uuid[]), CAST(:alert_accounts AS uuid[]), CAST(:alert_limits AS uuid[]),
                  CAST(:alert_types AS text[]), CAST(:severities AS text[]), CAST(:utilisations AS numeric[]),
                  CAST(:messages AS text[]))
           AS a(id, account_id, limit_id, limit_type, severity, utilisation, message)
      JOIN moved ON moved.id = a.limit_id
    RETURNING id
    """
)


@dataclass
class SweepResult:
    accounts: int = 0
    violations: int = 0
    alerts: int = 0
    reduce_only: int = 0
    stale: list[uuid.UUID] = field(default_factory=list)  # row moved since the read: check one by one


async def sweep_batch(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> SweepResult:
    """Check the accounts of `ids` set-based (see the module docstring). Accounts that no longer exist
    are skipped; `stale` ones are left to the caller."""
    async with tx(conn):
        # The row versions come with the accounts, the first of the batch's reads: an account whose row is
        # still this version when it is locked below did not change between this read and the lock, so
        # the state read in between (its positions and limits, read after) is current.
        portfolios = await load_portfolios(conn, ids)
    versions = {p.id: p.version for p in portfolios}
    result = SweepResult()
    decided = []
    for p, calm in zip(portfolios, quiet(portfolios), strict=True):
        decision = Decision() if calm else decide(p.state, p.limits, p.trading_state)
        writes = decision.breaches or decision.transitions or decision.stop or p.peak > p.stored_peak
        decided.append((p, decision, writes))
    to_lock = sorted(p.id for p, _, writes in decided if writes)
    now = utcnow()
    async with tx(conn):
        current = dict((await conn.execute(_LOCK_SQL, {"ids": to_lock})).all()) if to_lock else {}
        peaks: dict[str, list[Any]] = {"ids": [], "peaks": [], "reasons": []}
        violations: dict[str, list[Any]] = {
            k: [] for k in ("ids", "accounts", "limits", "types", "values", "would_be", "details")
        }
        alerts: dict[str, list[Any]] = {
            k: []
            for k in (
                "limits", "old", "new", "alert_ids", "alert_accounts", "alert_limits", "alert_types",
                "severities", "utilisations", "messages",
            )
        }  # fmt: skip
        for p, decision, writes in decided:
            if not writes:
                result.accounts += 1
                continue
            if p.id not in current:
                continue  # deleted since the read
            if current[p.id] != versions.get(p.id):
                result.stale.append(p.id)
                continue
            result.accounts += 1
            reason = decision.reduce_only_reason
            if reason is not None or p.peak > p.stored_peak:
                peaks["ids"].append(p.id)
                peaks["peaks"].append(p.peak if p.peak > p.stored_peak else None)
                peaks["reasons"].append(reason)
                if reason is not None:
                    result.reduce_only += 1
                    stop_type = decision.stop.limit_type if decision.stop else None
                    log.warning("risk_auto_reduce_only", account_id=str(p.id), limit_type=stop_type)
            for b in decision.breaches:
                violations["ids"].append(uuid.uuid4())
                violations["accounts"].append(p.id)
                violations["limits"].append(uuid.UUID(b.limit_id))
                violations["types"].append(b.limit_type)
                violations["values"].append(b.limit_value)
                violations["would_be"].append(checks.storable(b.would_be))
                violations["details"].append(json.dumps(violation_detail(b, p.equity, None)))
            for t in decision.transitions:
                alerts["limits"].append(t.row.id)
                alerts["old"].append(t.old)
                alerts["new"].append(t.new)
                if t.severity is not None:
                    alerts["alert_ids"].append(uuid.uuid4())
                    alerts["alert_accounts"].append(p.id)
                    alerts["alert_limits"].append(t.row.id)
                    alerts["alert_types"].append(t.row.limit_type)
                    alerts["severities"].append(t.severity)
                    alerts["utilisations"].append(checks.storable(t.utilisation))
                    alerts["messages"].append(alert_message(t.row, t.severity, t.utilisation))
        if peaks["ids"]:
            await conn.execute(_ACCOUNTS_SQL, {**peaks, "now": now})
            switched = [(a, r) for a, r in zip(peaks["ids"], peaks["reasons"], strict=True) if r is not None]
            if switched:  # the security audit trail records every trading-state change, with its owner
                owners = dict((await conn.execute(_OWNERS_SQL, {"ids": [a for a, _ in switched]})).all())
                for account_id, reason in switched:
                    change = {"from": "active", "to": "reduce_only", "reason": reason, "automatic": True}
                    await audit(conn, "account.trading_state_changed", subject_user_id=owners.get(account_id),
                                account_id=account_id, details=change)
        if violations["ids"]:
            await conn.execute(_VIOLATIONS_SQL, {**violations, "now": now})
            result.violations = len(violations["ids"])
        if alerts["limits"]:
            raised = await conn.execute(_ALERTS_SQL, {**alerts, "now": now})
            result.alerts = len(raised.all())
    return result
