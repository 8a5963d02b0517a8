"""Writes the provisioned Grafana dashboards (dashboards/*.json) from the panel lists below.

Run `python deploy/observability/grafana/build_dashboards.py` after changing a panel; a test checks the
JSON files match this script and runs every panel's query against a live Prometheus scraping Tradedesk
(tests/integration/test_observability.py). Queries use only metrics Tradedesk exports and the recording
rules in ../prometheus/recording-rules.yml; `$__rate_interval` is Grafana's own variable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "tradedesk-prometheus"}
OUT = Path(__file__).parent / "dashboards"

# (title, unit, [(expr, legend)], panel type)
Panel = tuple[str, str, list[tuple[str, str]], str]

RATE = "[$__rate_interval]"
ORDERS_ROUTE = 'path="/api/v1/accounts/{account_id}/orders",method="POST"'

DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "tradedesk-api": (
        "Tradedesk / API",
        [
            (
                "Requests per second by route",
                "reqps",
                [("sum by (path) (tradedesk:http_requests:rate1m)", "{{path}}")],
                "timeseries",
            ),
            (
                "Responses by status",
                "reqps",
                [("sum by (status_code) (tradedesk:http_requests:rate1m)", "{{status_code}}")],
                "timeseries",
            ),
            ("5xx ratio (5m)", "percentunit", [("tradedesk:http_5xx:ratio_rate5m", "5xx")], "timeseries"),
            (
                "p99 latency by route (5m)",
                "s",
                [("tradedesk:http_request_duration_seconds_by_path:p99_5m", "{{path}}")],
                "timeseries",
            ),
            (
                "p50 latency by route (5m)",
                "s",
                [("tradedesk:http_request_duration_seconds_by_path:p50_5m", "{{path}}")],
                "timeseries",
            ),
            (
                "Requests in progress",
                "short",
                [("sum by (instance) (tradedesk_http_requests_in_progress)", "{{instance}}")],
                "timeseries",
            ),
            (
                "Failed API keys by outcome",
                "reqps",
                [(f"sum by (outcome) (rate(tradedesk_auth_failures_total{RATE}))", "{{outcome}}")],
                "timeseries",
            ),
            (
                "Client IPs blocked (1h)",
                "short",
                [("sum(increase(tradedesk_auth_ip_blocks_total[1h]))", "blocked")],
                "stat",
            ),
        ],
    ),
    "tradedesk-trading": (
        "Tradedesk / Trading",
        [
            (
                "Orders per second by status",
                "ops",
                [("sum by (status) (tradedesk:orders:rate1m)", "{{status}}")],
                "timeseries",
            ),
            (
                "Fills per second by liquidity",
                "ops",
                [("sum by (liquidity) (tradedesk:fills:rate1m)", "{{liquidity}}")],
                "timeseries",
            ),
            (
                "Order rejections by reason",
                "ops",
                [
                    (
                        f"sum by (limit_type) (rate(tradedesk_risk_rejections_total{RATE}))",
                        "risk: {{limit_type}}",
                    ),
                    (
                        f'sum(rate(tradedesk_http_requests_total{{{ORDERS_ROUTE},status_code="422"}}{RATE}))',
                        "rules (422)",
                    ),
                ],
                "timeseries",
            ),
            (
                "Risk breaches (1h)",
                "short",
                [("sum(increase(tradedesk_risk_rejections_total[1h]))", "pre-trade")],
                "stat",
            ),
            (
                "Accounts by trading state",
                "short",
                [("max by (trading_state) (tradedesk_accounts)", "{{trading_state}}")],
                "timeseries",
            ),
            (
                "Halted accounts",
                "short",
                [('max(tradedesk_accounts{trading_state="halted"})', "halted")],
                "stat",
            ),
        ],
    ),
    "tradedesk-jobs": (
        "Tradedesk / Jobs",
        [
            ("Queue depth", "short", [("max(tradedesk_queue_depth)", "queued")], "timeseries"),
            (
                "Oldest queued job age",
                "s",
                [("max(tradedesk_queue_oldest_job_age_seconds)", "oldest")],
                "timeseries",
            ),
            ("Workers alive", "short", [("max(tradedesk_workers_alive)", "workers")], "stat"),
            (
                "Job failures (last hour, fleet)",
                "short",
                [("max(tradedesk_job_failures_last_hour)", "failures")],
                "stat",
            ),
            (
                "Job runs by function and status",
                "ops",
                [
                    (
                        f"sum by (function, status) (rate(tradedesk_job_runs_total{RATE}))",
                        "{{function}} {{status}}",
                    )
                ],
                "timeseries",
            ),
            (
                "Backtest duration",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(tradedesk_backtest_seconds_bucket{RATE})))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.95, sum by (le) (rate(tradedesk_backtest_seconds_bucket{RATE})))",
                        "p95",
                    ),
                ],
                "timeseries",
            ),
            (
                "Schedule lag",
                "s",
                [("max by (schedule) (tradedesk_schedule_overdue_seconds)", "{{schedule}}")],
                "timeseries",
            ),
            (
                "Risk monitor: time since last success",
                "s",
                [
                    (
                        'time() - max(tradedesk_job_last_success_timestamp_seconds{function="risk.monitor_all"})',
                        "age",
                    )
                ],
                "stat",
            ),
        ],
    ),
    "tradedesk-dependencies": (
        "Tradedesk / PostgreSQL pool and Redis",
        [
            (
                "Scrape targets up",
                "short",
                [('up{job=~"tradedesk-api|tradedesk-worker"}', "{{job}} {{instance}}")],
                "timeseries",
            ),
            ("PostgreSQL up", "short", [("min(tradedesk_db_up)", "up")], "stat"),
            (
                "PostgreSQL SELECT 1 round trip",
                "s",
                [("max by (instance) (tradedesk_db_ping_seconds)", "{{instance}}")],
                "timeseries",
            ),
            (
                "Pool connections in use",
                "short",
                [
                    ('sum by (pool) (tradedesk_db_pool_connections{state="in_use"})', "{{pool}} in use"),
                    ("sum by (pool) (tradedesk_db_pool_max_connections)", "{{pool}} max"),
                ],
                "timeseries",
            ),
            (
                "Pool idle connections",
                "short",
                [('sum by (pool) (tradedesk_db_pool_connections{state="idle"})', "{{pool}}")],
                "timeseries",
            ),
            ("Redis up", "short", [("min(tradedesk_redis_up)", "up")], "stat"),
            (
                "Redis PING round trip",
                "s",
                [("max by (instance) (tradedesk_redis_ping_seconds)", "{{instance}}")],
                "timeseries",
            ),
            (
                "Cache events",
                "ops",
                [(f"sum by (event) (rate(tradedesk_cache_events_total{RATE}))", "{{event}}")],
                "timeseries",
            ),
        ],
    ),
}


def panel_json(index: int, panel: Panel) -> dict:
    title, unit, targets, kind = panel
    width = 12 if kind == "timeseries" else 6
    return {
        "id": index + 1,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard_json(uid: str, title: str, panels: list[Panel]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "tags": ["tradedesk"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [panel_json(i, p) for i, p in enumerate(panels)],
    }


def render() -> dict[str, str]:
    return {
        f"{uid}.json": json.dumps(dashboard_json(uid, title, panels), indent=2) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
