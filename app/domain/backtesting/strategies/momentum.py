"""momentum: long while the close is above the close `lookback` bars earlier, flat otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from msgspec import Meta

from app.domain.backtesting.strategies.base import Strategy, StrategyParams

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class MomentumParams(StrategyParams):
    lookback: Annotated[int, Meta(ge=1, le=5000, description="Return lookback in bars")] = 20


def signals(bars: Bars, params: MomentumParams) -> np.ndarray:
    close = bars.close
    n = params.lookback
    target = np.zeros(close.shape, dtype=np.int8)
    if close.size > n:
        target[n:] = close[n:] / close[:-n] - 1.0 > 0.0
    return target


STRATEGY = Strategy(
    name="momentum",
    description=(
        "Time-series momentum: long while close[t] / close[t - lookback] - 1 > 0, flat otherwise "
        "(flat during the first `lookback` bars)."
    ),
    params_type=MomentumParams,
    signals_fn=signals,
    warmup_fn=lambda p: p.lookback + 1,
)
