"""Demo market data for `make run`: one exchange, a few instruments, two years of daily candles."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.markets import services
from app.domain.markets.models import Candle
from app.domain.markets.synthetic import generate_candles

DEMO_INSTRUMENTS = (
    ("DEMO", "DEMO", "USD", Decimal("0.01"), Decimal("1"), Decimal("100"), 1),
    ("ACME", "ACME", "USD", Decimal("0.01"), Decimal("1"), Decimal("50"), 2),
    ("BTC-USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"), Decimal("30000"), 3),
)


async def seed_markets(engine: AsyncEngine, bars: int = 750) -> None:
    async with engine.begin() as conn:
        await services.upsert_exchange(
            conn,
            # Around the clock (the session rolls over at 16:00 UTC, when `day` orders expire), so the
            # demo's simulated feed trades at night and on weekends too.
            {"code": "DEMOX", "name": "Demo Exchange", "timezone": "UTC", "maker_fee_rate": Decimal("0.0005"),
             "taker_fee_rate": Decimal("0.001"), "slippage_bps": Decimal("0"), "session_open": time(16, 0),
             "session_close": time(16, 0), "session_days": [1, 2, 3, 4, 5, 6, 7]},
        )
        for symbol, base, quote, tick, lot, _, _ in DEMO_INSTRUMENTS:
            await services.upsert_instrument(
                conn,
                {"symbol": symbol, "exchange_code": "DEMOX", "base_asset": base, "quote_asset": quote,
                 "tick_size": tick, "lot_size": lot, "min_quantity": lot, "min_notional": Decimal("1")},
            )
    # Daily bars ending yesterday, so the demo always has "recent" history.
    start = (datetime.now(UTC) - timedelta(days=bars)).replace(hour=0, minute=0, second=0, microsecond=0)
    for symbol, _, _, tick, _, price, seed in DEMO_INSTRUMENTS:
        async with engine.connect() as conn:
            have = await conn.scalar(select(func.count()).select_from(Candle).where(Candle.symbol == symbol))
            if have:
                continue
            rows = generate_candles(bars=bars, seed=seed, timeframe="1d", start=start, start_price=price, tick_size=tick)
            await services.load_candles(conn, symbol, "1d", services.one_batch(rows))


DEMO_SIMULATION_LABEL = "demo"


async def start_demo_simulation(
    engine: AsyncEngine, settings: Any, api_key: str, symbols: list[str] | None = None
) -> str | None:
    """Start the demo's live feed (a simulation of the demo instruments), so that prices move and resting
    orders fill within seconds of `make run`. The previous run's demo feed is stopped first (its worker
    died with the server). Returns the simulation's id, or None without a queue."""
    from app.domain.identity.services import authenticate
    from app.domain.markets import feeds
    from app.domain.markets.schemas import SimulationCreate
    from app.lib.jobs import make_queue, registry

    if settings.effective_queue_url is None:
        return None
    registry()  # the demo feed is a job: fail before any write if the entry point did not wire
    principal = await authenticate(engine, api_key)
    assert principal is not None, "the demo admin key was just ensured"
    queue = make_queue(settings)
    await queue.connect()
    try:
        async with engine.connect() as conn:
            await feeds.stop_labelled(conn, DEMO_SIMULATION_LABEL)
            data = SimulationCreate(
                symbols=symbols or [s[0] for s in DEMO_INSTRUMENTS], interval_ms=DEMO_INTERVAL_MS,
                annual_volatility=DEMO_VOLATILITY,
            )
            out = await feeds.create_simulation(conn, queue, principal.user_id, data, label=DEMO_SIMULATION_LABEL)
    finally:
        await queue.disconnect()
    return out.id


# Two prices a second per instrument, at 400 % annual volatility over calendar time (a demo, not a model
# of anything): one step moves a $50 price by about 0.025 (one standard deviation), ten seconds by about
# 0.11, so a limit a few cents from the market fills within seconds. At 150 % a limit 3 cents away was
# still resting after 15 s of `make run`.
DEMO_INTERVAL_MS = 500
DEMO_VOLATILITY = 4.0
