"""Backtests and sweeps: submission, tenant-scoped reads, cancellation, results and report links.

Visibility: a backtest (and a sweep) is visible to its owner and to admins; everyone else gets 404, as
if it did not exist. The filter is part of every SQL statement, never applied after loading.

The simulation runs on a worker (tasks.py). Everything a run needs is validated here, before a row or a
job exists: the strategy, each parameter (a bad one is a 422 naming it, never a failed job), the
instrument and that it has candles in the requested range.

One module per idea, re-exported here (callers import from this package): `common` (job keys, sizes,
columns), `rendering` (rows as answers), `strategy_params`, `bars`, `access` (visibility), `runs`
(backtests), `reports` (report pages and links), `sweeps`.
"""

from __future__ import annotations

from app.domain.backtesting.services.access import require_queue, sweep_visible, visible
from app.domain.backtesting.services.bars import candle_range, check_market, load_bars
from app.domain.backtesting.services.common import (
    BACKTEST_COLS,
    FAN_OUT_JOB,
    REPORT_TOKEN_TTL,
    RESULT_CACHE_TTL,
    RUN_JOB,
    STORED_EQUITY_POINTS,
    job_key,
    log,
    sweep_job_key,
)
from app.domain.backtesting.services.rendering import (
    MONEY_PLACES,
    backtest_out,
    clean_metrics,
    decimal_places,
    metrics_out,
    money,
    split_run_settings,
    trade_out,
)
from app.domain.backtesting.services.reports import create_report_token, redeem_report_token, report_page
from app.domain.backtesting.services.runs import (
    abort_saq_job,
    backtest_equity,
    backtest_trades,
    cancel_backtest,
    create_backtest,
    enqueue_run,
    equity_series,
    get_backtest,
    list_backtests,
    mark_unqueued,
    require_completed,
    slippage_or_zero,
    stored_result,
)
from app.domain.backtesting.services.strategy_params import (
    check_params,
    check_strategy,
    list_strategies,
    param_field,
)
from app.domain.backtesting.services.sweeps import create_sweep, expand_grid, get_sweep, sweep_heatmap

__all__ = [
    "BACKTEST_COLS",
    "FAN_OUT_JOB",
    "MONEY_PLACES",
    "REPORT_TOKEN_TTL",
    "RESULT_CACHE_TTL",
    "RUN_JOB",
    "STORED_EQUITY_POINTS",
    "abort_saq_job",
    "backtest_equity",
    "backtest_out",
    "backtest_trades",
    "cancel_backtest",
    "candle_range",
    "check_market",
    "check_params",
    "check_strategy",
    "clean_metrics",
    "create_backtest",
    "create_report_token",
    "create_sweep",
    "decimal_places",
    "enqueue_run",
    "equity_series",
    "expand_grid",
    "get_backtest",
    "get_sweep",
    "job_key",
    "list_backtests",
    "list_strategies",
    "load_bars",
    "log",
    "mark_unqueued",
    "metrics_out",
    "money",
    "param_field",
    "redeem_report_token",
    "report_page",
    "require_completed",
    "require_queue",
    "slippage_or_zero",
    "stored_result",
    "sweep_heatmap",
    "split_run_settings",
    "sweep_job_key",
    "sweep_visible",
    "trade_out",
    "visible",
]
