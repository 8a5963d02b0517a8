"""Settings read once from the environment.

Kept as a frozen dataclass (no pydantic in app/): every knob has a default so that `make run` works with no
configuration at all; `tradedesk check` reports the ones that are unsafe for production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from app import __version__


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    value = _env(name)
    return int(value) if value is not None else default


def _float(name: str, default: float) -> float:
    value = _env(name)
    return float(value) if value is not None else default


def _bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Settings:
    env: str = "dev"
    version: str = __version__
    # Connections. None means "embedded": the CLI starts a project-local PostgreSQL and keeps queue,
    # cache and rate limits out of Redis (see app/lib/embedded.py).
    database_url: str | None = None
    redis_url: str | None = None
    queue_url: str | None = None
    queue_name: str = "tradedesk"
    redis_prefix: str = "td"
    admin_api_key: str | None = None
    # In-process SAQ workers (embedded mode runs them inside the API process).
    workers_in_process: bool = False
    worker_concurrency: int = 10
    # SIGTERM to a worker: running jobs get part of this to finish, are then cancelled (and re-queued),
    # and the process is gone within it (app/lib/jobs.py: shutdown_budget).
    worker_shutdown_seconds: float = 10.0
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # Raw asyncpg connections for placement, validation and the orders list (app/lib/db.py: create_order_pool).
    # 8: more busy connections than a few per database core cost PostgreSQL CPU per order (20 on 2 cores:
    # 0.35-0.47 ms per placement against 0.27-0.36 ms with 6-12; docs/BENCHMARKS.md), fewer starve it.
    db_order_pool_size: int = 8
    db_pool_timeout: float = 5.0
    db_statement_timeout_ms: int = 15_000
    log_level: str = "INFO"
    log_format: str = "json"
    data_dir: Path = field(default_factory=lambda: Path(".data"))
    # Limits per minute, per user (or per IP for anonymous requests).
    rate_limit_read: int = 6_000
    rate_limit_write: int = 1_200
    rate_limit_orders: int = 600
    rate_limit_anonymous: int = 300
    rate_limit_window_seconds: int = 60
    idempotency_ttl_seconds: int = 86_400
    max_body_bytes: int = 1 * 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024
    cache_ttl_seconds: int = 30
    key_cache_seconds: float = 1.0
    default_slippage_bps: float = 0.0
    access_log: bool = True
    # The desk (web front-end): how long a sign-in lasts, and whether its cookie is `Secure` even on plain
    # HTTP (behind a TLS-terminating proxy; over direct TLS it always is).
    desk_session_seconds: int = 8 * 3600
    desk_cookie_secure: bool = False
    # Bearer token /metrics asks for; None (the default) leaves it open, for a private network.
    metrics_token: str | None = None
    # Per-user caps that keep one account from taking what is shared: live (neither revoked nor expired)
    # API keys, and backtests / sweeps waiting or running on the workers.
    api_keys_max_per_user: int = 20
    backtests_max_active_per_user: int = 20
    sweeps_max_active_per_user: int = 2
    # Brute-force protection per client IP (app/domain/identity/bruteforce.py).
    auth_failure_window_seconds: int = 300
    auth_slowdown_after: int = 5
    auth_slowdown_base_ms: int = 250
    auth_slowdown_max_ms: int = 5_000
    auth_block_after: int = 20
    auth_block_seconds: int = 900
    # Operational gauges are refreshed by a /metrics scrape at most this often per process.
    metrics_refresh_seconds: float = 5.0
    # `tradedesk worker` serves its own Prometheus metrics (job runs, durations) on this port; 0: off.
    worker_metrics_port: int = 0
    # `serve --seed-demo` (make run) starts a simulated live feed of the demo instruments.
    demo_simulation: bool = True
    # Streams (docs/STREAMING.md): WebSocket + SSE connections per user across all API processes, messages
    # a client may fall behind before it is closed (4008), seconds between heartbeats.
    stream_max_connections_per_user: int = 20
    stream_buffer_messages: int = 1_000
    stream_heartbeat_seconds: float = 15.0

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def effective_queue_url(self) -> str | None:
        return self.queue_url or self.redis_url

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            env=_env("TRADEDESK_ENV", "dev") or "dev",
            database_url=_env("DATABASE_URL"),
            redis_url=_env("REDIS_URL"),
            queue_url=_env("TRADEDESK_QUEUE_URL"),
            queue_name=_env("TRADEDESK_QUEUE_NAME", "tradedesk") or "tradedesk",
            redis_prefix=_env("TRADEDESK_REDIS_PREFIX", "td") or "td",
            admin_api_key=_env("TRADEDESK_ADMIN_API_KEY"),
            workers_in_process=_bool("TRADEDESK_WORKERS_IN_PROCESS", _env("REDIS_URL") is None),
            worker_concurrency=_int("TRADEDESK_WORKER_CONCURRENCY", 10),
            worker_shutdown_seconds=_float("WORKER_SHUTDOWN_SECONDS", 10.0),
            db_pool_size=_int("DB_POOL_SIZE", 20),
            db_max_overflow=_int("DB_MAX_OVERFLOW", 10),
            db_order_pool_size=_int("DB_ORDER_POOL_SIZE", 8),
            db_pool_timeout=_float("DB_POOL_TIMEOUT", 5.0),
            db_statement_timeout_ms=_int("DB_STATEMENT_TIMEOUT_MS", 15_000),
            log_level=(_env("LOG_LEVEL", "INFO") or "INFO").upper(),
            log_format=_env("LOG_FORMAT", "json") or "json",
            data_dir=Path(_env("TRADEDESK_DATA_DIR", ".data") or ".data"),
            rate_limit_read=_int("RATE_LIMIT_READ_PER_MINUTE", 6_000),
            rate_limit_write=_int("RATE_LIMIT_WRITE_PER_MINUTE", 1_200),
            rate_limit_orders=_int("RATE_LIMIT_ORDERS_PER_MINUTE", 600),
            rate_limit_anonymous=_int("RATE_LIMIT_ANONYMOUS_PER_MINUTE", 300),
            rate_limit_window_seconds=_int("RATE_LIMIT_WINDOW_SECONDS", 60),
            idempotency_ttl_seconds=_int("IDEMPOTENCY_TTL_SECONDS", 86_400),
            max_body_bytes=_int("MAX_BODY_BYTES", 1 * 1024 * 1024),
            max_upload_bytes=_int("MAX_UPLOAD_BYTES", 512 * 1024 * 1024),
            cache_ttl_seconds=_int("CACHE_TTL_SECONDS", 30),
            key_cache_seconds=_float("API_KEY_CACHE_SECONDS", 1.0),
            access_log=_bool("TRADEDESK_ACCESS_LOG", True),
            desk_session_seconds=_int("DESK_SESSION_SECONDS", 8 * 3600),
            desk_cookie_secure=_bool("DESK_COOKIE_SECURE", False),
            metrics_token=_env("METRICS_TOKEN"),
            api_keys_max_per_user=_int("API_KEYS_MAX_PER_USER", 20),
            backtests_max_active_per_user=_int("BACKTESTS_MAX_ACTIVE_PER_USER", 20),
            sweeps_max_active_per_user=_int("SWEEPS_MAX_ACTIVE_PER_USER", 2),
            auth_failure_window_seconds=_int("AUTH_FAILURE_WINDOW_SECONDS", 300),
            auth_slowdown_after=_int("AUTH_SLOWDOWN_AFTER", 5),
            auth_slowdown_base_ms=_int("AUTH_SLOWDOWN_BASE_MS", 250),
            auth_slowdown_max_ms=_int("AUTH_SLOWDOWN_MAX_MS", 5_000),
            auth_block_after=_int("AUTH_BLOCK_AFTER", 20),
            auth_block_seconds=_int("AUTH_BLOCK_SECONDS", 900),
            metrics_refresh_seconds=_float("METRICS_REFRESH_SECONDS", 5.0),
            worker_metrics_port=_int("TRADEDESK_WORKER_METRICS_PORT", 0),
            demo_simulation=_bool("TRADEDESK_DEMO_SIMULATION", True),
            stream_max_connections_per_user=_int("STREAM_MAX_CONNECTIONS_PER_USER", 20),
            stream_buffer_messages=_int("STREAM_BUFFER_MESSAGES", 1_000),
            stream_heartbeat_seconds=_float("STREAM_HEARTBEAT_SECONDS", 15.0),
        )

    def problems(self, *, embedded: bool = False) -> list[str]:
        """Reasons this configuration is not fit for production (used by `tradedesk check`).

        `embedded`: the embedded development setup was chosen (no DATABASE_URL): missing URLs are expected."""
        found: list[str] = []
        if self.database_url is None and not embedded:
            found.append("DATABASE_URL is not set (embedded PostgreSQL is for development only)")
        if self.redis_url is None and not embedded:
            found.append("REDIS_URL is not set (in-memory cache/rate limits do not span processes)")
        if self.admin_api_key and (len(self.admin_api_key) < 32 or self.admin_api_key.startswith("dev")):
            found.append("TRADEDESK_ADMIN_API_KEY is short or a development default")
        if self.log_format != "json":
            found.append("LOG_FORMAT should be json in production")
        return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
