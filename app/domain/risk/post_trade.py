"""Event-driven post-trade checks: after a price update commits, re-check the accounts holding the symbol,
and, in the background, the limited groups of the accounts holding it or with an open order in it
(group_alerts.py).

Registered as a committed-price hook (app/domain/markets/events.py): it runs after the price transaction
(and the fills it made) committed, on the same connection, and never inside that transaction. Only the
accounts with an open position in the symbol and an enabled limit are checked, set-based, with the same
decision and the same edge-triggered alerts as the scheduled sweep (risk/monitoring.py), which stays as
the safety net for everything a price does not move (and for a check that failed here).

A failure is logged and swallowed: the price is already committed and its response must not turn into
an error because a risk check could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.risk import group_alerts
from app.domain.risk.services import check_accounts
from app.lib.log import get_logger

log = get_logger("app.risk")

BATCH = 1000  # one set-based batch for the 1,000 holders of the measured case

_HOLDERS_SQL = text(
    """
    SELECT p.account_id FROM positions p
     WHERE p.symbol = :symbol AND p.quantity <> 0
       -- a scalar subquery, not EXISTS: a probe of each holder's limits (ix_risk_limits_account_id), where
       -- EXISTS was planned as a hash of every enabled limit of the firm
       AND (SELECT true FROM risk_limits r WHERE r.account_id = p.account_id AND r.enabled LIMIT 1)
     ORDER BY p.account_id
    """
)


async def check_holders(conn: AsyncConnection, symbol: str) -> dict[str, int]:
    """Check every account holding `symbol` that has an enabled limit; returns the counts."""
    counts = {"accounts": 0, "violations": 0, "alerts": 0, "reduce_only": 0, "failed": 0}
    ids: list[uuid.UUID] = list((await conn.execute(_HOLDERS_SQL, {"symbol": symbol})).scalars())
    await conn.rollback()
    for start in range(0, len(ids), BATCH):
        await check_accounts(conn, ids[start : start + BATCH], counts)
    return counts


async def check_groups_of(conn: AsyncConnection, symbols: list[str]) -> int:
    """The post-trade check of the groups with an enabled limit whose sums prices of `symbols` can move
    (group_alerts.py); returns the alerts raised."""
    ids = await group_alerts.groups_moved_by(conn, symbols)
    await conn.rollback()
    return await group_alerts.check_groups(conn, ids) if ids else 0


# The group checks after prices run in the background, one at a time per process, on a connection of
# their own: a group's sums are over all its accounts (a firm of 10,000 accounts: ~0.2 s of PostgreSQL
# work), which the price request must not wait for. Symbols priced while a check runs are checked
# together by the next one, so a burst of prices costs one check more, not one per price. Hand-written
# rather than a job on the queue: a job per price would be the cost this avoids, and a lost check is
# caught by the sweep (and the next price).
class _GroupChecks:
    pending: ClassVar[set[str]] = set()
    task: ClassVar[asyncio.Task[None] | None] = None


def schedule_group_check(engine: AsyncEngine, symbol: str) -> None:
    _GroupChecks.pending.add(symbol)
    task = _GroupChecks.task
    loop = asyncio.get_running_loop()
    if task is None or task.done() or task.get_loop() is not loop:
        _GroupChecks.task = loop.create_task(_drain_group_checks(engine))


async def _drain_group_checks(engine: AsyncEngine) -> None:
    while _GroupChecks.pending:  # (re-read after every check: prices that came meanwhile)
        symbols = sorted(_GroupChecks.pending)
        _GroupChecks.pending.clear()
        t0 = time.perf_counter()
        try:
            async with engine.connect() as conn:
                raised = await check_groups_of(conn, symbols)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("risk_group_price_check_failed", symbols=symbols[:20])
            continue
        if raised:
            log.debug("risk_group_price_check", symbols=len(symbols), alerts=raised,
                      ms=round((time.perf_counter() - t0) * 1000, 2))


async def stop_group_checks() -> None:
    """Cancel this loop's group check in progress (an app shutting down, before its engine goes); the
    sweep checks the groups again."""
    task = _GroupChecks.task
    if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    _GroupChecks.pending.clear()


async def group_checks_settled() -> None:
    """Return once the group checks scheduled so far have run (tests). The checks may run on another
    thread's loop (a test client's app), so this polls rather than awaits the task."""
    while (task := _GroupChecks.task) is not None and not task.done():  # noqa: ASYNC110 (another loop's task)
        await asyncio.sleep(0.005)


async def check_after_price(conn: AsyncConnection, symbol: str) -> None:
    t0 = time.perf_counter()
    try:
        schedule_group_check(conn.engine, symbol)
    except Exception:
        log.exception("risk_group_price_check_failed", symbol=symbol)
    try:
        counts = await check_holders(conn, symbol)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("risk_price_check_failed", symbol=symbol)
        return
    if counts["accounts"]:
        log.debug("risk_price_check", symbol=symbol, ms=round((time.perf_counter() - t0) * 1000, 2), **counts)
