"""Demo market data for `make run`: one exchange, a few instruments, two years of daily candles."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

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
            await services.load_candles(conn, symbol, "1d", services._list_batches(rows))
