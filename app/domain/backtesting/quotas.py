"""Per-user quotas on work waiting for or holding the shared workers.

Without them one trader can queue hundreds of backtests in seconds and every other user waits behind
them. The check runs in the transaction that inserts the new rows, after locking the user's row, so
concurrent submissions of one user are counted one after the other and the cap is exact.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.models import Backtest
from app.domain.backtesting.schemas import ACTIVE_STATUSES
from app.domain.identity.services import lock_user
from app.lib.errors import RateLimited

# What a client is told to wait before trying again: a short backtest finishes in well under this, and
# polling faster than it only spends the client's rate limit.
RETRY_AFTER_SECONDS = 10

Kind = Literal["backtests", "sweeps"]


async def enforce_active_quota(conn: AsyncConnection, owner_id: uuid.UUID, kind: Kind, limit: int) -> None:
    """429 (with Retry-After) when `owner_id` already has `limit` queued or running backtests (single
    runs) or sweeps (a sweep counts while any of its runs is queued or running). Call inside the
    transaction that inserts the new work."""
    await lock_user(conn, owner_id)
    active = Backtest.owner_id == owner_id, Backtest.status.in_(ACTIVE_STATUSES)
    if kind == "backtests":
        count = select(func.count()).where(*active, Backtest.sweep_id.is_(None))
    else:
        count = select(func.count(distinct(Backtest.sweep_id))).where(*active, Backtest.sweep_id.is_not(None))
    used = await conn.scalar(count.select_from(Backtest))
    if used >= limit:
        raise RateLimited(
            f"At most {limit} {kind} may be queued or running per user; wait for one to finish or cancel one",
            slug="quota-exceeded",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            limit=limit,
            active=used,
        )
