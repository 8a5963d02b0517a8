"""Strategy registry. Adding a strategy = one small module exposing ``STRATEGY`` + one line below."""

from __future__ import annotations

from typing import Any

import msgspec

from app.domain.backtesting.strategies import (
    bollinger_breakout,
    buy_and_hold,
    ema_cross,
    momentum,
    rsi_reversion,
    sma_cross,
)
from app.domain.backtesting.strategies.base import Strategy, StrategyParams

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        sma_cross.STRATEGY,
        ema_cross.STRATEGY,
        rsi_reversion.STRATEGY,
        bollinger_breakout.STRATEGY,
        momentum.STRATEGY,
        buy_and_hold.STRATEGY,
    )
}


class UnknownStrategyError(ValueError):
    """The strategy name is not in ``STRATEGIES``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
        self.name = name


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(name) from None


def parse_params(strategy_name: str, params: dict[str, Any] | None) -> StrategyParams:
    """Validate and convert raw (JSON) params into the strategy's params struct, filling defaults.

    Raises ``UnknownStrategyError`` or ``msgspec.ValidationError`` (both ``ValueError``); the message
    names the offending field, e.g. "`fast` (30) must be less than `slow` (10)" or
    "Expected `int` >= 1 - at `$.fast`". Unknown parameter names are rejected.
    """
    strategy = get_strategy(strategy_name)
    return msgspec.convert(params or {}, strategy.params_type, strict=False)


def params_json_schema(name: str) -> dict[str, Any]:
    """JSON Schema of a strategy's parameters (constraints and defaults included)."""
    return msgspec.json.schema(get_strategy(name).params_type)


__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyParams",
    "UnknownStrategyError",
    "get_strategy",
    "params_json_schema",
    "parse_params",
]
