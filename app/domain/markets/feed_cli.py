"""`tradedesk market replay|simulate`: a replay or a simulation run in this process, with a progress bar.

The feed is created exactly as the API creates it (the same checks, the same one-feed-per-symbol claim,
visible in `GET /api/v1/market/replays`) and run by the same job function, only here instead of on a
worker; Ctrl-C asks it to stop between two price updates, as `DELETE` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from typing import Any

import click

from app.domain.markets.candles import TIMEFRAMES
from app.lib.cli_params import utc_option


def _speed(value: str) -> float | str:
    if value == "max":
        return value
    try:
        return float(value)
    except ValueError as exc:
        raise click.BadParameter(
            "a positive number (bar seconds per second) or 'max'", param_hint="--speed"
        ) from exc


async def _run(kind: str, create: Any, duration: float | None) -> dict[str, Any]:
    """Create the feed, run it here, and draw its progress from its row until it ends."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import select, update

    from app.domain.markets import feeds
    from app.domain.markets.feed_jobs import run_feed
    from app.domain.markets.models import MarketFeed
    from app.lib.db import create_engine
    from app.lib.settings import get_settings

    # The feed's writer and reader, this progress display's reader, and the price path's background group
    # check (risk/post_trade.py), which with three waited for a connection and was skipped after 5 s.
    engine = create_engine(get_settings(), pool_size=4, max_overflow=1)
    try:
        async with engine.connect() as conn:
            feed = await create(conn)
        feed_id = uuid.UUID(feed.id)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        job = asyncio.create_task(run_feed({"engine": engine}, feed.id))
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns) as progress:
            task = progress.add_task(f"{kind} {' '.join(feed.symbols)}", total=feed.total_prices, detail="")
            async with engine.connect() as watcher:
                while not job.done():
                    if stop.is_set():
                        await watcher.execute(
                            update(MarketFeed).where(MarketFeed.id == feed_id).values(stop_requested=True)
                        )
                        await watcher.commit()
                    row = (
                        await watcher.execute(
                            select(MarketFeed.prices_fed, MarketFeed.fills, MarketFeed.market_ts).where(
                                MarketFeed.id == feed_id
                            )
                        )
                    ).one()
                    await watcher.rollback()
                    at = row.market_ts.strftime("%Y-%m-%d %H:%M:%S") if row.market_ts else "-"
                    progress.update(task, completed=row.prices_fed, detail=f"fills {row.fills}  at {at}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(job), 0.2)
            result = job.result()
            progress.update(task, completed=result.get("prices_fed", 0))
        loop.remove_signal_handler(signal.SIGINT)
        async with engine.connect() as conn:
            final = await feeds.get_feed(conn, kind, feed_id)
        return {
            "id": final.id,
            "status": final.status,
            "prices": final.prices_fed,
            "bars": final.bars_fed,
            "fills": final.fills,
            "error": final.error,
        }
    finally:
        await engine.dispose()


def _report(outcome: dict[str, Any]) -> None:
    click.echo(
        f"{outcome['status']}: {outcome['prices']} prices ({outcome['bars']} bars), {outcome['fills']} fills"
        f"  [{outcome['id']}]" + (f"  error: {outcome['error']}" if outcome["error"] else "")
    )
    if outcome["status"] == "failed":
        sys.exit(1)


def _execute(kind: str, create: Any, duration: float | None = None) -> None:
    from app.lib.embedded import apply_embedded_defaults
    from app.lib.errors import ApiError
    from app.lib.log import configure_logging
    from app.lib.settings import get_settings

    apply_embedded_defaults()
    configure_logging(get_settings().log_level, os.environ.get("LOG_FORMAT", "console"))
    try:
        _report(asyncio.run(_run(kind, create, duration)))
    except ApiError as exc:
        field = (exc.extra.get("errors") or [{}])[0].get("field")
        click.echo(f"error: {exc.detail}" + (f" ({field})" if field else ""), err=True)
        sys.exit(2)


@click.group("market")
def market() -> None:
    """Replays of stored candles and simulated live feeds, through the live price path."""


@market.command("replay")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--timeframe", type=click.Choice(list(TIMEFRAMES)), default="1d", show_default=True)
@click.option("--start", default=None, help="First bar (ISO 8601, UTC if no offset)")
@click.option("--end", default=None, help="Last bar (ISO 8601, UTC if no offset)")
@click.option(
    "--speed", default="max", show_default=True, help="Bar seconds per wall second (1 = real time), or max"
)
@click.option("--path", type=click.Choice(["ohlc", "close"]), default="ohlc", show_default=True)
def replay(
    symbols: tuple[str, ...], timeframe: str, start: str | None, end: str | None, speed: str, path: str
) -> None:
    """Replay the stored candles of SYMBOLS in time order as last prices; resting orders fill as live."""
    from app.domain.markets import feeds
    from app.domain.markets.schemas import ReplayCreate

    data = ReplayCreate(
        symbols=list(symbols),
        timeframe=timeframe,
        start=utc_option(start, "--start"),
        end=utc_option(end, "--end"),
        speed=_speed(speed),
        path=path,  # type: ignore[arg-type]
    )
    _execute("replay", lambda conn: feeds.create_replay(conn, None, None, data, run_here=True))


@market.command("simulate")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--interval-ms", type=int, default=1000, show_default=True, help="Wall time between two prices")
@click.option(
    "--volatility", type=float, default=0.5, show_default=True, help="Annual volatility (0.5 = 50 %)"
)
@click.option("--drift", type=float, default=0.0, show_default=True, help="Annual drift")
@click.option("--seed", type=int, default=None, help="Random seed (default: a new one, shown in the feed)")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)")
def simulate(
    symbols: tuple[str, ...],
    interval_ms: int,
    volatility: float,
    drift: float,
    seed: int | None,
    duration: float | None,
) -> None:
    """Feed a seeded random walk (GBM on the tick grid) for SYMBOLS from their last prices until stopped."""
    from app.domain.markets import feeds
    from app.domain.markets.schemas import SimulationCreate

    data = SimulationCreate(
        symbols=list(symbols), interval_ms=interval_ms, annual_volatility=volatility, drift=drift, seed=seed
    )
    _execute(
        "simulation", lambda conn: feeds.create_simulation(conn, None, None, data, run_here=True), duration
    )
