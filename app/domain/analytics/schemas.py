"""Performance analytics payloads. Ratios and statistics are JSON numbers; an undefined metric is null
(never NaN or Infinity, which are not JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

MAX_POINTS = 1_000_000
Series = Annotated[list[float], msgspec.Meta(max_length=MAX_POINTS)]
PeriodsPerYear = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
Frequency = Literal["raw", "1h", "1d"]


class PerformanceIn(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of `equity` (values > 0) or `returns` (simple returns per period, >= -1)."""

    __exactly_one_of__ = ("equity", "returns")  # the OpenAPI schema says so (app/lib/openapi_schema.py)

    equity: Series | None = None
    returns: Series | None = None
    periods_per_year: PeriodsPerYear = 252
    # Annual; turned into a per-period rate as (1 + rf)^(1/P) - 1.
    risk_free_rate: float = 0.0


class PerformanceOut(msgspec.Struct):
    periods: int
    total_return: float | None
    cagr: float | None
    annual_volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    max_drawdown_duration: int | None
    calmar: float | None
    var_95: float | None
    cvar_95: float | None
    var_99: float | None
    cvar_99: float | None
    skew: float | None
    kurtosis: float | None
    best_period: float | None
    worst_period: float | None


class AccountPerformanceOut(PerformanceOut, kw_only=True):
    account_id: UUID
    frequency: Frequency
    periods_per_year: int
    risk_free_rate: float
    points: int
    first_ts: datetime | None
    last_ts: datetime | None
