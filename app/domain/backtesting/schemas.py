"""Backtest, sweep and strategy payloads.

Money (cash, prices, PnL, equity) leaves the API as decimal strings like everywhere else, although the
simulation itself runs in float64 (see engine.py): each float is written as the shortest decimal that
round-trips to it, so `float(value)` gives back exactly what the engine computed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from app.domain.analytics.metrics import PERFORMANCE_KEYS, TRADE_KEYS
from app.domain.markets.schemas import Timeframe
from app.lib.validation import non_negative, positive

StatusName = Literal["queued", "running", "completed", "failed", "canceled"]
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("completed", "failed", "canceled")

# Metrics that are amounts of money rather than ratios or counts: rendered as decimal strings.
MONEY_METRICS = frozenset({"initial_cash", "final_equity", "expectancy", "avg_win", "avg_loss"})
RANKABLE = tuple(k for k in (*PERFORMANCE_KEYS, *TRADE_KEYS) if k != "periods") + ("final_equity",)
RankMetric = Literal[RANKABLE]  # type: ignore[valid-type]
# Sweeps rank best first; for these metrics smaller is better.
ASCENDING_METRICS = frozenset(
    {"annual_volatility", "var_95", "cvar_95", "var_99", "cvar_99", "max_drawdown_duration"}
)

MAX_SWEEP_COMBINATIONS = 5_000

UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
StrategyName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
ParamName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Percent = Annotated[float, msgspec.Meta(gt=0.0, lt=100.0)]
PeriodsPerYear = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
# A one-instrument row keeps its run settings (exits, periods_per_year) in `params` under this key,
# next to the strategy's parameters; no strategy parameter can have this name (they are identifiers
# without a leading underscore), and answers show the settings as fields of their own.
RUN_SETTINGS_KEY = "_run"


def _check_costs(obj: Any) -> None:
    positive(obj, "initial_cash")
    non_negative(obj, "commission", "slippage_bps")
    if obj.commission >= 1:
        raise ValueError("`commission` is a fraction of notional and must be less than 1")
    if obj.slippage_bps is not None and obj.slippage_bps >= 10_000:
        raise ValueError("`slippage_bps` must be less than 10000")
    if obj.start is not None and obj.end is not None and obj.start > obj.end:
        raise ValueError("`start` must not be after `end`")


class ExitsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exits inside bars, in percent (5 = 5 %) like the paper exchange's `trail_percent`."""

    stop_loss_pct: Percent | None = None
    take_profit_pct: Percent | None = None
    trailing_stop_pct: Percent | None = None


class BacktestCreate(msgspec.Struct, forbid_unknown_fields=True):
    strategy: StrategyName
    symbol: Symbol
    timeframe: Timeframe
    initial_cash: Decimal
    params: dict[ParamName, Any] = {}
    commission: Decimal = Decimal(0)
    slippage_bps: Decimal | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    exits: ExitsIn | None = None
    periods_per_year: PeriodsPerYear | None = None

    def __post_init__(self) -> None:
        _check_costs(self)


class BacktestOut(msgspec.Struct):
    id: UUID
    status: StatusName
    progress: float
    strategy: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    start: datetime | None
    end: datetime | None
    initial_cash: Decimal
    commission: Decimal
    slippage_bps: Decimal
    metrics: dict[str, Any] | None
    error: str | None
    input_hash: str | None
    job_key: str | None
    sweep_id: UUID | None
    owner_id: UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None
    run_seconds: float | None
    # "portfolio" runs name their symbols here (their `symbol` is "portfolio") and keep the whole
    # request in `params`.
    kind: Literal["single", "portfolio"] = "single"
    symbols: list[str] | None = None
    # One-instrument runs: the exits inside bars and the annualisation asked for (null: none / the
    # data's calendar). A portfolio's are in its `params`.
    exits: dict[str, float | None] | None = None
    periods_per_year: int | None = None


class BacktestPage(msgspec.Struct):
    items: list[BacktestOut]
    next_cursor: str | None


class TradeOut(msgspec.Struct):
    index: int
    side: Literal["long", "short"]
    quantity: str
    entry_ts: datetime
    entry_price: str
    exit_ts: datetime | None
    exit_price: str | None
    pnl: str
    return_pct: float
    commission: str
    is_open: bool
    entry_bar: int
    exit_bar: int | None
    # Why the position closed (signal, stop_loss, trailing_stop, take_profit, and stop_out for an
    # exhausted one-instrument short; null while open); portfolio trades also name the symbol.
    symbol: str | None = None
    exit_reason: str | None = None


class TradePage(msgspec.Struct):
    items: list[TradeOut]
    next_cursor: str | None
    total: int


class EquityPoint(msgspec.Struct):
    ts: datetime
    equity: str
    drawdown: float


class EquityOut(msgspec.Struct):
    backtest_id: UUID
    bars: int
    points: int
    items: list[EquityPoint]


class ReportTokenOut(msgspec.Struct):
    token: str
    url: str
    expires_at: datetime


class StrategyOut(msgspec.Struct):
    name: str
    description: str
    params_schema: dict[str, Any]
    defaults: dict[str, Any]
    warmup_bars: int


class StrategyList(msgspec.Struct):
    items: list[StrategyOut]


class SweepCreate(msgspec.Struct, forbid_unknown_fields=True):
    strategy: StrategyName
    grid: Annotated[
        dict[ParamName, Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_SWEEP_COMBINATIONS)]],
        msgspec.Meta(min_length=1, max_length=16),
    ]
    symbol: Symbol
    timeframe: Timeframe
    initial_cash: Decimal
    params: dict[ParamName, Any] = {}
    commission: Decimal = Decimal(0)
    slippage_bps: Decimal | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    rank_by: RankMetric = "sharpe"
    # Drop combinations the strategy rejects (e.g. fast >= slow) instead of failing the whole sweep.
    skip_invalid: bool = False

    def __post_init__(self) -> None:
        _check_costs(self)


class SkippedCombination(msgspec.Struct):
    params: dict[str, Any]
    error: str


class SweepCreated(msgspec.Struct):
    id: UUID
    status: StatusName
    strategy: str
    symbol: str
    timeframe: str
    rank_by: str
    total: int
    skipped: list[SkippedCombination]
    job_key: str | None
    created_at: datetime


class SweepRun(msgspec.Struct):
    rank: int
    id: UUID
    params: dict[str, Any]
    value: float | str | int | None
    metrics: dict[str, Any] | None


class SweepOut(msgspec.Struct):
    id: UUID
    status: StatusName
    strategy: str
    symbol: str
    timeframe: str
    grid: dict[str, Any]
    rank_by: str
    total: int
    counts: dict[str, int]
    progress: float
    created_at: datetime
    ranked: list[SweepRun]
