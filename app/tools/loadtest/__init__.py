"""`tradedesk loadtest`: an asyncio HTTP load generator for our API (and the benchmark peers).

N worker coroutines share one event loop; each owns one keep-alive HTTP/1.1 connection and issues
requests back to back (closed loop), so `concurrency` is the number of requests in flight. Latency is
taken with `perf_counter_ns` around each request into a preallocated buffer; the run stops by itself
when the duration or the request count is reached (a watchdog aborts requests that outlive `timeout`
and a hard deadline cancels whatever is left).

Two clients:

* ``raw`` (default): a minimal HTTP/1.1 client on `asyncio.open_connection`. It pre-encodes each request
  and parses only the status line and `Content-Length` (chunked is understood too, just in case).
* ``httpx``: one shared `httpx.AsyncClient` with keep-alive limits sized to the concurrency.

Why raw is the default. Measured here (2 cores shared by server, generator, PostgreSQL and other jobs;
granian 1 worker + uvloop; concurrency 32; 5 s runs, two each, November 2026):

| target `/health`         | wrk -t1 -c32 | raw client     | httpx client | client CPU per request  |
|--------------------------|--------------|----------------|--------------|-------------------------|
| bare ASGI floor          | 35.6k-49.7k  | 34.8k-39.1k    | 390-680      | raw 0.010 ms, httpx 1.5-1.9 ms |
| FastAPI peer             | 13.8k-14.6k  | 9.4k-12.0k     | 400-510      | raw 0.016 ms, httpx 1.6-1.8 ms |

httpx spends 100x more CPU per request than the raw client (its connection pool gets slower as
concurrency grows: ~1.9k req/s at concurrency 1, ~0.4-0.7k at 32), so it would measure itself, not the
server. The raw client reached 65-98 % of wrk's figure in back-to-back runs (the box is shared, so much of
the spread is neighbours) while never using more than half a core; every report shows the generator's
own CPU so that a saturated client is visible. `--client httpx` remains for
cross-checking against a mainstream client.
"""

from __future__ import annotations

from app.tools.loadtest.cli import COMMANDS, loadtest, render_report
from app.tools.loadtest.connection import RawConnection, request_head
from app.tools.loadtest.cpu import (
    cpu_seconds_between,
    cpu_seconds_by_command,
    process_tree_cpu_seconds,
    processes,
)
from app.tools.loadtest.ops import MAX_SAMPLES, MIX_WEIGHTS, NOT_DONE, SCENARIOS, Op, build_ops, needs_account
from app.tools.loadtest.runner import run_load

__all__ = [
    "COMMANDS",
    "MAX_SAMPLES",
    "MIX_WEIGHTS",
    "NOT_DONE",
    "Op",
    "RawConnection",
    "SCENARIOS",
    "build_ops",
    "cpu_seconds_between",
    "cpu_seconds_by_command",
    "loadtest",
    "needs_account",
    "process_tree_cpu_seconds",
    "processes",
    "render_report",
    "request_head",
    "run_load",
]
