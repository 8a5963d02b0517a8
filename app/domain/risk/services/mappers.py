"""Row-to-schema mappers and the column lists of the risk tables' queries."""

from __future__ import annotations

from decimal import Decimal
from math import isfinite
from typing import Any

from app.domain.risk.checks import NUMERIC_CAP
from app.domain.risk.models import RiskAlert, RiskLimit, RiskLimitAudit, RiskViolation
from app.domain.risk.schemas import (
    AlertOut,
    LimitOut,
    ViolationOut,
)
from app.lib.log import get_logger

log = get_logger("app.risk")


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


def as_float(value: Any) -> float | None:
    """A JSON-safe statistic: NaN and infinities (and None) become null."""
    if value is None:
        return None
    out = float(value)
    return out if isfinite(out) else None


def limit_out(row: Any) -> LimitOut:
    return LimitOut(*row)


def violation_out(row: Any) -> ViolationOut:
    return ViolationOut(*row)


def alert_utilisation(value: Decimal) -> float | None:
    """A stored alert utilisation as the API shows it: null where it was capped (unbounded)."""
    return as_float(value) if value < NUMERIC_CAP else None


def alert_out(row: Any) -> AlertOut:
    m = row._mapping
    return AlertOut(
        id=m["id"],
        account_id=m["account_id"],
        limit_id=m["limit_id"],
        limit_type=m["limit_type"],
        severity=m["severity"],
        utilisation=alert_utilisation(m["utilisation"]),
        message=m["message"],
        created_at=m["created_at"],
        acknowledged_at=m["acknowledged_at"],
        acknowledged_by=m["acknowledged_by"],
    )
