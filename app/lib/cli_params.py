"""Option parsing shared by the command-line tools of several areas (click is the CLI's library)."""

from __future__ import annotations

from datetime import UTC, datetime

import click


def utc_option(value: str | None, hint: str) -> datetime | None:
    """An ISO 8601 date/time option (``Z`` accepted; a naive time is UTC), or click's usage error
    naming the option ``hint``."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 date/time: {value!r}", param_hint=hint) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
