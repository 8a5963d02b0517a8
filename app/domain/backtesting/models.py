from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Double, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col, uuid_pk


class Sweep(Base):
    __tablename__ = "backtest_sweeps"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    strategy: Mapped[str] = mapped_column(String(64))
    grid: Mapped[dict[str, Any]] = mapped_column(JSONB)
    rank_by: Mapped[str] = mapped_column(String(32))
    total: Mapped[int]
    created_at: Mapped[datetime] = created_at_col()


class Backtest(Base):
    __tablename__ = "backtests"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    sweep_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("backtest_sweeps.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(4))
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    initial_cash: Mapped[Decimal]
    commission: Mapped[Decimal]
    slippage_bps: Mapped[Decimal] = mapped_column(server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16))
    # progress is a ratio 0..1 (not money), hence a float.
    progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    input_hash: Mapped[str | None] = mapped_column(String(64))
    job_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at_col()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_backtests_owner_created", "owner_id", text("created_at DESC")),
        Index("ix_backtests_sweep", "sweep_id"),
        # The per-user quota counts only queued and running rows (app/domain/backtesting/quotas.py).
        Index(
            "ix_backtests_owner_active",
            "owner_id",
            "sweep_id",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )


class BacktestResult(Base):
    __tablename__ = "backtest_results"

    backtest_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backtests.id", ondelete="CASCADE"), primary_key=True
    )
    trades: Mapped[list[Any]] = mapped_column(JSONB)
    equity: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_col()
