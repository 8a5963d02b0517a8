"""Domain metrics for Prometheus, exported by Litestar's PrometheusController at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDERS = Counter("tradedesk_orders_total", "Orders by type and resulting status", ["type", "status"])
FILLS = Counter("tradedesk_fills_total", "Fills by liquidity", ["liquidity"])
PLACEMENT_RETRIES = Counter(
    "tradedesk_placement_retries_total",
    "Placements whose optimistic write lost a race and were decided again under row locks, by changed row",
    ["changed"],
)
PLACEMENT_SNAPSHOTS = Counter(
    "tradedesk_placement_snapshots_total",
    "Placements tried on the state the account's previous order left (one round trip), by outcome: used, "
    "stale (a row changed: read and decided again), rejected or client_order_id_used (decided on a fresh read)",
    ["result"],
)
RISK_REJECTIONS = Counter("tradedesk_risk_rejections_total", "Pre-trade risk rejections", ["limit_type"])
BACKTESTS = Counter("tradedesk_backtests_total", "Backtests finished by status", ["status"])
BACKTEST_SECONDS = Histogram("tradedesk_backtest_seconds", "Backtest run duration")
JOB_RUNS = Counter("tradedesk_job_runs_total", "Job runs by function and status", ["function", "status"])
JOB_DURATION = Histogram("tradedesk_job_duration_seconds", "Job durations", ["function"])
QUEUE_DEPTH = Gauge("tradedesk_queue_depth", "Queued jobs at last observation")
CACHE_EVENTS = Counter("tradedesk_cache_events_total", "Cache hits/misses/errors", ["event"])

# HTTP request metrics by route template. Recorded by RequestContextMiddleware with cached label
# children: Litestar's PrometheusMiddleware resolves `.labels()` on four metrics per request, which
# measured 25 us of a 62 us /health request here; the exposition (/metrics) is still Litestar's.
HTTP_REQUESTS = Counter(
    "tradedesk_http_requests_total", "HTTP requests by method, route template and status", ["method", "path", "status_code"]
)
HTTP_DURATION = Histogram(
    "tradedesk_http_request_duration_seconds",
    "HTTP request duration by method and route template",
    ["method", "path"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_PROGRESS = Gauge("tradedesk_http_requests_in_progress", "HTTP requests being served")

_children: dict[tuple[str, str, int], tuple[object, object]] = {}


def observe_http(method: str, path: str, status: int, seconds: float) -> None:
    key = (method, path, status)
    pair = _children.get(key)
    if pair is None:
        if len(_children) > 5000:  # unbounded route templates would be a bug; never grow without limit
            _children.clear()
        pair = (HTTP_REQUESTS.labels(method, path, str(status)), HTTP_DURATION.labels(method, path))
        _children[key] = pair
    pair[0].inc()  # type: ignore[attr-defined]
    pair[1].observe(seconds)  # type: ignore[attr-defined]

# Failed API-key authentications by what happened to them (app/domain/identity/bruteforce.py): rejected
# (plain 401), slowed (401 held back), blocked (429 while the client IP is blocked).
AUTH_FAILURES = Counter("tradedesk_auth_failures_total", "Failed API-key authentications", ["outcome"])
AUTH_IP_BLOCKS = Counter("tradedesk_auth_ip_blocks_total", "Client IPs blocked after repeated auth failures")
for _outcome in ("rejected", "slowed", "blocked"):
    AUTH_FAILURES.labels(_outcome)  # export zeros, so rate() and alerts see the series before a first failure

# Operational gauges, refreshed when /metrics is scraped (app/domain/system/ops_metrics.py): the values
# dashboards and alerts need that no request path counts (dependency health, pool use, queue, accounts).
DB_UP = Gauge("tradedesk_db_up", "1 when PostgreSQL answered SELECT 1 at the last refresh, else 0")
DB_PING_SECONDS = Gauge("tradedesk_db_ping_seconds", "Round trip of SELECT 1 at the last refresh")
REDIS_UP = Gauge("tradedesk_redis_up", "1 when Redis answered PING at the last refresh, else 0")
REDIS_PING_SECONDS = Gauge("tradedesk_redis_ping_seconds", "Round trip of PING at the last refresh")
DB_POOL_CONNECTIONS = Gauge(
    "tradedesk_db_pool_connections", "Connections of this process's pools by state (in_use, idle)",
    ["pool", "state"],
)
DB_POOL_MAX = Gauge("tradedesk_db_pool_max_connections", "Most connections a pool may open", ["pool"])
WORKERS_ALIVE = Gauge("tradedesk_workers_alive", "SAQ workers that sent a heartbeat in the last 6 s")
QUEUE_OLDEST_AGE = Gauge("tradedesk_queue_oldest_job_age_seconds", "Wait of the oldest ready job (0: none)")
JOB_FAILURES_LAST_HOUR = Gauge("tradedesk_job_failures_last_hour", "Failed or timed-out job runs, fleet")
ACCOUNTS = Gauge("tradedesk_accounts", "Accounts by trading state", ["trading_state"])
SCHEDULE_OVERDUE = Gauge(
    "tradedesk_schedule_overdue_seconds", "How far an enabled schedule's next run is past (0: on time)",
    ["schedule"],
)
# Set by whichever process runs the job (workers export it on --metrics-port).
JOB_LAST_SUCCESS = Gauge(
    "tradedesk_job_last_success_timestamp_seconds", "Unix time of the last successful run", ["function"]
)
# Streams (app/domain/streams)
STREAM_CONNECTIONS = Gauge("tradedesk_stream_connections", "Open WebSocket and SSE stream connections")
STREAM_MESSAGES = Counter("tradedesk_stream_messages_total", "Messages queued to stream clients", ["type"])
STREAM_CLOSED = Counter("tradedesk_stream_closed_total", "Stream connections closed by the server", ["reason"])
STREAM_PUBLISH_FAILURES = Counter(
    "tradedesk_stream_publish_failures_total", "Stream messages that could not be handed to the backend"
)
STREAM_PUBLISH_SKIPPED = Counter(
    "tradedesk_stream_publish_skipped_total",
    "Account-scoped stream messages neither built nor published: no subscriber in any process",
    ["type"],
)
STREAM_GAP_FILLS = Counter(
    "tradedesk_stream_gap_fills_total", "trade_update gaps filled from the durable log (late or lost publishes)"
)
HEARTBEAT_LAG = Histogram(
    "tradedesk_stream_heartbeat_fanout_seconds", "Time to queue one heartbeat to every stream client of a process"
)
