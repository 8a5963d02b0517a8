"""Run in a subprocess by test_tracing.py: tracing is process-global, so it must not leak into the suite.

Enqueues `system.echo` through POST /api/v1/jobs (X-Request-ID: probe-request-1), runs it on an in-process
worker and prints the spans and the job's key; test_log_context.py reads the log lines it writes to stderr.
"""

import asyncio
import json
import os
import sys

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.lib.tracing import configure_tracing

exporter = InMemorySpanExporter()
configure_tracing(exporter=exporter)

from litestar.testing import AsyncTestClient  # noqa: E402

from app.lib.jobs import make_queue  # noqa: E402
from app.lib.settings import Settings  # noqa: E402
from app.lib.state import build_worker  # noqa: E402
from app.server.app import create_app  # noqa: E402
from app.server.wiring import wire  # noqa: E402


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    settings = Settings(**cfg)
    wire()
    queue = make_queue(settings)
    await queue.connect()
    worker = build_worker(queue, settings, concurrency=1)
    worker.SIGNALS = []
    worker._shutdown_grace_period_s = 1
    task = asyncio.create_task(worker.start())
    try:
        async with AsyncTestClient(app=create_app(settings), timeout=30) as client:
            headers = {"Authorization": f"Bearer {settings.admin_api_key}"}
            resp = await client.post("/api/v1/jobs", json={"function": "system.echo", "kwargs": {"message": "t"}},
                                     headers={**headers, "X-Request-ID": "probe-request-1"})
            key = resp.json()["key"]
            for _ in range(100):
                status = (await client.get(f"/api/v1/jobs/{key}", headers=headers)).json()["status"]
                if status == "complete":
                    break
                await asyncio.sleep(0.1)
    finally:
        await worker.stop()
        task.cancel()
        await queue.disconnect()
    spans = [
        {"name": s.name, "trace": format(s.context.trace_id, "032x"), "span": format(s.context.span_id, "016x"),
         "parent": format(s.parent.span_id, "016x") if s.parent else None, "kind": str(s.kind),
         "db": s.attributes.get("db.statement", s.attributes.get("db.query.text"))}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"status": status, "key": key, "spans": spans}))


os.environ.setdefault("LOG_LEVEL", "WARNING")
asyncio.run(main())
