"""Test-only slowdowns for the latency gate's self-test, injected from outside the app.

`TRADEDESK_BENCH_INJECT` (set by `python -m benchmarks.gate run --inject-candidate SPEC` on the candidate
side only) selects them; unset, nothing here changes anything. SPEC is comma-separated `name=value`:

- `orders_list_sleep_ms=2`: an ASGI middleware in front of the app sleeps 2 ms before every
  `GET /api/v1/accounts/{id}/orders`, so the orders list answers 2 ms later and nothing else changes;
- `pre_trade_slowdown=0.15`: `app.domain.risk.checks.check_pre_trade` is replaced by a wrapper that
  busy-waits until the call has taken 15% longer than the original did.

Production code has no hook for either: the gate must catch a slowdown it cannot see coming.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ENV = "TRADEDESK_BENCH_INJECT"
KNOWN = ("orders_list_sleep_ms", "pre_trade_slowdown")
_ORDERS_LIST = re.compile(r"^/api/v1/accounts/[^/]+/orders$")


def parse(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in KNOWN:
            raise ValueError(f"{ENV}: unknown injection {item!r}; known: {', '.join(KNOWN)} (name=value)")
        out[name] = float(value)
    return out


def active() -> dict[str, float]:
    return parse(os.environ.get(ENV, ""))


def wrap_app(app: Any, injections: dict[str, float]) -> Any:
    """The app behind a middleware that delays the orders list, if asked; else the app itself."""
    delay = injections.get("orders_list_sleep_ms", 0.0) / 1000
    if not delay:
        return app

    async def slow_orders_list(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and _ORDERS_LIST.match(scope["path"]):
            await asyncio.sleep(delay)
        await app(scope, receive, send)

    return slow_orders_list


def slowed(func: Callable, fraction: float) -> Callable:
    """`func`, taking `fraction` longer per call (busy-waiting, so the CPU stays busy as in real work)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = func(*args, **kwargs)
        until = start + (time.perf_counter() - start) * (1 + fraction)
        while time.perf_counter() < until:
            pass
        return result

    return wrapper


@contextmanager
def patched_cores(injections: dict[str, float]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        if injections.get("pre_trade_slowdown"):
            from app.domain.risk import checks

            monkeypatch.setattr(checks, "check_pre_trade",
                                slowed(checks.check_pre_trade, injections["pre_trade_slowdown"]))
        yield
