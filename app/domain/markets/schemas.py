from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from app.lib.validation import at_most, non_negative, positive

Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9_.-]{1,32}$")]
Symbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9_.:/-]{1,32}$")]
Asset = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,16}$")]
# Decimal bounds are checked in __post_init__ (app/lib/validation.py): msgspec's Meta cannot bound Decimals.
PositiveDecimal = Decimal
NonNegDecimal = Decimal
Rate = Decimal
Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d"]


class ExchangeCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    session_close: time = time(16, 0)
    # The market clock's sessions (app/domain/markets/clock.py): open at `session_open` local time on
    # each ISO weekday in `session_days` (1 = Monday .. 7 = Sunday), close at the next `session_close`.
    session_open: time = time(9, 30)
    session_days: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=7)]], msgspec.Meta(max_length=7)] = msgspec.field(
        default_factory=lambda: [1, 2, 3, 4, 5]
    )
    maker_fee_rate: Rate = Decimal(0)
    taker_fee_rate: Rate = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    status: Literal["open", "closed"] = "open"

    def __post_init__(self) -> None:
        non_negative(self, "maker_fee_rate", "taker_fee_rate", "slippage_bps")
        at_most(self, "maker_fee_rate", Decimal(1))
        at_most(self, "taker_fee_rate", Decimal(1))
        at_most(self, "slippage_bps", Decimal(1000))
        if len(set(self.session_days)) != len(self.session_days):
            raise ValueError("`session_days` lists a weekday twice")
        self.session_days = sorted(self.session_days)


class ExchangeOut(msgspec.Struct):
    code: str
    name: str
    timezone: str
    # Local wall-clock time "HH:MM:SS" (a time of day, which OpenAPI has no format for).
    session_close: Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}:\d{2}$")]
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal
    status: str
    session_open: Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}:\d{2}$")]
    session_days: list[int]


class ExchangeList(msgspec.Struct):
    items: list[ExchangeOut]
    next_cursor: str | None = None


class InstrumentCreate(msgspec.Struct, forbid_unknown_fields=True):
    symbol: Symbol
    exchange: Code
    base_asset: Asset
    quote_asset: Asset
    tick_size: PositiveDecimal
    lot_size: PositiveDecimal
    min_quantity: NonNegDecimal = Decimal(0)
    min_notional: NonNegDecimal = Decimal(0)
    status: Literal["trading", "halted"] = "trading"

    def __post_init__(self) -> None:
        positive(self, "tick_size", "lot_size")
        non_negative(self, "min_quantity", "min_notional")


class InstrumentPatch(msgspec.Struct, forbid_unknown_fields=True):
    tick_size: PositiveDecimal | None = None
    lot_size: PositiveDecimal | None = None
    min_quantity: NonNegDecimal | None = None
    min_notional: NonNegDecimal | None = None
    status: Literal["trading", "halted"] | None = None

    def __post_init__(self) -> None:
        positive(self, "tick_size", "lot_size")
        non_negative(self, "min_quantity", "min_notional")


class InstrumentOut(msgspec.Struct):
    symbol: str
    exchange: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    status: str
    last_price: Decimal | None = None
    last_price_at: datetime | None = None


class InstrumentList(msgspec.Struct):
    items: list[InstrumentOut]
    next_cursor: str | None = None


class CandleIn(msgspec.Struct):
    ts: str | int
    open: str | int
    high: str | int
    low: str | int
    close: str | int
    volume: str | int


class CandleUpload(msgspec.Struct, forbid_unknown_fields=True):
    timeframe: Timeframe
    candles: Annotated[list[CandleIn], msgspec.Meta(max_length=1_000_000)]


class CandleOut(msgspec.Struct, array_like=False):
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandleList(msgspec.Struct):
    symbol: str
    timeframe: str
    items: list[CandleOut]


class LoadResult(msgspec.Struct):
    symbol: str
    timeframe: str
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    last_price: Decimal | None


class PriceIn(msgspec.Struct, forbid_unknown_fields=True):
    price: PositiveDecimal
    ts: datetime | None = None
    # Quantity available at this price: makes partial fills (DOMAIN.md). None = unlimited.
    volume: NonNegDecimal | None = None

    def __post_init__(self) -> None:
        positive(self, "price")
        non_negative(self, "volume")


class PriceOut(msgspec.Struct):
    symbol: str
    price: Decimal | None
    ts: datetime | None
    fills: int = 0


class CandleLoadAccepted(msgspec.Struct):
    upload_id: str
    job_key: str
    status: str
    bytes: int
    status_url: str


class CandleLoadStatus(msgspec.Struct):
    upload_id: str
    symbol: str
    status: str
    progress: float
    result: dict | None = None
    error: str | None = None
    # A failed load's field errors and row, as the synchronous load's 422 has them.
    errors: list[dict[str, str]] | None = None
    row: int | None = None


# --------------------------------------------------------------------------------- clock, replays, simulations


class ExchangeClock(msgspec.Struct):
    code: str
    is_open: bool
    next_open: datetime | None
    next_close: datetime | None
    timezone: str
    session_open: str
    session_close: str
    session_days: list[int]


class MarketClock(msgspec.Struct):
    now: datetime
    exchanges: list[ExchangeClock]


# Symbols and timeframe are checked by the service (422 naming the field: an unknown symbol is a rule,
# not malformed JSON); these bounds only keep the body small.
FeedSymbols = Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(min_length=1, max_length=50)]


class ReplayCreate(msgspec.Struct, forbid_unknown_fields=True):
    symbols: FeedSymbols
    timeframe: Annotated[str, msgspec.Meta(max_length=8)] = "1d"
    start: datetime | None = None
    end: datetime | None = None
    # Bar-time seconds per wall second (1 = real time), or "max": as fast as the price path goes.
    speed: float | str = "max"
    path: Literal["ohlc", "close"] = "ohlc"


class SimulationCreate(msgspec.Struct, forbid_unknown_fields=True):
    symbols: FeedSymbols
    interval_ms: int = 1000
    annual_volatility: float = 0.5
    drift: float = 0.0
    seed: int | None = None


class MarketFeedOut(msgspec.Struct):
    """A replay or a simulation. `progress` is 0..1 for a replay (prices fed / prices to feed) and stays
    0 for a simulation, which runs until stopped."""

    id: str
    kind: str
    status: str
    progress: float
    symbols: list[str]
    params: dict[str, Any]
    prices_fed: int
    bars_fed: int
    fills: int
    total_prices: int | None
    market_ts: datetime | None
    error: str | None
    label: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class MarketFeedList(msgspec.Struct):
    items: list[MarketFeedOut]
    next_cursor: str | None = None
