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

import asyncio
import json
import random
import ssl
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

SCENARIOS = ("health", "me", "instruments", "orders-list", "positions", "place-order", "validate", "mix")
# 60 % reads spread evenly, 25 % placements, 15 % validations.
MIX_WEIGHTS = {"instruments": 20, "orders-list": 20, "positions": 20, "place-order": 25, "validate": 15}
NOT_DONE = 0xFFFF  # status slot of a request that never completed (cancelled at the hard deadline)
MAX_SAMPLES = 50_000_000


@dataclass(slots=True)
class Op:
    name: str
    method: str
    path: str
    # Request number -> body; None for bodiless requests.
    body: Callable[[int], bytes] | None = None


def _needs_account(scenario: str) -> bool:
    return scenario in ("orders-list", "positions", "place-order", "validate", "mix")


def build_ops(
    scenario: str, *, prefix: str, account: str | None, symbol: str, quantity: str, run_id: str
) -> tuple[list[Op], list[int]]:
    """The operations of a scenario and the cyclic schedule of op indices the workers walk through."""
    order_head = (
        f'{{"symbol":{json.dumps(symbol)},"side":"buy","type":"market","quantity":"{quantity}",'
        f'"time_in_force":"gtc","client_order_id":"lt-{run_id}-'
    ).encode()

    def order_body(n: int) -> bytes:
        # Unique per request (and per run) so every placement is a new order, never an idempotent replay.
        return order_head + str(n).encode() + b'"}'

    acct = f"{prefix}/api/v1/accounts/{account}"
    catalogue = {
        "health": Op("health", "GET", f"{prefix}/health"),
        "me": Op("me", "GET", f"{prefix}/api/v1/users/me"),
        "instruments": Op("instruments", "GET", f"{prefix}/api/v1/instruments"),
        "orders-list": Op("orders-list", "GET", f"{acct}/orders?limit=100"),
        "positions": Op("positions", "GET", f"{acct}/positions"),
        "place-order": Op("place-order", "POST", f"{acct}/orders", order_body),
        "validate": Op("validate", "POST", f"{acct}/orders/validate", order_body),
    }
    accounts = account.split(",") if account and "," in account else None
    if accounts and scenario in ("orders-list", "positions", "place-order", "validate"):
        # Several accounts (bots each trading their own): one op per account, and each client keeps to one
        # of them (client i trades account i mod n; run_load pins them), so that concurrent requests do not
        # all queue on one account's row lock, and no bot has two of its own orders in flight at once.
        per_account = [
            build_ops(scenario, prefix=prefix, account=a, symbol=symbol, quantity=quantity, run_id=run_id)[0][0]
            for a in accounts
        ]
        return per_account, list(range(len(per_account)))
    if scenario != "mix":
        return [catalogue[scenario]], [0]
    ops = [catalogue[name] for name in MIX_WEIGHTS]
    schedule = [i for i, weight in enumerate(MIX_WEIGHTS.values()) for _ in range(weight)]
    # Interleaved, not in blocks, so any window of the run sees the mix; seeded so runs are comparable.
    random.Random(7).shuffle(schedule)
    return ops, schedule


# ---------------------------------------------------------------------------------------------- clients


