"""ema_cross: like sma_cross, on exponential moving averages (seeded with an SMA)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from msgspec import Meta

from app.domain.backtesting.strategies.base import Strategy, StrategyParams, crossover_target, ema

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class EmaCrossParams(StrategyParams):
    fast: Annotated[int, Meta(ge=1, le=1000, description="Fast EMA span in bars")] = 12
    slow: Annotated[int, Meta(ge=2, le=5000, description="Slow EMA span in bars")] = 26
    allow_short: Annotated[bool, Meta(description="Reverse to short on a cross-under")] = False

    def __post_init__(self) -> None:
        if self.fast >= self.slow:
            raise ValueError(f"`fast` ({self.fast}) must be less than `slow` ({self.slow})")


def signals(bars: Bars, params: EmaCrossParams) -> np.ndarray:
    return crossover_target(
        ema(bars.close, params.fast), ema(bars.close, params.slow), allow_short=params.allow_short
    )


STRATEGY = Strategy(
    name="ema_cross",
    description=(
        "Buys when the fast exponential moving average (alpha = 2/(span+1), seeded with the SMA of the "
        "first span closes) crosses above the slow one; closes (or reverses to short if allow_short) "
        "when it crosses below."
    ),
    params_type=EmaCrossParams,
    signals_fn=signals,
    warmup_fn=lambda p: p.slow + 1,
)
