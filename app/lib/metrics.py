"""Domain metrics for Prometheus, exported by Litestar's PrometheusController at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDERS = Counter("tradedesk_orders_total", "Orders by type and resulting status", ["type", "status"])
FILLS = Counter("tradedesk_fills_total", "Fills by liquidity", ["liquidity"])
RISK_REJECTIONS = Counter("tradedesk_risk_rejections_total", "Pre-trade risk rejections", ["limit_type"])
BACKTESTS = Counter("tradedesk_backtests_total", "Backtests finished by status", ["status"])
BACKTEST_SECONDS = Histogram("tradedesk_backtest_seconds", "Backtest run duration")
JOB_RUNS = Counter("tradedesk_job_runs_total", "Job runs by function and status", ["function", "status"])
JOB_DURATION = Histogram("tradedesk_job_duration_seconds", "Job durations", ["function"])
QUEUE_DEPTH = Gauge("tradedesk_queue_depth", "Queued jobs at last observation")
CACHE_EVENTS = Counter("tradedesk_cache_events_total", "Cache hits/misses/errors", ["event"])
