"""buy_and_hold: the benchmark. Wants to be long from the first bar on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from app.domain.backtesting.strategies.base import Strategy, StrategyParams

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class BuyAndHoldParams(StrategyParams):
    pass


def signals(bars: Bars, params: BuyAndHoldParams) -> np.ndarray:
    return np.ones(bars.close.shape, dtype=np.int8)


STRATEGY = Strategy(
    name="buy_and_hold",
    description="Buys at the second bar's open (the first fill possible) and holds to the end.",
    params_type=BuyAndHoldParams,
    signals_fn=signals,
    warmup_fn=lambda p: 1,
)
