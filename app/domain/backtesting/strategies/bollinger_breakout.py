"""bollinger_breakout: long when the close breaks above the upper Bollinger band, flat when it falls
below the middle band."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from msgspec import Meta

from app.domain.backtesting.strategies.base import (
    Strategy,
    StrategyParams,
    hold_events,
    rolling_std,
    sma,
)

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars

# A band narrower than this (relative to the price) is rounding noise of a flat window, not a band.
_FLAT_BAND_RTOL = 1e-9


class BollingerBreakoutParams(StrategyParams):
    period: Annotated[int, Meta(ge=2, le=1000, description="Band window in bars")] = 20
    k: Annotated[float, Meta(gt=0, le=10, description="Band width in standard deviations")] = 2.0


def signals(bars: Bars, params: BollingerBreakoutParams) -> np.ndarray:
    close = bars.close
    middle = sma(close, params.period)
    sd = rolling_std(close, params.period)
    upper = middle + params.k * sd
    breakout = (close > upper) & (sd > _FLAT_BAND_RTOL * np.abs(middle))
    return hold_events(close.size, (breakout, 1), (close < middle, 0))


STRATEGY = Strategy(
    name="bollinger_breakout",
    description=(
        "Buys when the close is above the upper Bollinger band (SMA(period) + k population standard "
        "deviations); goes flat when the close is below the middle band (the SMA). Long/flat only."
    ),
    params_type=BollingerBreakoutParams,
    signals_fn=signals,
    warmup_fn=lambda p: p.period,
)
