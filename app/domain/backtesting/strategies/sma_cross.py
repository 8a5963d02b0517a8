"""sma_cross: long on a fast/slow simple-moving-average cross-over, flat (or short) on a cross-under."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from msgspec import Meta

from app.domain.backtesting.strategies.base import Strategy, StrategyParams, crossover_target, sma

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class SmaCrossParams(StrategyParams):
    fast: Annotated[int, Meta(ge=1, le=1000, description="Fast SMA length in bars")] = 10
    slow: Annotated[int, Meta(ge=2, le=5000, description="Slow SMA length in bars")] = 30
    allow_short: Annotated[bool, Meta(description="Reverse to short on a cross-under")] = False

    def __post_init__(self) -> None:
        if self.fast >= self.slow:
            raise ValueError(f"`fast` ({self.fast}) must be less than `slow` ({self.slow})")


def signals(bars: Bars, params: SmaCrossParams) -> np.ndarray:
    return crossover_target(
        sma(bars.close, params.fast), sma(bars.close, params.slow), allow_short=params.allow_short
    )


STRATEGY = Strategy(
    name="sma_cross",
    description=(
        "Buys when the fast simple moving average of closes crosses above the slow one; closes the "
        "position (or reverses to short if allow_short) when it crosses below."
    ),
    params_type=SmaCrossParams,
    signals_fn=signals,
    # The first cross needs both SMAs at t-1, i.e. t >= slow.
    warmup_fn=lambda p: p.slow + 1,
)
