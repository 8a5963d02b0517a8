"""Event-driven post-trade checks: after a price update commits, re-check the accounts holding the symbol.

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
import time
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def check_after_price(conn: AsyncConnection, symbol: str) -> None:
    t0 = time.perf_counter()
    try:
        counts = await check_holders(conn, symbol)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("risk_price_check_failed", symbol=symbol)
        return
    if counts["accounts"]:
        log.debug("risk_price_check", symbol=symbol, ms=round((time.perf_counter() - t0) * 1000, 2), **counts)
