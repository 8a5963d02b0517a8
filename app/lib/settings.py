"""Settings read once from the environment.

Kept as a frozen dataclass (no pydantic in app/): every knob has a default so that `make run` works with no
configuration at all; `tradedesk check` reports the ones that are unsafe for production. Each field names
its environment variable and its default once, in `setting(...)`; `from_env` reads them all from that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from app import __version__

ENV = "env"  # field metadata key: the environment variable a setting is read from


def setting(env: str, default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A settings field read from environment variable `env`; its default is written here and only here."""
    return field(default=default, default_factory=default_factory, metadata={ENV: env})


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class InvalidSetting(ValueError):
    """An environment variable whose value its setting cannot take; the message names the variable."""


# Field annotations are strings here (`from __future__ import annotations`): each type a setting may have.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "str | None": str,
    "int": int,
    "float": float,
    "bool": _bool,
    "Path": Path,
}


@dataclass(frozen=True, slots=True)
class Settings:
    env: str = setting("TRADEDESK_ENV", "dev")
    version: str = __version__
    # Connections. None means "embedded": the CLI starts a project-local PostgreSQL and keeps queue,
    # cache and rate limits out of Redis (see app/lib/embedded.py).
    database_url: str | None = setting("DATABASE_URL", None)
    redis_url: str | None = setting("REDIS_URL", None)
    queue_url: str | None = setting("TRADEDESK_QUEUE_URL", None)
    queue_name: str = setting("TRADEDESK_QUEUE_NAME", "tradedesk")
    redis_prefix: str = setting("TRADEDESK_REDIS_PREFIX", "td")
    admin_api_key: str | None = setting("TRADEDESK_ADMIN_API_KEY", None)
    # In-process SAQ workers (embedded mode runs them inside the API process).
    workers_in_process: bool = setting("TRADEDESK_WORKERS_IN_PROCESS", False)
    worker_concurrency: int = setting("TRADEDESK_WORKER_CONCURRENCY", 10)
    # SIGTERM to a worker: running jobs get part of this to finish, are then cancelled (and re-queued),
    # and the process is gone within it (app/lib/jobs.py: shutdown_budget).
    worker_shutdown_seconds: float = setting("WORKER_SHUTDOWN_SECONDS", 10.0)
    db_pool_size: int = setting("DB_POOL_SIZE", 20)
    db_max_overflow: int = setting("DB_MAX_OVERFLOW", 10)
    # Raw asyncpg connections for placement, validation and the orders list (app/lib/db.py:
    # create_order_pool).
    # 8: more busy connections than a few per database core cost PostgreSQL CPU per order (20 on 2 cores:
    # 0.35-0.47 ms per placement against 0.27-0.36 ms with 6-12; docs/BENCHMARKS.md), fewer starve it.
    db_order_pool_size: int = setting("DB_ORDER_POOL_SIZE", 8)
    db_pool_timeout: float = setting("DB_POOL_TIMEOUT", 5.0)
    db_statement_timeout_ms: int = setting("DB_STATEMENT_TIMEOUT_MS", 15_000)
    log_level: str = setting("LOG_LEVEL", "INFO")
    log_format: str = setting("LOG_FORMAT", "json")
    data_dir: Path = setting("TRADEDESK_DATA_DIR", default_factory=lambda: Path(".data"))
    # Limits per minute, per user (or per IP for anonymous requests).
    rate_limit_read: int = setting("RATE_LIMIT_READ_PER_MINUTE", 6_000)
    rate_limit_write: int = setting("RATE_LIMIT_WRITE_PER_MINUTE", 1_200)
    rate_limit_orders: int = setting("RATE_LIMIT_ORDERS_PER_MINUTE", 600)
    rate_limit_anonymous: int = setting("RATE_LIMIT_ANONYMOUS_PER_MINUTE", 300)
    rate_limit_window_seconds: int = setting("RATE_LIMIT_WINDOW_SECONDS", 60)
    idempotency_ttl_seconds: int = setting("IDEMPOTENCY_TTL_SECONDS", 86_400)
    max_body_bytes: int = setting("MAX_BODY_BYTES", 1 * 1024 * 1024)
    max_upload_bytes: int = setting("MAX_UPLOAD_BYTES", 512 * 1024 * 1024)
    cache_ttl_seconds: int = setting("CACHE_TTL_SECONDS", 30)
    key_cache_seconds: float = setting("API_KEY_CACHE_SECONDS", 1.0)
    access_log: bool = setting("TRADEDESK_ACCESS_LOG", True)
    # The desk (web front-end): how long a sign-in lasts, and whether its cookie is `Secure` even on plain
    # HTTP (behind a TLS-terminating proxy; over direct TLS it always is).
    desk_session_seconds: int = setting("DESK_SESSION_SECONDS", 8 * 3600)
    desk_cookie_secure: bool = setting("DESK_COOKIE_SECURE", False)
    # Bearer token /metrics asks for; None (the default) leaves it open, for a private network.
    metrics_token: str | None = setting("METRICS_TOKEN", None)
    # Per-user caps that keep one account from taking what is shared: live (neither revoked nor expired)
    # API keys, and backtests / sweeps waiting or running on the workers.
    api_keys_max_per_user: int = setting("API_KEYS_MAX_PER_USER", 20)
    backtests_max_active_per_user: int = setting("BACKTESTS_MAX_ACTIVE_PER_USER", 20)
    sweeps_max_active_per_user: int = setting("SWEEPS_MAX_ACTIVE_PER_USER", 2)
    # Brute-force protection per client IP (app/domain/identity/bruteforce.py).
    auth_failure_window_seconds: int = setting("AUTH_FAILURE_WINDOW_SECONDS", 300)
    auth_slowdown_after: int = setting("AUTH_SLOWDOWN_AFTER", 5)
    auth_slowdown_base_ms: int = setting("AUTH_SLOWDOWN_BASE_MS", 250)
    auth_slowdown_max_ms: int = setting("AUTH_SLOWDOWN_MAX_MS", 5_000)
    auth_block_after: int = setting("AUTH_BLOCK_AFTER", 20)
    auth_block_seconds: int = setting("AUTH_BLOCK_SECONDS", 900)
    # Operational gauges are refreshed by a /metrics scrape at most this often per process.
    metrics_refresh_seconds: float = setting("METRICS_REFRESH_SECONDS", 5.0)
    # `tradedesk worker` serves its own Prometheus metrics (job runs, durations) on this port; 0: off.
    worker_metrics_port: int = setting("TRADEDESK_WORKER_METRICS_PORT", 0)
    # `serve --seed-demo` (make run) starts a simulated live feed of the demo instruments.
    demo_simulation: bool = setting("TRADEDESK_DEMO_SIMULATION", True)
    # Streams (docs/STREAMING.md): WebSocket + SSE connections per user across all API processes, messages
    # a client may fall behind before it is closed (4008), seconds between heartbeats.
    stream_max_connections_per_user: int = setting("STREAM_MAX_CONNECTIONS_PER_USER", 20)
    stream_buffer_messages: int = setting("STREAM_BUFFER_MESSAGES", 1_000)
    stream_heartbeat_seconds: float = setting("STREAM_HEARTBEAT_SECONDS", 15.0)


    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def effective_queue_url(self) -> str | None:
        return self.queue_url or self.redis_url

    @classmethod
    def from_env(cls) -> Settings:
        """Each field from its environment variable (`setting(...)`), its default when unset or empty."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata.get(ENV)
            raw = os.environ.get(name) if name else None
            if raw in (None, ""):
                continue
            try:
                values[f.name] = _PARSERS[f.type](raw)
            except ValueError:
                raise InvalidSetting(f"{name}={raw!r} is not a valid {f.type.split(' ')[0]}") from None
            if f.name.startswith("rate_limit_") and values[f.name] < 1:  # (0 would refuse every request)
                raise InvalidSetting(f"{name}={raw!r} must be at least 1")
        if "workers_in_process" not in values:
            # Without Redis there is no shared queue to serve: the embedded mode runs the workers in the
            # API process unless told otherwise.
            values["workers_in_process"] = values.get("redis_url") is None
        if "log_level" in values:
            values["log_level"] = values["log_level"].upper()
        return cls(**values)

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
