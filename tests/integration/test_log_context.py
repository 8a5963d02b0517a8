"""Every log line of a request carries its request id and trace id; a job's lines carry the id of the
request that enqueued it, the trace it continues, and the job's key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import make_settings


def test_request_and_job_lines_carry_request_and_trace_ids():
    queue_name = f"{make_settings().queue_name}-logs-{uuid.uuid4().hex[:6]}"
    settings = make_settings(queue_name=queue_name, log_level="INFO", access_log=True)
    cfg = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in dataclasses.asdict(settings).items()
        if k != "data_dir"
    }
    script = Path(__file__).with_name("scripts") / "trace_probe.py"
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "complete"
    request_trace = next(
        s["trace"] for s in out["spans"] if s["name"].startswith("POST /api/v1/jobs") and not s["parent"]
    )

    lines = []
    for raw in done.stderr.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    request_lines = [line for line in lines if line.get("request_id") == "probe-request-1"]
    access = [
        line for line in request_lines if line.get("event") == "request" and line.get("method") == "POST"
    ]
    assert len(access) == 1 and access[0]["trace_id"] == request_trace and len(access[0]["span_id"]) == 16

    job_lines = [line for line in lines if line.get("job_key") == out["key"]]
    events = {line["event"] for line in job_lines}
    assert {"job_started", "job_finished"} <= events
    for line in job_lines:
        # The job's lines: the enqueuing request's id, the same trace, the job's key.
        assert line["request_id"] == "probe-request-1", line
        assert line["trace_id"] == request_trace, line
    # Every line logged while the request or the job ran carries both ids.
    for line in request_lines:
        assert line.get("trace_id"), line
