"""OpenTelemetry: one trace shows the API request, the SAQ job it enqueued, and the job's database calls."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import make_settings


def test_request_job_and_database_share_one_trace():
    # Under the run's queue name, so the session's teardown removes its keys with the rest.
    queue_name = f"{make_settings().queue_name}-trace-{uuid.uuid4().hex[:6]}"
    settings = make_settings(queue_name=queue_name)
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(settings).items() if k != "data_dir"}
    script = Path(__file__).with_name("scripts") / "trace_probe.py"
    done = subprocess.run([sys.executable, str(script), json.dumps(cfg)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "complete"
    spans = out["spans"]
    request = next(s for s in spans if s["name"].startswith("POST /api/v1/jobs") and s["parent"] is None)
    job = next(s for s in spans if s["name"] == "job system.echo")
    assert job["trace"] == request["trace"], "the job continues the request's trace"
    db_in_job = [s for s in spans if s["trace"] == job["trace"] and s["db"] and "SELECT 1" in s["db"]]
    assert db_in_job, "the job's database call is in the same trace"
    by_id = {s["span"]: s for s in spans}
    parent = by_id.get(db_in_job[0]["parent"])
    assert parent is not None and parent["name"] == "job system.echo"
