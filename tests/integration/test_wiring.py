"""The composition root (app/server/wiring.py) in real processes of their own: a `tradedesk worker`
registers exactly the price hooks and jobs of an API process built by `create_app`, and a process that
forgets `wire()` cannot store a price, use the job registry or build a worker.

Each process is started here (the suite's own process is wired by tests/conftest.py, so it proves
nothing about the entry points).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings, server_env

_API_WIRING = """
import json
from app.lib.settings import Settings
from app.server.app import create_app
from app.server.wiring import describe
create_app(Settings())
print(json.dumps(describe()))
"""


def _api_wiring() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", _API_WIRING], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _start_worker(settings, log_path: Path) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("tradedesk"))
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [exe, "worker", "--concurrency", "1", "--metrics-port", "0"],
            env=server_env(settings), stdout=log, stderr=log, start_new_session=True,
        )


@pytest.mark.asyncio(loop_scope="session")
async def test_a_worker_process_has_the_hooks_and_jobs_of_an_api_process(tmp_path):
    from app.lib.jobs import enqueue, make_queue

    s = make_settings(queue_name=f"{make_settings().queue_name}-wiring-{uuid.uuid4().hex[:6]}")
    log_path = tmp_path / "worker.log"
    worker = _start_worker(s, log_path)
    queue = make_queue(s)
    await queue.connect()
    try:
        api = await asyncio.to_thread(_api_wiring)
        job = await enqueue(queue, "system.wiring", {}, retries=1, timeout=10)
        deadline = time.monotonic() + 60
        while job.status not in ("complete", "failed", "aborted"):
            assert worker.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, (job, log_path.read_text(errors="replace")[-3000:])
            await asyncio.sleep(0.2)
            await job.refresh()
        assert job.status == "complete", (job, log_path.read_text(errors="replace")[-3000:])
    finally:
        await queue.disconnect()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert job.result == api
    # and what they agree on is the whole application, not two empty registries
    assert api["price_hooks"] == ["app.domain.trading.matching.match_resting_orders"]
    assert api["quiet_bands"] == [
        "app.domain.trading.matching.match_resting_orders <- app.domain.trading.matching.resting_quiet_band"
    ]
    assert api["committed_price_hooks"] == ["app.domain.risk.post_trade.check_after_price"]
    assert api["committed_price_observers"] == ["app.domain.markets.services.prices.publish_committed_prices"]
    assert api["transaction_outboxes"] == [
        "app.domain.streams.publish.discard_deferred / app.domain.streams.publish.flush_deferred"
    ]
    assert api["worker_services"] == [
        "app.server.wiring.worker_stream_channels (own process)",
        "app.domain.jobs.scheduler.running_scheduler",
    ]
    assert {"markets.replay", "markets.simulate", "trading.expire_day_orders", "backtest.run",
            "risk.monitor_all", "system.wiring", "walkforward.window"} <= set(api["jobs"])


_UNWIRED = """
import asyncio
from decimal import Decimal

from app.domain.markets import services  # the price path, as any importer sees it
from app.domain.markets.events import publish_price, quiet_band
from app.domain.trading import services as trading  # importing the matcher registers nothing
from app.lib.jobs import enqueue, make_worker, registry
from app.lib.settings import Settings
from app.lib.wired import NotWired

failures = []
for label, call in [
    ("publish_price", lambda: asyncio.run(publish_price(None, "X", Decimal(1), None, None))),
    ("quiet_band", lambda: asyncio.run(quiet_band(None, "X"))),
    ("registry", registry),
    ("enqueue", lambda: asyncio.run(enqueue(None, "system.echo", {}))),
    ("make_worker", lambda: make_worker(None, Settings())),
]:
    try:
        call()
    except NotWired as exc:
        assert "wire()" in str(exc), exc
    else:
        failures.append(label)
print("unchecked:", failures)
"""


def test_a_process_that_forgets_wire_fails_loudly():
    out = subprocess.run([sys.executable, "-c", _UNWIRED], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "unchecked: []"
