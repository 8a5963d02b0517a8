"""Small built-in jobs: used by operators to check the pipeline end to end, and by the test suite."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from app.domain.markets import events
from app.lib.db import transaction_outboxes
from app.lib.jobs import job, registry
from app.lib.state import worker_services


class EchoKwargs(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(max_length=10_000)] = "pong"


class SleepKwargs(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 1.0
    fail: bool = False


@job("system.echo", EchoKwargs, timeout=10)
async def echo(ctx: dict[str, Any], *, message: str = "pong") -> dict[str, Any]:
    """Return the message and the worker's database round trip: proves queue, worker and DB work."""
    from sqlalchemy import text

    async with ctx["engine"].connect() as conn:
        one = await conn.scalar(text("SELECT 1"))
    return {"message": message, "db": one}


@job("system.sleep", SleepKwargs, timeout=3600)
async def sleep(ctx: dict[str, Any], *, seconds: float = 1.0, fail: bool = False) -> dict[str, Any]:
    """Sleep (reporting progress) and optionally fail: exercises abort, timeout and retry paths."""
    job_obj = ctx.get("job")
    steps = max(int(seconds * 10), 1)
    for i in range(steps):
        await asyncio.sleep(seconds / steps)
        if job_obj is not None and i % 5 == 0:
            await job_obj.update(progress=(i + 1) / steps)
    if fail:
        raise RuntimeError(f"failed on purpose (attempt {getattr(job_obj, 'attempts', '?')})")
    return {"slept": seconds}


def _qualified(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def wiring_report() -> dict[str, list[str]]:
    """What this process has registered (app/server/wiring.py), by qualified name, hooks in the order they
    run and jobs sorted: what every API process and every worker must agree on."""
    return {
        "price_hooks": [_qualified(h) for h in events.PRICE_HOOKS],
        "quiet_bands": [f"{_qualified(h)} <- {_qualified(p)}" for h, p in events.QUIET_BANDS.items()],
        "committed_price_hooks": [_qualified(h) for h in events.COMMITTED_PRICE_HOOKS],
        "committed_price_observers": [_qualified(o) for o in events.COMMITTED_PRICE_OBSERVERS],
        "transaction_outboxes": [f"{_qualified(d)} / {_qualified(f)}" for d, f in transaction_outboxes()],
        "worker_services": [_qualified(svc) + " (own process)" * own for svc, own in worker_services()],
        "jobs": sorted(registry()),
    }


@job("system.wiring", timeout=10, public=False)
async def wiring(ctx: dict[str, Any]) -> dict[str, list[str]]:
    """The worker's price hooks and jobs (`wiring_report`), to compare with an API process's."""
    return wiring_report()
