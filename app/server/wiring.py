"""The composition root: what every Tradedesk process registers before it serves a request or runs a job.

`wire()` registers the price hooks (matching inside the price transaction, with its quiet band; the
post-trade risk check and the stream publisher after commit), the stream messages a service transaction
(`app.lib.db.tx`) publishes on commit, the services a worker runs besides its jobs (stream channels,
the schedule loop), and every job module, by name, in one place. The API factory
(`create_app`) and the `tradedesk` CLI (the worker and every command that stores prices or enqueues
jobs) call it, so a worker process has exactly the hooks and jobs of an API process
(tests/integration/test_wiring.py runs a real worker and compares). No domain module registers
itself on import; the registries refuse to be used before `wire()` ran (app/lib/wired.py).

A job module is imported here with a plain import: a missing module fails the import of this module,
at start, instead of leaving its jobs unregistered. Every module of `app/` that declares a `@job` must
be listed (tests/unit/test_wiring_list.py reads the source to check).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any

from app.domain.backtesting import portfolio_tasks, recovery, walkforward_tasks
from app.domain.backtesting import tasks as backtesting_tasks
from app.domain.jobs import tasks as jobs_tasks
from app.domain.jobs.scheduler import running_scheduler
from app.domain.markets import events, feed_jobs
from app.domain.markets import tasks as markets_tasks
from app.domain.markets.services.prices import publish_committed_prices
from app.domain.risk import tasks as risk_tasks
from app.domain.risk.post_trade import check_after_price
from app.domain.streams.publish import discard_deferred, flush_deferred
from app.domain.streams.runtime import channels
from app.domain.system import tasks as system_tasks
from app.domain.system.tasks import wiring_report
from app.domain.trading import tasks as trading_tasks
from app.domain.trading.matching import match_resting_orders, resting_quiet_band
from app.lib.db import on_transaction_end
from app.lib.jobs import register_jobs
from app.lib.state import on_worker_start
from app.lib.wired import is_wired, mark_wired

JOB_MODULES: tuple[ModuleType, ...] = (
    system_tasks,
    markets_tasks,
    feed_jobs,
    trading_tasks,
    risk_tasks,
    backtesting_tasks,
    recovery,
    portfolio_tasks,
    walkforward_tasks,
    jobs_tasks,
)


def wire() -> None:
    """Register every price hook and job of the application (idempotent: later calls do nothing)."""
    if is_wired():
        return
    events.on_price(match_resting_orders, quiet_band=resting_quiet_band)
    events.on_price_committed(check_after_price)
    events.on_prices_committed(publish_committed_prices)
    on_transaction_end(discard_deferred, flush_deferred)
    # A worker process publishes the stream messages of what its jobs write (fills from price updates,
    # day expiry, risk alerts) to the API processes' subscribers; in-process workers use the API's.
    on_worker_start(worker_stream_channels, own_process_only=True)
    on_worker_start(running_scheduler)
    register_jobs(*JOB_MODULES)
    mark_wired()


def worker_stream_channels(ctx: dict[str, Any]) -> AbstractAsyncContextManager[Any]:
    return channels(ctx["settings"])


def describe() -> dict[str, list[str]]:
    """The hooks and jobs this process registered (the `system.wiring` job answers the same for a worker)."""
    return wiring_report()
