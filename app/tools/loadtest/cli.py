"""`tradedesk loadtest`: the command, and the report it prints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from app.tools.loadtest.cpu import process_tree_cpu_seconds
from app.tools.loadtest.ops import MAX_SAMPLES, SCENARIOS
from app.tools.loadtest.runner import run_load


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
@click.option(
    "--account",
    default=None,
    help="Account id, or several comma-separated (client i trades account i mod n); default: the key's first",
)
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
