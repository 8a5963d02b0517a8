"""Payloads of portfolio backtests and walk-forward runs (API.md "Portfolio backtests").

Weights, percentages and exit levels are ratios (JSON numbers); cash and fees are decimals like every
amount of money in the API.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from app.domain.backtesting.schemas import (
    BacktestCreate,
    ExitsIn,
    ParamName,
    PeriodsPerYear,
    RankMetric,
    StrategyName,
    Symbol,
    UtcDatetime,
)
from app.domain.markets.schemas import Timeframe
from app.lib.validation import non_negative, positive

MAX_SYMBOLS = 1_000
MAX_SCHEDULE = 10_000
MAX_WINDOWS = 200

# A weight's range, [-MAX_WEIGHT, MAX_WEIGHT], is checked by the service with the weight's symbol named
# (portfolio_service._check_weight_rows): a decode error in a mapping cannot say which key it is at.
MAX_WEIGHT = 10.0
Weight = Annotated[
    float, msgspec.Meta(description=f"a fraction of equity in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]")
]
Rule = Annotated[str, msgspec.Meta(min_length=1, max_length=2_000)]


class CommissionModel(msgspec.Struct, forbid_unknown_fields=True):
    """Fee per fill: ``max(minimum, fixed + rate * notional)``."""

    rate: Decimal = Decimal(0)
    fixed: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        non_negative(self, "rate", "fixed", "minimum")
        if self.rate >= 1:
            raise ValueError("`rate` is a fraction of notional and must be less than 1")


class ScheduleEntry(msgspec.Struct, forbid_unknown_fields=True):
    ts: UtcDatetime
    weights: dict[Symbol, Weight]


class TargetWeights(msgspec.Struct, forbid_unknown_fields=True, tag="target_weights", tag_field="type"):
    weights: dict[Symbol, Weight] | None = None
    rebalance: Literal["daily", "weekly", "monthly"] | None = None
    schedule: Annotated[list[ScheduleEntry], msgspec.Meta(min_length=1, max_length=MAX_SCHEDULE)] | None = (
        None
    )

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.schedule is None):
            raise ValueError("`weights` (with `rebalance`) or `schedule`: give exactly one")
        if self.weights is not None and self.rebalance is None:
            raise ValueError("`rebalance` is required with fixed `weights`")
        if self.schedule is not None and self.rebalance is not None:
            raise ValueError("`rebalance` applies to fixed `weights`, not to a `schedule`")


Sizing = Literal["equal_weight", "percent_equity"]


class _Sized(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sizing: Sizing = "equal_weight"
    percent: Annotated[float, msgspec.Meta(gt=0.0, le=1000.0)] | None = None

    def __post_init__(self) -> None:
        if self.sizing == "percent_equity" and self.percent is None:
            raise ValueError("`percent` is required with `percent_equity` sizing")
        if self.sizing == "equal_weight" and self.percent is not None:
            raise ValueError("`percent` applies to `percent_equity` sizing only")


class Signals(_Sized, tag="signals", tag_field="type"):
    strategy: StrategyName
    params: dict[ParamName, Any] = {}


class Rules(_Sized, tag="rules", tag_field="type"):
    entry: Rule
    exit: Rule


Allocation = TargetWeights | Signals | Rules


class PortfolioCreate(msgspec.Struct, forbid_unknown_fields=True):
    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)]
    timeframe: Timeframe
    initial_cash: Decimal
    allocation: Allocation
    commission: Decimal | CommissionModel = Decimal(0)
    slippage_bps: Decimal | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    benchmark: Symbol | None = None
    periods_per_year: PeriodsPerYear | None = None
    exits: ExitsIn | None = None
    allow_short: bool = False
    leverage: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 1.0
    whole_units: bool = False

    def __post_init__(self) -> None:
        positive(self, "initial_cash")
        if isinstance(self.commission, Decimal):
            non_negative(self, "commission")
            if self.commission >= 1:
                raise ValueError("`commission` is a fraction of notional and must be less than 1")
        non_negative(self, "slippage_bps")
        if self.slippage_bps is not None and self.slippage_bps >= 10_000:
            raise ValueError("`slippage_bps` must be less than 10000")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("`start` must not be after `end`")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("`symbols` lists a symbol twice")


_UNSET = msgspec.UNSET
Unset = msgspec.UnsetType
_SINGLE_ONLY = ("strategy", "symbol", "params")
_PORTFOLIO_ONLY = (
    "symbols",
    "allocation",
    "benchmark",
    "allow_short",
    "leverage",
    "whole_units",
)


def _about(form: str, text: str = "") -> msgspec.Meta:
    return msgspec.Meta(description=f"{form}. {text}." if text else f"{form}.")


_ONE = "One-instrument form only"
_MANY = "Portfolio form only"


class BacktestSubmission(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/backtests``: one instrument and a strategy (`symbol`, `strategy`,
    `params`), or a portfolio (`symbols`, `allocation` and the portfolio settings).

    One struct holds the fields of both forms so that the body is decoded and documented field by
    field (msgspec cannot decode an untagged union of two objects, and a discriminator field would
    break the contract). A field of the other form is refused naming it; `form()` gives the strict
    `BacktestCreate` or `PortfolioCreate` that the services take, and decoding already built it once,
    so its checks answer as decoding errors (400 naming the field).
    """

    __exactly_one_of__ = ("symbol", "symbols")  # the OpenAPI schema says so (app/lib/openapi_schema.py)

    timeframe: Timeframe
    initial_cash: Decimal
    commission: Annotated[
        Decimal | CommissionModel,
        msgspec.Meta(
            description="A fraction of notional; a portfolio also takes {rate, fixed, minimum}: "
            "fee per fill max(minimum, fixed + rate * notional)."
        ),
    ] = Decimal(0)
    slippage_bps: Decimal | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    strategy: Annotated[StrategyName, _about(_ONE, "A registered strategy (GET /strategies)")] | Unset = (
        _UNSET
    )
    symbol: Annotated[Symbol, _about(_ONE)] | Unset = _UNSET
    params: Annotated[dict[ParamName, Any], _about(_ONE, "The strategy's parameters")] | Unset = _UNSET
    symbols: (
        Annotated[
            list[Symbol],
            msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS, description=f"{_MANY}. Distinct symbols."),
        ]
        | Unset
    ) = _UNSET
    allocation: Annotated[Allocation, _about(_MANY)] | Unset = _UNSET
    benchmark: (
        Annotated[Symbol, _about(_MANY, "Adds alpha, beta, tracking error, information ratio")] | Unset
    ) = _UNSET
    periods_per_year: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=1_000_000,
                description="Both forms. Annualisation; default: from the data's calendar (252 for "
                "weekday-only daily bars, 365 with weekends, else bars per average year).",
            ),
        ]
        | Unset
    ) = _UNSET
    exits: (
        Annotated[
            ExitsIn,
            msgspec.Meta(
                description="Both forms. Stop-loss, take-profit and trailing stop inside bars, in percent."
            ),
        ]
        | Unset
    ) = _UNSET
    allow_short: Annotated[bool, _about(_MANY, "Default false")] | Unset = _UNSET
    leverage: Annotated[float, msgspec.Meta(gt=0.0, le=10.0, description=f"{_MANY}. Default 1.")] | Unset = (
        _UNSET
    )
    whole_units: Annotated[bool, _about(_MANY, "Default false")] | Unset = _UNSET

    def __post_init__(self) -> None:
        # The same bounds as the forms' (stated here too so that the OpenAPI schema carries them).
        positive(self, "initial_cash")
        non_negative(self, "slippage_bps")
        self.form()

    def is_portfolio(self) -> bool:
        return self.symbols is not _UNSET or self.allocation is not _UNSET

    def form(self) -> BacktestCreate | PortfolioCreate:
        """The strict form of this body; a ValueError naming the first field that does not belong."""
        portfolio = self.is_portfolio()
        given = {
            name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not _UNSET
        }
        for name in _SINGLE_ONLY if portfolio else _PORTFOLIO_ONLY:
            if name in given:
                which = (
                    "a one-instrument backtest (a portfolio names its strategy in `allocation`)"
                    if portfolio
                    else "a portfolio backtest (a body with `symbols` and `allocation`)"
                )
                raise ValueError(f"`{name}` belongs to {which}")
        if portfolio:
            for name in ("symbols", "allocation"):
                if name not in given:
                    raise ValueError(f"`{name}` is required for a portfolio backtest")
            return PortfolioCreate(**given)
        for name in ("strategy", "symbol"):
            if name not in given:
                raise ValueError(f"`{name}` is required (or `symbols` and `allocation` for a portfolio)")
        if isinstance(self.commission, CommissionModel):
            raise ValueError("`commission` of a one-instrument backtest is a fraction of notional")
        return BacktestCreate(**given)


