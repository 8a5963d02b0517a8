"""The strategy registry as the API shows it, and parameter checks that name the field."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from app.domain.backtesting.schemas import StrategyList, StrategyOut
from app.domain.backtesting.strategies import (
    STRATEGIES,
    UnknownStrategyError,
    params_json_schema,
    parse_params,
)
from app.lib.errors import invalid


def list_strategies() -> StrategyList:
    items = []
    for name in sorted(STRATEGIES):
        spec = STRATEGIES[name]
        items.append(
            StrategyOut(
                name=name,
                description=spec.description,
                params_schema=params_json_schema(name),
                defaults=msgspec.to_builtins(spec.default_params()),
                warmup_bars=spec.periods_needed(),
            )
        )
    return StrategyList(items=items)


def param_field(message: str) -> str | None:
    """The parameter a strategy-params error is about: msgspec's path (`$.fast`), else the first name
    in backticks ("`fast` (30) must be less than `slow` (10)", "unknown field `foo`")."""
    if (m := re.search(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)", message)) is not None:
        return m.group(1)
    if (m := re.search(r"`([A-Za-z_][A-Za-z0-9_]*)`", message)) is not None:
        return m.group(1)
    return None


def check_params(strategy: str, params: dict[str, Any], prefix: str = "params") -> dict[str, Any]:
    """Validated params with defaults filled in (what the run will use), or a 422 naming the field."""
    try:
        return msgspec.to_builtins(parse_params(strategy, params))
    except UnknownStrategyError as exc:
        raise invalid(str(exc), "strategy") from exc
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        name = param_field(str(exc))
        raise invalid(f"Invalid strategy parameter: {exc}", f"{prefix}.{name}" if name else prefix) from exc


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise invalid(str(UnknownStrategyError(strategy)), "strategy")
