"""`tradedesk backtest run`: the engine on this machine against the configured database, no worker."""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from app.domain.backtesting.strategies import STRATEGIES
from app.domain.markets.candles import TIMEFRAMES
from app.lib.cli_params import utc_option


def parse_params(raw: str) -> dict[str, Any]:
    """`fast=10,slow=30` -> {"fast": "10", "slow": "30"}; the strategy's schema converts the strings."""
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected name=value, got {item!r}", param_hint="--params")
        params[name.strip()] = value.strip()
    return params


def _decimal(value: str, hint: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise click.BadParameter(f"not a number: {value!r}", param_hint=hint) from exc


@click.group()
def backtest() -> None:
    """Backtests run locally (the API runs them on workers)."""


@backtest.command("run")
@click.option("--strategy", required=True, type=click.Choice(sorted(STRATEGIES)))
@click.option("--symbol", required=True)
@click.option("--timeframe", default="1d", show_default=True, type=click.Choice(list(TIMEFRAMES)))
@click.option("--params", "raw_params", default="", help="Strategy parameters, e.g. fast=10,slow=30")
@click.option("--initial-cash", default="100000", show_default=True)
@click.option("--commission", default="0", show_default=True, help="Fraction of notional per fill")
@click.option("--slippage-bps", default="0", show_default=True)
@click.option("--start", default=None, help="First bar (ISO 8601, UTC if no offset)")
@click.option("--end", default=None, help="Last bar (ISO 8601, UTC if no offset)")
@click.option("--stop-loss-pct", type=float, default=None, help="Stop-loss exit, percent below the entry")
@click.option("--take-profit-pct", type=float, default=None, help="Take-profit exit, percent above the entry")
@click.option("--trailing-stop-pct", type=float, default=None, help="Trailing stop, percent off the best")
@click.option("--periods-per-year", type=int, default=None, help="Default: from the data's calendar")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table")
def run(
    strategy,
    symbol,
    timeframe,
    raw_params,
    initial_cash,
    commission,
    slippage_bps,
    start,
    end,
    stop_loss_pct,
    take_profit_pct,
    trailing_stop_pct,
    periods_per_year,
    as_json,
) -> None:
    """Run STRATEGY over SYMBOL's stored candles and print its metrics."""
    import msgspec
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from app.domain.backtesting import services
    from app.domain.backtesting.engine import run_strategy
    from app.domain.backtesting.exits import Exits
    from app.domain.backtesting.report import format_metric
    from app.domain.backtesting.schemas import BacktestCreate
    from app.lib.embedded import apply_embedded_defaults
    from app.lib.errors import ApiError
    from app.lib.settings import get_settings

    console = Console(stderr=as_json)
    params = parse_params(raw_params)
    try:
        data = msgspec.convert(
            {
                "strategy": strategy,
                "symbol": symbol,
                "timeframe": timeframe,
                "params": params,
                "initial_cash": _decimal(initial_cash, "--initial-cash"),
                "commission": _decimal(commission, "--commission"),
                "slippage_bps": _decimal(slippage_bps, "--slippage-bps"),
                "start": utc_option(start, "--start"),
                "end": utc_option(end, "--end"),
                "exits": {
                    "stop_loss_pct": stop_loss_pct,
                    "take_profit_pct": take_profit_pct,
                    "trailing_stop_pct": trailing_stop_pct,
                },
                "periods_per_year": periods_per_year,
            },
            BacktestCreate,
        )
        checked = services.check_params(strategy, params)
    except (msgspec.ValidationError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    except ApiError as exc:
        raise click.UsageError(f"{exc.detail} ({exc.extra['errors'][0]['field']})") from exc

    apply_embedded_defaults()
    settings = get_settings()

    async def load():
        from sqlalchemy import select

        from app.domain.markets.models import Instrument
        from app.lib.db import create_engine

        engine = create_engine(settings, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                await services.check_market(conn, symbol, timeframe, data.start, data.end)
                lot = await conn.scalar(select(Instrument.lot_size).where(Instrument.symbol == symbol))
                return await services.load_bars(conn, symbol, timeframe, data.start, data.end), lot
        finally:
            await engine.dispose()

    try:
        started = time.perf_counter()
        bars, lot_size = asyncio.run(load())
        loaded = time.perf_counter() - started
    except ApiError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        sys.exit(2)

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
    ) as progress:
        task = progress.add_task(f"{strategy} on {symbol} {timeframe} ({len(bars):,} bars)", total=1.0)
        started = time.perf_counter()
        result = run_strategy(
            bars,
            strategy,
            checked,
            initial_cash=float(data.initial_cash),
            commission=float(data.commission),
            slippage_bps=float(data.slippage_bps or 0),
            lot_size=float(lot_size),
            periods_per_year=data.periods_per_year,
            exits=Exits(**msgspec.to_builtins(data.exits)) if data.exits is not None else None,
            progress=lambda f: progress.update(task, completed=f),
        )
        ran = time.perf_counter() - started

    metrics = services.metrics_out(services.clean_metrics(result.metrics)) or {}
    if as_json:
        click.echo(
            msgspec.json.encode(
                {
                    "strategy": strategy,
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "params": checked,
                    "bars": len(bars),
                    "input_hash": result.input_hash,
                    "metrics": metrics,
                }
            ).decode()
        )
        return
    table = Table(
        title=f"{strategy} on {symbol} {timeframe}",
        caption=msgspec.json.encode(checked).decode(),
        show_header=True,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key.replace("_", " "), format_metric(key, value))
    console.print(table)
    console.print(
        f"{len(bars):,} bars loaded in {loaded:.2f} s, simulated in {ran:.3f} s (float64); "
        f"input hash {result.input_hash[:16]}…"
    )


COMMANDS = [backtest]
