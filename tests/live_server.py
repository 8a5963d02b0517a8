"""A live `tradedesk serve` process on the run's database and Redis, for tests that must talk to it over
real HTTP and WebSocket (the client library, the desk in a browser). It runs its SAQ workers in-process on a
queue of its own, so backtests complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import _free_port, server_env


@dataclass
class LiveServer:
    url: str
    admin_key: str
    proc: subprocess.Popen


def start_server(settings, log_path: Path, **env: str) -> LiveServer:
    port = _free_port()
    exe = str(Path(sys.executable).with_name("tradedesk"))
    extra = {
        "TRADEDESK_QUEUE_NAME": f"{settings.queue_name}-client-{uuid.uuid4().hex[:6]}",
        "TRADEDESK_WORKERS_IN_PROCESS": "true",
        **env,
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port), "--no-access-log"],
            env=server_env(settings, **extra),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError("server did not start in 60 s")
        time.sleep(0.2)
    return LiveServer(url, settings.admin_api_key, proc)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
