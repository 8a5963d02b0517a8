"""Value types of the portfolio engine (portfolio.py): aligned bars, costs, plans, results (exits: exits.py).

Pure data with validation, no simulation and no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import numpy as np

from app.domain.backtesting.engine import Bars

Sizing = Literal["equal_weight", "percent_equity"]


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioBars:
    """Aligned OHLCV bars: ``ts`` is (n,), every price array (n, m) with one column per symbol.

    Raises ``ValueError`` for shape mismatches, non-finite values, non-positive open/close, unsorted or
    duplicate timestamps, or duplicate symbols.
    """

    symbols: tuple[str, ...]
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "ts", np.ascontiguousarray(self.ts, dtype=np.int64))
        m = len(self.symbols)
        if m == 0 or len(set(self.symbols)) != m:
            raise ValueError("bars: symbols must be non-empty and distinct")
        n = self.ts.size
        if self.ts.ndim != 1 or n == 0:
            raise ValueError("bars: no bars")
        for name in ("open", "high", "low", "close", "volume"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n, m):
                raise ValueError(f"bars: `{name}` must have shape ({n}, {m}), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"bars: `{name}` contains a non-finite value")
            object.__setattr__(self, name, arr)
        if np.any(self.open <= 0.0) or np.any(self.close <= 0.0):
            raise ValueError("bars: open and close prices must be greater than zero")
        if n > 1 and np.any(np.diff(self.ts) <= 0):
            raise ValueError("bars: `ts` must be strictly increasing")

    @property
    def n(self) -> int:
        return int(self.ts.size)

    @property
    def m(self) -> int:
        return len(self.symbols)

    def column(self, j: int) -> Bars:
        """Symbol ``j``'s bars as single-instrument ``Bars`` (what registered strategies take)."""
        return Bars(ts=self.ts, **self.series(j))

    def series(self, j: int) -> dict[str, np.ndarray]:
        """Symbol ``j``'s price arrays by name (what the rules language evaluates over)."""
        return {name: getattr(self, name)[:, j] for name in ("open", "high", "low", "close", "volume")}


@dataclass(frozen=True, slots=True)
class Commission:
    """Fee of one fill: ``max(minimum, fixed + rate * notional)``; nothing for no fill."""

    rate: float = 0.0
    fixed: float = 0.0
    minimum: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate", "fixed", "minimum"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"commission `{name}` must be a finite number >= 0")
        if self.rate >= 1.0:
            raise ValueError("commission `rate` must be a fraction below 1")

    def fee(self, notional: np.ndarray) -> np.ndarray:
        notional = np.asarray(notional, dtype=np.float64)
        fee = np.maximum(self.minimum, self.fixed + self.rate * notional)
        return np.where(notional > 0.0, fee, 0.0)

    def max_notional(self, cash: float) -> float:
        """The largest notional whose cost ``notional + fee`` is at most ``cash`` (0 if none)."""
        if cash <= 0.0:
            return 0.0
        # The fee is `minimum` up to the notional where fixed + rate * N reaches it, linear after.
        linear = (cash - self.fixed) / (1.0 + self.rate)
        if self.fixed + self.rate * linear >= self.minimum:
            return max(linear, 0.0)
        return max(cash - self.minimum, 0.0)

    def as_dict(self) -> dict[str, float]:
        return {"rate": self.rate, "fixed": self.fixed, "minimum": self.minimum}


@dataclass(frozen=True, slots=True, eq=False)
class WeightPlan:
    """Target weights (k, m) decided at ``decision_bars`` (k,), strictly increasing."""

    decision_bars: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class SignalPlan:
    """Direction per bar and symbol (n, m) in {-1, 0, 1}, held from the bar it is decided at."""

    direction: np.ndarray
    sizing: Sizing = "equal_weight"
    percent: float = 10.0


class PortfolioTrade(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    side: str  # "long" | "short"
    quantity: float
    entry_ts: int
    entry_price: float
    exit_ts: int | None
    exit_price: float | None
    pnl: float
    return_pct: float
    commission: float
    is_open: bool
    entry_bar: int
    exit_bar: int | None
    exit_reason: str | None  # "signal" | "stop_loss" | "trailing_stop" | "take_profit" | None (open)


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioResult:
    trades: list[PortfolioTrade]
    ts: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    # Position changes: quantities (k, m) holding from change_bars[i]'s close until the next change.
    change_bars: np.ndarray
    quantities: np.ndarray
    metrics: dict[str, float | int | None]
    input_hash: str
    fills: int
    periods_per_year: int
    benchmark_equity: np.ndarray | None = field(default=None, repr=False)

    def positions_at(self, bars: np.ndarray) -> np.ndarray:
        """Quantities held at the close of each of ``bars`` (k, m)."""
        idx = np.searchsorted(self.change_bars, np.asarray(bars), side="right") - 1
        return self.quantities[np.maximum(idx, 0)] * (idx >= 0)[:, None]
