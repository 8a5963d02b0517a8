"""`POST .../candles?async=true`: the body is parked, a real worker loads it with progress."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar.testing import AsyncTestClient

from app.domain.markets.synthetic import candles_to_csv, generate_candles
from app.lib.jobs import make_queue
from app.lib.state import build_worker
from app.server.app import create_app
from tests.conftest import make_settings
from tests.integration.helpers import make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_async_candle_load_through_a_worker(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    # Under the run's queue name, so the session's teardown removes its keys with the rest.
    settings = make_settings(queue_name=f"{make_settings().queue_name}-candles-{uuid.uuid4().hex[:6]}")
    queue = make_queue(settings)
    await queue.connect()
    worker = build_worker(queue, settings, concurrency=2)
    worker.SIGNALS = []
    worker._shutdown_grace_period_s = 1
    task = asyncio.create_task(worker.start())
    rows = generate_candles(bars=3000, seed=3, timeframe="1h")
    try:
        async with AsyncTestClient(app=create_app(settings), timeout=30) as c:
            headers = {**admin_headers, "Content-Type": "text/csv"}
            resp = await c.post(f"/api/v1/instruments/{symbol}/candles?timeframe=1h&async=true",
                                content=candles_to_csv(rows).encode(), headers=headers)
            assert resp.status_code == 202, resp.text
            accepted = resp.json()
            assert accepted["status"] == "queued" and accepted["bytes"] > 0
            status = None
            for _ in range(200):
                status = (await c.get(accepted["status_url"], headers=admin_headers)).json()
                if status["status"] in ("complete", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert status["status"] == "complete", status
            assert status["progress"] == 1.0 and status["result"]["rows"] == 3000
            got = (await c.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1h&limit=10000", headers=admin_headers)).json()
            assert len(got["items"]) == 3000
            # a bad upload fails the job with the row named, and writes nothing
            sym2 = await make_market(client, admin_headers)
            bad = "ts,open,high,low,close,volume\n2026-01-01T00:00:00Z,1,0.5,1,1,1\n"
            accepted = (await c.post(f"/api/v1/instruments/{sym2}/candles?timeframe=1h&async=true",
                                     content=bad.encode(), headers=headers)).json()
            for _ in range(200):
                status = (await c.get(accepted["status_url"], headers=admin_headers)).json()
                if status["status"] in ("complete", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert status["status"] == "failed" and status["error"] == "row 1: high < low", status
            assert status["row"] == 1 and status["errors"][0]["field"].startswith("candles[1]"), status
            assert "Traceback" not in str(status)
            assert (await c.get(f"/api/v1/instruments/{sym2}/candles?timeframe=1h", headers=admin_headers)).json()["items"] == []
            unknown = await c.get(f"/api/v1/instruments/{symbol}/candles/loads/{uuid.uuid4()}", headers=admin_headers)
            assert unknown.status_code == 404
            no_tf = await c.post(f"/api/v1/instruments/{symbol}/candles?async=true", content=b"x", headers=headers)
            assert no_tf.status_code == 422
            maybe = await c.post(f"/api/v1/instruments/{symbol}/candles?async=maybe&timeframe=1h", content=b"x",
                                 headers=headers)
            assert maybe.status_code == 400 and maybe.json()["errors"][0]["field"] == "async", maybe.text
    finally:
        await worker.stop()
        task.cancel()
        await queue.disconnect()
