"""A timed closed-loop run: workers, the watchdog and hard deadline, the preflight and the summary."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

from app.tools.loadtest.connection import RawConnection, request_head
from app.tools.loadtest.ops import MAX_SAMPLES, NOT_DONE, SCENARIOS, Op, build_ops, needs_account


@dataclass(slots=True)
class _Phase:
    limit: int  # requests this phase may issue
    deadline_ns: int
    record: bool
    issued: int = 0
    completed: int = 0
    last_done_ns: int = 0


class _Run:
    def __init__(self, ops: list[Op], schedule: list[int], capacity: int, pinned: bool = False) -> None:
        self.ops, self.schedule = ops, schedule
        # Each client always sends ops[client % len(ops)] (one account per client) instead of walking the
        # shared schedule.
        self.pinned = pinned
        self.latency = array("q", bytes(8 * capacity))
        self.status = array("H", [NOT_DONE]) * capacity
        self.op_index = array("B", bytes(capacity))
        self.exceptions: Counter[str] = Counter()
        self.seq = 0  # request number across phases: keeps client_order_ids unique after the warm-up


async def _raw_worker(run: _Run, phase: _Phase, conn: RawConnection, heads: list[bytes], client: int) -> None:
    ops, schedule, n_sched = run.ops, run.schedule, len(run.schedule)
    own = client % len(ops) if run.pinned else None
    perf = time.perf_counter_ns
    latency, status_buf, op_buf = run.latency, run.status, run.op_index
    while phase.issued < phase.limit:
        t0 = perf()
        if t0 >= phase.deadline_ns:
            return
        i = phase.issued
        phase.issued = i + 1
        k = schedule[i % n_sched] if own is None else own
        op = ops[k]
        run.seq += 1
        body = op.body(run.seq) if op.body is not None else None
        conn.started_ns = t0
        try:
            status = (await conn.request(heads[k], body))[0]
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:
            # The watchdog aborts the socket of an overdue request; name that for what it is.
            name = "Timeout" if conn.started_ns < 0 else type(exc).__name__
            run.exceptions[name] += 1
            conn.close()
            status = 0
        t1 = perf()
        conn.started_ns = 0
        phase.completed += 1
        phase.last_done_ns = t1
        if phase.record:
            latency[i] = t1 - t0
            status_buf[i] = status
            op_buf[i] = k
        if status == 0:
            # A refused or broken connection fails in microseconds: without a pause a dead server turns
            # the run into a busy loop of millions of identical errors.
            await asyncio.sleep(0.01)


async def _watchdog(conns: list[RawConnection], timeout_ns: int) -> None:
    # One timer for all connections instead of a per-request asyncio.timeout (which costs a timer
    # handle per request and shows up in the generator's own CPU profile).
    while True:
        await asyncio.sleep(0.25)
        now = time.perf_counter_ns()
        for conn in conns:
            if conn.started_ns > 0 and now - conn.started_ns > timeout_ns:
                conn.started_ns = -1
                if conn.writer is not None:
                    conn.writer.transport.abort()


async def _httpx_worker(
    run: _Run, phase: _Phase, client: Any, urls: list[str], headers: list[dict], slot: int
) -> None:
    ops, schedule, n_sched = run.ops, run.schedule, len(run.schedule)
    own = slot % len(ops) if run.pinned else None
    perf = time.perf_counter_ns
    while phase.issued < phase.limit:
        t0 = perf()
        if t0 >= phase.deadline_ns:
            return
        i = phase.issued
        phase.issued = i + 1
        k = schedule[i % n_sched] if own is None else own
        op = ops[k]
        run.seq += 1
        body = op.body(run.seq) if op.body is not None else None
        try:
            status = (await client.request(op.method, urls[k], content=body, headers=headers[k])).status_code
        except Exception as exc:
            run.exceptions[type(exc).__name__] += 1
            status = 0
        t1 = perf()
        phase.completed += 1
        phase.last_done_ns = t1
        if phase.record:
            run.latency[i] = t1 - t0
            run.status[i] = status
            run.op_index[i] = k
        if status == 0:
            await asyncio.sleep(0.01)


async def _run_phase(
    make_workers: Callable[[_Phase], list[Any]],
    phase: _Phase,
    *,
    grace_s: float,
    progress: Callable[[_Phase], None] | None = None,
) -> None:
    tasks = [asyncio.ensure_future(c) for c in make_workers(phase)]
    ticker = None
    if progress is not None:

        async def tick() -> None:
            while True:
                progress(phase)
                await asyncio.sleep(0.2)

        ticker = asyncio.ensure_future(tick())
    hard_stop = max(phase.deadline_ns - time.perf_counter_ns(), 0) / 1e9 + grace_s
    try:
        _, pending = await asyncio.wait(tasks, timeout=hard_stop)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        if ticker is not None:
            ticker.cancel()
            progress(phase)


async def _preflight(
    url: str, headers: dict[str, str], account: str | None, symbol: str, scenario: str, quantity: str | None
) -> tuple[str | None, str]:
    """Fill in the account (the caller's first) and the order quantity (one lot) when not given."""
    want_account = account is None and needs_account(scenario)
    want_lot = quantity is None and scenario in ("place-order", "validate", "mix")
    if not (want_account or want_lot):
        return account, quantity or "1"
    import httpx

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        if want_account:
            r = await client.get("/api/v1/accounts", params={"limit": 1})
            items = r.json().get("items", []) if r.status_code == 200 else []
            if not items:
                raise click.UsageError(f"--account is required (GET /api/v1/accounts gave {r.status_code})")
            account = str(items[0]["id"])
        if want_lot:
            r = await client.get(f"/api/v1/instruments/{symbol}")
            if r.status_code == 200 and r.json().get("lot_size"):
                quantity = str(r.json()["lot_size"])
    return account, quantity or "1"


def _summarise(latencies_ns: Any, statuses: Any, exceptions: Counter[str] | None = None) -> dict[str, Any]:
    import numpy as np

    count = int(latencies_ns.size)
    codes = Counter(
        {str(int(code)): int(n) for code, n in zip(*np.unique(statuses, return_counts=True), strict=True)}
    )
    codes.pop("0", None)  # status 0 = exception, reported by type
    errors = {code: n for code, n in sorted(codes.items()) if not 200 <= int(code) < 400}
    exc = dict(sorted((exceptions or {}).items()))
    if count:
        ms = latencies_ns / 1e6
        p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
        lat = {"p50": p50, "p95": p95, "p99": p99, "max": float(ms.max()), "mean": float(ms.mean())}
    else:
        lat = {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "requests": count,
        "latency_ms": lat,
        "status_counts": dict(sorted(codes.items())),
        "errors": errors,
        "exceptions": exc,
        "error_count": sum(errors.values()) + sum(exc.values()),
    }


async def run_load(
    url: str,
    *,
    scenario: str,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    headers: dict[str, str] | None = None,
    account: str | None = None,
    symbol: str = "DEMO",
    warmup: float = 1.0,
    client: str = "raw",
    request_timeout: float = 10.0,
    quantity: str | None = None,
    max_duration: float = 600.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_measure: Callable[[bool], None] | None = None,
) -> dict[str, Any]:
    """Run one scenario against `url` and return the report (see `_summarise` for the fields).

    With `requests` the run stops after that many requests (or `max_duration` seconds, whichever comes
    first); otherwise after `duration` seconds (default 10). `progress`, if given, is called about five
    times a second with {"completed", "elapsed", "total", "unit"}. `on_measure`, if given, is called
    with True just before the measured phase (after the warm-up) and False just after it, e.g. to
    sample the server's CPU time over exactly the measured requests.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if client not in ("raw", "httpx"):
        raise ValueError("client must be 'raw' or 'httpx'")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if requests is None and duration is None:
        duration = 10.0
    headers = dict(headers or {})
    parts = urlsplit(url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host_header = host if parts.port is None else f"{host}:{port}"
    account, quantity = await _preflight(url, headers, account, symbol, scenario, quantity)
    run_id = uuid.uuid4().hex[:10]
    ops, schedule = build_ops(
        scenario, prefix=parts.path, account=account, symbol=symbol, quantity=quantity, run_id=run_id
    )
    run_seconds = duration if requests is None else max_duration
    if requests is not None:
        capacity = requests
    else:
        # Generous ceiling for the request rate this generator can reach on one core.
        capacity = int(run_seconds * 200_000) + concurrency
    capacity = min(capacity, MAX_SAMPLES)
    run = _Run(ops, schedule, capacity, pinned=len(ops) > 1 and scenario != "mix")
    timeout_ns = int(request_timeout * 1e9)
    grace = request_timeout + 2.0

    closers: list[Callable[[], Any]] = []
    if client == "raw":
        ssl_ctx = ssl.create_default_context() if parts.scheme == "https" else None
        conns = [RawConnection(host, port, ssl_ctx) for _ in range(concurrency)]
        heads = [request_head(op, host_header, headers) for op in ops]
        watchdog = asyncio.ensure_future(_watchdog(conns, timeout_ns))

        def make_workers(phase: _Phase) -> list[Any]:
            return [_raw_worker(run, phase, conn, heads, n) for n, conn in enumerate(conns)]

        async def close_raw() -> None:
            watchdog.cancel()
            for conn in conns:
                conn.close()

        closers.append(close_raw)
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(limits=limits, timeout=request_timeout, http1=True, http2=False)
        urls = [f"{parts.scheme}://{parts.netloc}{op.path}" for op in ops]
        op_headers = [{**headers, **({"Content-Type": "application/json"} if op.body else {})} for op in ops]

        def make_workers(phase: _Phase) -> list[Any]:
            return [_httpx_worker(run, phase, http, urls, op_headers, n) for n in range(concurrency)]

        closers.append(http.aclose)

    try:
        if warmup and warmup > 0:
            pre = _Phase(limit=1 << 62, deadline_ns=time.perf_counter_ns() + int(warmup * 1e9), record=False)
            await _run_phase(make_workers, pre, grace_s=grace)
            run.exceptions.clear()
        phase = _Phase(limit=capacity, deadline_ns=0, record=True)
        report_progress = None
        if progress is not None:
            total, unit = (requests, "requests") if requests is not None else (run_seconds, "seconds")

            def report_progress(p: _Phase) -> None:
                elapsed = (time.perf_counter_ns() - started) / 1e9
                progress({"completed": p.completed, "elapsed": elapsed, "total": total, "unit": unit})

        if on_measure is not None:
            on_measure(True)
        cpu0 = time.process_time()
        started = time.perf_counter_ns()
        phase.deadline_ns = started + int(run_seconds * 1e9)
        await _run_phase(make_workers, phase, grace_s=grace, progress=report_progress)
        client_cpu = time.process_time() - cpu0
        if on_measure is not None:
            on_measure(False)
    finally:
        for close in closers:
            await close()

    import numpy as np

    issued = phase.issued
    status = np.frombuffer(run.status, dtype=np.uint16, count=issued)
    done = status != NOT_DONE
    latency = np.frombuffer(run.latency, dtype=np.int64, count=issued)[done]
    op_index = np.frombuffer(run.op_index, dtype=np.uint8, count=issued)[done]
    status = status[done]
    elapsed = max((phase.last_done_ns or time.perf_counter_ns()) - started, 1) / 1e9
    report = _summarise(latency, status, run.exceptions)
    report = {
        "scenario": scenario,
        "url": url,
        "client": client,
        "concurrency": concurrency,
        "duration_s": elapsed,
        "rps": report["requests"] / elapsed,
        **report,
        "unfinished": int(issued - done.sum()),
        # The generator's own CPU: if it nears 1 s per second, the client (not the server) is the limit.
        "client_cpu_ms_per_req": 1000 * client_cpu / max(report["requests"], 1),
        "client_cpu_util": client_cpu / elapsed,
        "warmup_s": warmup,
        "account": account,
        "symbol": symbol,
    }
    if len({op.name for op in ops}) > 1:
        per_op = {}
        for k, op in enumerate(ops):
            mask = op_index == k
            sub = _summarise(latency[mask], status[mask])
            sub["rps"] = sub["requests"] / elapsed
            per_op[op.name] = sub
        report["ops"] = per_op
    return report
