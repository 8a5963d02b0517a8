from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Double, ForeignKey, Index, String, text
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
    # "single" (one instrument, a strategy) or "portfolio" (its request is kept whole in `params`).
    kind: Mapped[str] = mapped_column(String(16), server_default=text("'single'"))
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
    # Portfolio runs: per-symbol quantities at sampled bars (see portfolio_tasks.result_positions).
    positions: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_col()


class WalkForward(Base):
    """A walk-forward run: its request, status and (when every window is done) the stitched result."""

    __tablename__ = "walkforwards"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    objective: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    windows_total: Mapped[int]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    created_at: Mapped[datetime] = created_at_col()
    finished_at: Mapped[datetime | None]


class WalkForwardWindow(Base):
    """One train/test window of a walk-forward run, written by the worker that ran its sweep."""

    __tablename__ = "walkforward_windows"

    walkforward_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("walkforwards.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    train_start: Mapped[int] = mapped_column(BigInteger)
    train_end: Mapped[int] = mapped_column(BigInteger)
    test_start: Mapped[int] = mapped_column(BigInteger)
    test_end: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    in_sample: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    out_of_sample: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Test-window equity (ts, equity) as run from the window's own start cash; stitched at the end.
    equity: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
