"""Performance analytics over posted series (stateless) and over an account's equity snapshots.

The maths is app/domain/analytics/metrics.py (float64); this layer validates, maps its ValueErrors to
422 and picks the equity series of an account.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account, EquitySnapshot
from app.domain.analytics.metrics import performance_metrics
from app.domain.analytics.schemas import AccountPerformanceOut, PerformanceIn, PerformanceOut
from app.domain.identity.schemas import Principal
from app.lib.errors import field_from_message, invalid, not_found

# Below this many points the maths takes well under a millisecond: not worth a thread hop.
THREAD_THRESHOLD = 50_000
_BUCKETS = {"1h": "hour", "1d": "day"}


def _metrics(**kwargs) -> dict:
    try:
        return performance_metrics(**kwargs)
    except ValueError as exc:
        raise invalid(str(exc), field_from_message(str(exc), "body")) from exc


async def performance(data: PerformanceIn) -> PerformanceOut:
    if (data.equity is None) == (data.returns is None):
        raise invalid(
            "Give exactly one of `equity` or `returns`", "equity" if data.equity is None else "returns"
        )
    kwargs = {
        "equity": data.equity,
        "returns": data.returns,
        "periods_per_year": data.periods_per_year,
        "risk_free_rate": data.risk_free_rate,
    }
    size = len(data.equity if data.equity is not None else data.returns or [])
    if size > THREAD_THRESHOLD:
        metrics = await asyncio.to_thread(_metrics, **kwargs)
    else:
        metrics = _metrics(**kwargs)
    return PerformanceOut(**metrics)


def returns_with_ruin(equity: np.ndarray) -> np.ndarray:
    """Period returns of an equity series that may touch zero or below (a blown-up short): wiped out
    (-100 %) at the first such point and flat afterwards, like the backtest engine treats it."""
    ruined = np.flatnonzero(equity <= 0.0)
    if ruined.size == 0 or equity.size < 2:
        return equity[1:] / equity[:-1] - 1.0
    first = int(ruined[0])
    r = np.zeros(equity.size - 1)
    if first == 0:
        return r
    r[: first - 1] = equity[1:first] / equity[: first - 1] - 1.0
    r[first - 1] = -1.0
    return r


async def account_performance(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    *,
    frequency: str = "1d",
    periods_per_year: int = 252,
    risk_free_rate: float = 0.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AccountPerformanceOut:
    """The metric set over the account's equity snapshots. Snapshots come at irregular times (every
    fill plus a scheduled job), so by default the series is the last snapshot of each UTC day
    (`frequency=1d`; `1h` per hour; `raw` takes every snapshot as one period)."""
    if await conn.scalar(select(Account.id).where(Account.id == account_id, visible_to(principal))) is None:
        raise not_found("Account")
    where = [EquitySnapshot.account_id == account_id]
    if start is not None:
        where.append(EquitySnapshot.ts >= start)
    if end is not None:
        where.append(EquitySnapshot.ts <= end)
    if frequency == "raw":
        stmt = (
            select(EquitySnapshot.ts, EquitySnapshot.equity)
            .where(*where)
            .order_by(EquitySnapshot.ts, EquitySnapshot.id)
        )
    else:
        bucket = func.date_trunc(_BUCKETS[frequency], EquitySnapshot.ts, "UTC")
        stmt = (
            select(EquitySnapshot.ts, EquitySnapshot.equity)
            .where(*where)
            .ext(distinct_on(bucket))
            .order_by(bucket, EquitySnapshot.ts.desc(), EquitySnapshot.id.desc())
        )
    rows = (await conn.execute(stmt)).all()
    # NUMERIC -> float64: the statistics are ratios, computed in floating point like the backtests.
    equity = np.asarray([float(r.equity) for r in rows], dtype=np.float64)
    if equity.size and np.all(equity > 0.0):
        metrics = _metrics(equity=equity, periods_per_year=periods_per_year, risk_free_rate=risk_free_rate)
    else:
        metrics = _metrics(
            returns=returns_with_ruin(equity) if equity.size else np.empty(0),
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
        )
    return AccountPerformanceOut(
        **metrics,
        account_id=account_id,
        frequency=frequency,  # type: ignore[arg-type]
        periods_per_year=periods_per_year,
        risk_free_rate=risk_free_rate,
        points=int(equity.size),
        first_ts=rows[0].ts if rows else None,
        last_ts=rows[-1].ts if rows else None,
    )
