"""Tell a dependency outage (PostgreSQL/Redis down or restarting) from a bug: the first is 503, not 500."""

from __future__ import annotations

import asyncio

_DEPENDENCY_MARKERS = (
    "ConnectionRefusedError",
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "ConnectionFailureError",
    "InterfaceError",
    "AdminShutdownError",
    "TooManyConnectionsError",
    "ConnectionError",
    "TimeoutError",
    "OperationalError",
    "QueuePool limit",
    # asyncpg's protocol got a message it did not ask for: in practice PostgreSQL's FATAL notice on an idle
    # pooled connection (pg_terminate_backend, restart, idle timeout) that arrives one event-loop turn before
    # the EOF that marks the connection closed. The request is fine; its connection was not.
    "InternalClientError",
)


def classify_dependency_error(exc: BaseException) -> tuple[int, str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        # SQLAlchemy sets this when it judged the connection dead (is_disconnect) and invalidated it.
        if getattr(current, "connection_invalidated", False):
            return 503, "A backing service is unavailable; retry shortly"
        if isinstance(current, (ConnectionError, TimeoutError, asyncio.TimeoutError)) or any(
            marker in name or marker in str(current)[:200] for marker in _DEPENDENCY_MARKERS
        ):
            return 503, "A backing service is unavailable; retry shortly"
        current = current.__cause__ or current.__context__
    return 500, "An unexpected error occurred; it has been logged"
