"""A `tradedesk serve` process on a scratch database, for measure scripts that drive the API over real
HTTP (the desk in a browser, the Python client): created, migrated, served, stopped and dropped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks.conftest import REDIS_URL, _admin, _url


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(name: str, **env: str) -> Iterator[tuple[str, str]]:
    """(base URL, admin API key) of a server on database `td_<name>_<run>`; `env` adds settings."""
    run = uuid.uuid4().hex[:8]
    db = f"td_{name}_{run}"
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
    admin_key = f"td_{name}_{run}_0123456789abcdefghijklmnop"
    proc = None
    try:
        from app.lib.migrate import upgrade

        upgrade(_url(db))
        port = _port()
        environment = dict(
            os.environ,
            DATABASE_URL=_url(db),
            REDIS_URL=REDIS_URL,
            TRADEDESK_REDIS_PREFIX=f"{name}-{run}",
            TRADEDESK_QUEUE_NAME=f"{name}-{run}",
            TRADEDESK_ADMIN_API_KEY=admin_key,
            LOG_LEVEL="WARNING",
            TRADEDESK_ACCESS_LOG="false",
            **env,
        )
        exe = str(Path(sys.executable).with_name("tradedesk"))
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port), "--no-access-log"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, admin_key
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
