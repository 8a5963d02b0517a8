"""Job keys, stored-result sizes and the columns every backtest read selects."""

from __future__ import annotations

import uuid

from app.domain.backtesting.models import Backtest
from app.lib.log import get_logger

log = get_logger("app.backtests")
RUN_JOB = "backtest.run"
FAN_OUT_JOB = "backtest.fan_out"
# Stored equity curves are downsampled to this many points; the equity endpoint and the report
# downsample further from there.
STORED_EQUITY_POINTS = 5_000
RESULT_CACHE_TTL = 600
REPORT_TOKEN_TTL = 300
BACKTEST_COLS = (
    Backtest.id,
    Backtest.status,
    Backtest.progress,
    Backtest.strategy,
    Backtest.params,
    Backtest.symbol,
    Backtest.timeframe,
    Backtest.start,
    Backtest.end,
    Backtest.initial_cash,
    Backtest.commission,
    Backtest.slippage_bps,
    Backtest.metrics,
    Backtest.error,
    Backtest.input_hash,
    Backtest.job_key,
    Backtest.sweep_id,
    Backtest.owner_id,
    Backtest.created_at,
    Backtest.started_at,
    Backtest.finished_at,
    Backtest.kind,
)


def job_key(backtest_id: uuid.UUID) -> str:
    return f"backtest:{backtest_id}"


def sweep_job_key(sweep_id: uuid.UUID) -> str:
    return f"sweep:{sweep_id}"
