"""structlog configuration: JSON lines in production, console rendering in development.

Configured directly rather than through Litestar's StructlogPlugin because that plugin also installs
LoggingMiddleware, which reads request bodies and cookies on every request; we log one access line from
our own request-id middleware instead (see app/lib/middleware.py).
"""

from __future__ import annotations

import logging
import sys
import time

import structlog
from opentelemetry.trace import get_current_span

_configured: tuple[str, str] | None = None

# Values of these keys never reach a log line (API keys, bearer tokens).
SECRET_KEYS = frozenset({"api_key", "authorization", "x-api-key", "password", "secret", "key_secret"})


def _drop_secrets(_logger, _name, event_dict):
    for key in SECRET_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def _add_trace_ids(_logger, _name, event_dict):
    """trace_id / span_id of the current OpenTelemetry span (W3C hex), so a log line leads to its trace.

    Lines of a request already carry `request_id` (bound by RequestContextMiddleware); a job's lines carry
    the `request_id` of the request that enqueued it and its own `job_key` (app/lib/jobs.py). Without
    tracing configured there is no current span and nothing is added (about 0.3 us per line).
    """
    span_context = get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    global _configured
    if _configured == (level, fmt):
        return
    _configured = (level, fmt)
    shared = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; route them through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("saq", "httpx", "asyncio", "alembic", "granian", "_granian"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


class ThrottledWarning:
    """A warning logged at most once per `interval` seconds per process, with the count it stood for.

    A backing service outage (Redis down) makes every request take the same fallback; one line per
    request would flood the logs at thousands of lines per second and bury everything else.
    """

    def __init__(self, logger: structlog.stdlib.BoundLogger, event: str, interval: float = 10.0) -> None:
        self.logger, self.event, self.interval = logger, event, interval
        self._next_at = 0.0
        self._suppressed = 0

    def __call__(self, **fields: object) -> bool:
        """Log now (True) or count this occurrence for the next line (False)."""
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return False
        self.logger.warning(self.event, suppressed_since_last=self._suppressed, **fields)
        self._next_at, self._suppressed = now + self.interval, 0
        return True


def job_log_context(meta: dict | None, job_key: str | None):
    """Bind a job's key and the id of the request that enqueued it (app/lib/tracing.py: inject_into) to
    every log line of the job's run."""
    fields = {"job_key": job_key, "request_id": (meta or {}).get("request_id")}
    return structlog.contextvars.bound_contextvars(**{k: v for k, v in fields.items() if v is not None})