class RawConnection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after any error or `Connection: close`."""

    __slots__ = ("host", "port", "ssl", "reader", "writer", "started_ns")

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl = host, port, ssl_ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.started_ns = 0  # start of the request in flight, 0 when idle (read by the watchdog)

    async def request(self, head: bytes, body: bytes | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        reader, writer = self.reader, self.writer
        if body is None:
            writer.write(head + b"\r\n")
        else:
            writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            data = await reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            data = await self._chunked(reader)
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:  # no framing: the body runs to the end of the connection
            data = await reader.read()
            self.close()
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, data

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


def _request_head(op: Op, host_header: str, headers: dict[str, str]) -> bytes:
    lines = [f"{op.method} {op.path} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if op.body is not None:
        lines.append("Content-Type: application/json")
    # Bodiless heads end with the blank line added at send time; bodies append Content-Length first.
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


# ------------------------------------------------------------------------------------------------ runner


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
    want_account = account is None and _needs_account(scenario)
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


def _processes() -> list[tuple[int, int, str, float]]:
    """(pid, parent pid, command name, user + system CPU seconds) of every process (Linux /proc; empty
    elsewhere)."""
    import os

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = entry.read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name may contain spaces and parentheses: split after the last ")".
        name_end = raw.rindex(")")
        fields = raw[name_end + 2 :].split()
        found.append((int(entry.parent.name), int(fields[1]), raw[raw.index("(") + 1 : name_end],
                      (int(fields[11]) + int(fields[12])) / tick))
    return found


def cpu_seconds_by_command(prefix: str) -> dict[int, float]:
    """CPU seconds of every process whose command name starts with `prefix`, by pid. For PostgreSQL on
    the same host: its backends are separate processes, not children of the app, so what the database
    spends per request is read this way."""
    return {pid: cpu for pid, _, name, cpu in _processes() if name.startswith(prefix)}


def cpu_seconds_between(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU spent between two `cpu_seconds_by_command` readings (a process born in between counts whole;
    one that exited in between is lost, which is why pools that keep connections open are measured)."""
    return sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items())


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds of process `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for pid, parent, _, seconds in _processes():
        children.setdefault(parent, []).append(pid)
        cpu[pid] = seconds
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


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
        heads = [_request_head(op, host_header, headers) for op in ops]
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


# --------------------------------------------------------------------------------------------- the CLI


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def render_report(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"{report['scenario']} @ {report['url']}  ({report['client']} client, "
        f"concurrency {report['concurrency']}, {report['duration_s']:.2f} s)",
        title_justify="left",
    )
    for col in ("op", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"):
        table.add_column(col, justify="left" if col in ("op", "errors") else "right")

    def row(name: str, r: dict[str, Any], rps: float) -> None:
        lat = r["latency_ms"]
        errs = {**r["errors"], **r["exceptions"]}
        err_text = ", ".join(f"{k}: {v}" for k, v in errs.items()) or "0"
        table.add_row(
            name,
            f"{r['requests']:,}",
            f"{rps:,.0f}",
            _fmt(lat["p50"]),
            _fmt(lat["p95"]),
            _fmt(lat["p99"]),
            _fmt(lat["max"]),
            err_text,
        )

    for name, sub in report.get("ops", {}).items():
        row(name, sub, sub["rps"])
    row("total" if report.get("ops") else report["scenario"], report, report["rps"])
    notes = [
        f"client CPU {report['client_cpu_util']:.0%} of a core ({report['client_cpu_ms_per_req']:.3f} ms/req)"
    ]
    if report.get("server_cpu_ms_per_req") is not None:
        notes.append(f"server CPU {report['server_cpu_ms_per_req']:.3f} ms/req")
    table.caption = ", ".join(notes)
    table.caption_justify = "left"
    return table


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    # The generator's own loop overhead matters here: uvloop makes the same client ~30 % cheaper.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@click.command("loadtest")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Base URL of the API")
@click.option("--api-key", envvar="TRADEDESK_API_KEY", default=None, help="Sent as Authorization: Bearer")
@click.option("--scenario", type=click.Choice(SCENARIOS), default="health", show_default=True)
@click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--duration", default=None, type=click.FloatRange(min=0.1), help="Seconds [default: 10]")
@click.option(
    "--requests", "n_requests", default=None, type=click.IntRange(1, MAX_SAMPLES), help="Stop after N"
)
@click.option("--account", default=None, help="Account id, or several comma-separated (client i trades account i mod n); default: the key's first")
@click.option("--symbol", default="DEMO", show_default=True)
@click.option("--quantity", default=None, help="Order quantity (default: the instrument's lot size)")
@click.option("--warmup", default=1.0, show_default=True, type=click.FloatRange(min=0), help="Seconds")
@click.option("--client", type=click.Choice(["raw", "httpx"]), default="raw", show_default=True)
@click.option(
    "--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1), help="Per request"
)
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--quiet", is_flag=True, help="No progress bar")
@click.option(
    "--server-pid",
    type=int,
    default=None,
    help="Also report the server's CPU ms per request (this process and its children, Linux only)",
)
def loadtest(
    url: str,
    api_key: str | None,
    scenario: str,
    concurrency: int,
    duration: float | None,
    n_requests: int | None,
    account: str | None,
    symbol: str,
    quantity: str | None,
    warmup: float,
    client: str,
    timeout: float,
    json_out: Path | None,
    quiet: bool,
    server_pid: int | None,
) -> None:
    """Generate HTTP load against the API and report throughput and latency percentiles."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if duration is not None and n_requests is not None:
        raise click.UsageError("give either --duration or --requests, not both")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    console = Console(stderr=True)
    bar = None
    if not quiet:
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=5,
            transient=True,
        )
    task_id = None

    def on_progress(p: dict[str, Any]) -> None:
        nonlocal task_id
        if task_id is None:
            task_id = bar.add_task(scenario, total=p["total"], info="")
        done = p["completed"] if p["unit"] == "requests" else min(p["elapsed"], p["total"])
        rate = p["completed"] / p["elapsed"] if p["elapsed"] > 0 else 0.0
        bar.update(task_id, completed=done, info=f"{p['completed']:,} req  {rate:,.0f} req/s")

    server_cpu: list[float] = []

    def on_measure(_: bool) -> None:
        server_cpu.append(process_tree_cpu_seconds(server_pid))

    async def main() -> dict[str, Any]:
        return await run_load(
            url,
            scenario=scenario,
            concurrency=concurrency,
            duration=duration,
            requests=n_requests,
            headers=headers,
            account=account,
            symbol=symbol,
            warmup=warmup,
            client=client,
            request_timeout=timeout,
            quantity=quantity,
            progress=on_progress if bar is not None else None,
            on_measure=on_measure if server_pid is not None else None,
        )

    try:
        if bar is not None:
            with bar:
                report = _run_async(main())
        else:
            report = _run_async(main())
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if len(server_cpu) == 2 and report["requests"]:
        report["server_cpu_ms_per_req"] = 1000 * (server_cpu[1] - server_cpu[0]) / report["requests"]
    out = Console()
    if not out.is_terminal:
        # Piped or captured output would otherwise wrap the table at 80 columns.
        out = Console(width=max(out.width, 120))
    out.print(render_report(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"JSON report written to {json_out}")


COMMANDS = [loadtest]
