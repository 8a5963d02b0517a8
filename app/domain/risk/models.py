from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col, uuid_pk


class RiskLimit(Base):
    __tablename__ = "risk_limits"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    limit_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[Decimal]
    symbol: Mapped[str | None] = mapped_column(String(32))
    warn_at_pct: Mapped[Decimal] = mapped_column(server_default=text("80"))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    auto_reduce_only: Mapped[bool] = mapped_column(server_default=text("true"))
    # Edge-triggered alerting state: None / warning / critical (see risk/alerts.py).
    alert_level: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()

    # The batch read of the monitors asks per account whether it has an order-rate limit (and only then
    # counts its last minute's orders): an index-only probe here instead of a heap visit of every limit.
    __table_args__ = (
        Index(
            "ix_risk_limits_order_rate",
            "account_id",
            postgresql_where=text("enabled AND limit_type = 'max_orders_per_minute'"),
        ),
    )


class RiskLimitAudit(Base):
    __tablename__ = "risk_limit_audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    limit_id: Mapped[uuid.UUID] = mapped_column(index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    actor_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(16))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_col()


class RiskViolation(Base):
    __tablename__ = "risk_violations"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    limit_id: Mapped[uuid.UUID | None]
    limit_type: Mapped[str] = mapped_column(String(32))
    limit_value: Mapped[Decimal]
    would_be: Mapped[Decimal]
    phase: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_col()

    __table_args__ = (Index("ix_risk_violations_account_created", "account_id", text("created_at DESC")),)


class RiskAlert(Base):
    __tablename__ = "risk_alerts"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    limit_id: Mapped[uuid.UUID]
    limit_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    utilisation: Mapped[Decimal]
    message: Mapped[str]
    created_at: Mapped[datetime] = created_at_col()
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[uuid.UUID | None]

    __table_args__ = (Index("ix_risk_alerts_account_created", "account_id", text("created_at DESC")),)


class RiskGroup(Base):
    """A desk, a strategy family, or the firm (the single top group, `is_firm`). Groups form a tree by
    `parent_id`; an account belongs to at most one group (`accounts.group_id`) and so to all its
    ancestors."""

    __tablename__ = "risk_groups"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("risk_groups.id", ondelete="RESTRICT"))
    is_firm: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()
    # Moves with every order placed under the group's limits and every change of its limits or members:
    # the optimistic group guard of placement (app/domain/risk/group_pretrade.py).
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (
        Index("uq_risk_groups_firm", "is_firm", unique=True, postgresql_where=text("is_firm")),
        CheckConstraint("NOT is_firm OR parent_id IS NULL", name="firm_is_top"),
    )


class RiskGroupLimit(Base):
    """A limit on the sum over every account of a group (and of its sub-groups)."""

    __tablename__ = "risk_group_limits"

    id: Mapped[uuid.UUID] = uuid_pk()
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("risk_groups.id", ondelete="CASCADE"), index=True)
    limit_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[Decimal]
    symbol: Mapped[str | None] = mapped_column(String(32))
    warn_at_pct: Mapped[Decimal] = mapped_column(server_default=text("80"))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    # Edge-triggered alerting state, as an account limit's (risk/alerts.py; risk/group_alerts.py).
    alert_level: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()


class RiskGroupAlert(Base):
    """An alert on a group limit: raised once per crossing of its warning line or of the limit."""

    __tablename__ = "risk_group_alerts"

    id: Mapped[uuid.UUID] = uuid_pk()
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("risk_groups.id", ondelete="CASCADE"))
    limit_id: Mapped[uuid.UUID]
    limit_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    utilisation: Mapped[Decimal]
    message: Mapped[str]
    created_at: Mapped[datetime] = created_at_col()
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[uuid.UUID | None]

    __table_args__ = (Index("ix_risk_group_alerts_group_created", "group_id", text("created_at DESC")),)


class RiskScenario(Base):
    """A saved stress scenario: `shocks` or a historical window, run by id or daily by a job (`daily`),
    which keeps the firm-level summary of its last run."""

    __tablename__ = "risk_scenarios"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    shocks: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))  # None is SQL NULL
    historical_start: Mapped[datetime | None]
    historical_end: Mapped[datetime | None]
    daily: Mapped[bool] = mapped_column(server_default=text("true"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_col()
    updated_at: Mapped[datetime] = created_at_col()
    last_run_at: Mapped[datetime | None]
    last_run: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))

    __table_args__ = (
        CheckConstraint(
            "(shocks IS NULL) <> (historical_start IS NULL AND historical_end IS NULL) "
            "AND (historical_start IS NULL) = (historical_end IS NULL) "
            "AND (historical_end IS NULL OR historical_end > historical_start)",
            name="one_kind",
        ),
    )
