"""`tradedesk data ...`: load CSV candles into the database and generate synthetic series."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import click

from app.domain.markets.candles import TIMEFRAMES


@click.group("data")
def data() -> None:
    """Market data: bulk loads and synthetic series."""


@data.command("load")
@click.argument("symbol")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timeframe", type=click.Choice(list(TIMEFRAMES)), required=True)
def load(symbol: str, file: Path, timeframe: str) -> None:
    """Load FILE (CSV: ts,open,high,low,close,volume) into SYMBOL's candles; all or nothing."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from app.domain.markets.services import load_candles_csv
    from app.lib.db import create_engine
    from app.lib.embedded import apply_embedded_defaults
    from app.lib.errors import ApiError
    from app.lib.settings import get_settings

    apply_embedded_defaults()
    size = file.stat().st_size

    async def run() -> None:
        engine = create_engine(get_settings())
        try:
            with Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), transient=False,
            ) as progress:
                task = progress.add_task(f"{symbol} {timeframe}", total=size)

                async def chunks() -> AsyncIterator[bytes]:
                    with file.open("rb") as fh:
                        while chunk := fh.read(1 << 20):
                            progress.update(task, advance=len(chunk))
                            yield chunk

                async with engine.connect() as conn:
                    result = await load_candles_csv(conn, symbol, timeframe, chunks())
            click.echo(f"loaded {result.rows} candles ({result.first_ts} .. {result.last_ts}); last price {result.last_price}")
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except ApiError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)


@data.command("generate")
@click.argument("symbol")
@click.option("--bars", type=click.IntRange(1, 50_000_000), default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--timeframe", type=click.Choice(list(TIMEFRAMES)), default="1d", show_default=True)
@click.option("--start-price", type=str, default="100", show_default=True)
@click.option("--tick-size", type=str, default="0.01", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="CSV file (default: stdout)")
def generate(symbol: str, bars: int, seed: int, timeframe: str, start_price: str, tick_size: str, out: Path | None) -> None:
    """Write a synthetic OHLCV series (GBM with GARCH volatility clustering) for SYMBOL as CSV.

    Deterministic for a seed; load it with `tradedesk data load SYMBOL FILE --timeframe TF`.
    """
    from app.domain.markets.synthetic import candles_to_csv, generate_candles

    rows = generate_candles(bars=bars, seed=seed, timeframe=timeframe, start_price=Decimal(start_price),
                            tick_size=Decimal(tick_size))
    text = candles_to_csv(rows)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        click.echo(f"{symbol}: wrote {bars} {timeframe} bars to {out}", err=True)


from app.domain.markets.feed_cli import market  # noqa: E402  (its own module: the feeds CLI)

COMMANDS = [data, market]
