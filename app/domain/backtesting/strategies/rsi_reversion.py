"""rsi_reversion: buy when Wilder's RSI crosses below `lower` (oversold), exit when it crosses above
`upper` (overbought)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from msgspec import Meta

from app.domain.backtesting.strategies.base import (
    Strategy,
    StrategyParams,
    crosses_above,
    crosses_below,
    ema,
    hold_events,
)

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class RsiReversionParams(StrategyParams):
    period: Annotated[int, Meta(ge=2, le=1000, description="RSI period in bars")] = 14
    lower: Annotated[float, Meta(gt=0, lt=100, description="Buy when RSI crosses below this")] = 30.0
    upper: Annotated[float, Meta(gt=0, lt=100, description="Exit when RSI crosses above this")] = 70.0

    def __post_init__(self) -> None:
        if self.lower >= self.upper:
            raise ValueError(f"`lower` ({self.lower}) must be less than `upper` ({self.upper})")


def rsi(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI: average gain / loss seeded with the mean of the first `period` changes, then
    smoothed with alpha = 1/period. Defined from bar `period` on (NaN before).

    No losses gives 100; no gains and no losses (a flat window) gives 50, the neutral value.
    """
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    if close.size <= period:
        return out
    delta = np.diff(close)
    avg_gain = ema(np.maximum(delta, 0.0), period, alpha=1.0 / period)[period - 1 :]
    avg_loss = ema(np.maximum(-delta, 0.0), period, alpha=1.0 / period)[period - 1 :]
    # Whole-array operations instead of boolean-mask indexing (which gathers and scatters copies): a
    # zero loss gives an infinite ratio, i.e. exactly 100; no change at all (0 / 0) is set to 50 after.
    values = out[period:]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(avg_gain, avg_loss, out=values)
    values += 1.0
    np.divide(100.0, values, out=values)
    np.subtract(100.0, values, out=values)
    np.copyto(values, 50.0, where=(avg_loss == 0.0) & (avg_gain == 0.0))
    return out


def signals(bars: Bars, params: RsiReversionParams) -> np.ndarray:
    r = rsi(bars.close, params.period)
    lower = np.full(r.shape, params.lower)
    upper = np.full(r.shape, params.upper)
    return hold_events(r.size, (crosses_below(r, lower), 1), (crosses_above(r, upper), 0))


STRATEGY = Strategy(
    name="rsi_reversion",
    description=(
        "Mean reversion on Wilder's RSI: buys when RSI crosses below `lower`, goes flat when it "
        "crosses above `upper` (strict crosses, as for moving averages). Long/flat only."
    ),
    params_type=RsiReversionParams,
    signals_fn=signals,
    # RSI exists from bar `period`; a cross also needs the bar before.
    warmup_fn=lambda p: p.period + 2,
)