class PositionsPoint(msgspec.Struct):
    ts: datetime
    quantities: dict[str, str]


class PositionsOut(msgspec.Struct):
    backtest_id: UUID
    symbols: list[str]
    bars: int
    points: int
    items: list[PositionsPoint]


# -------------------------------------------------------------------------------------------- walk-forward

Objective = RankMetric


class WalkForwardCreate(msgspec.Struct, forbid_unknown_fields=True):
    grid: Annotated[
        dict[ParamName, Annotated[list[Any], msgspec.Meta(min_length=1, max_length=1_000)]],
        msgspec.Meta(min_length=1, max_length=8),
    ]
    timeframe: Timeframe
    initial_cash: Decimal
    train_bars: Annotated[int, msgspec.Meta(ge=2, le=10_000_000)]
    test_bars: Annotated[int, msgspec.Meta(ge=2, le=10_000_000)]
    step_bars: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] | None = None
    objective: Objective = "sharpe"
    strategy: StrategyName | None = None
    params: dict[ParamName, Any] = {}
    symbol: Symbol | None = None
    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)] | None = None
    allocation: Signals | None = None
    commission: Decimal = Decimal(0)
    slippage_bps: Decimal | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None

    def __post_init__(self) -> None:
        positive(self, "initial_cash")
        non_negative(self, "commission", "slippage_bps")
        if self.commission >= 1:
            raise ValueError("`commission` is a fraction of notional and must be less than 1")
        if (self.strategy is None) == (self.allocation is None):
            raise ValueError("`strategy` (one symbol) or `allocation` (a portfolio): give exactly one")
        if self.strategy is not None and (self.symbol is None or self.symbols is not None):
            raise ValueError("`symbol` is required with `strategy` (and `symbols` is not allowed)")
        if self.allocation is not None and (self.symbols is None or self.symbol is not None):
            raise ValueError("`symbols` is required with `allocation` (and `symbol` is not allowed)")


class WindowOut(msgspec.Struct):
    index: int
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    params: dict[str, Any] | None
    in_sample: dict[str, Any] | None
    out_of_sample: dict[str, Any] | None


class WalkForwardOut(msgspec.Struct):
    id: UUID
    status: str
    objective: str
    windows_total: int
    windows_done: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    windows: list[WindowOut]
    metrics: dict[str, Any] | None
    equity: list[dict[str, Any]] | None
