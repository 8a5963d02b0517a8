"""Performance analytics over posted series (stateless) and over an account's equity snapshots.

The maths is app/domain/analytics/metrics.py (float64); this layer validates, maps its ValueErrors to
422 and picks the equity series of an account.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account, EquitySnapshot
from app.domain.analytics.metrics import performance_metrics
from app.domain.analytics.schemas import AccountPerformanceOut, PerformanceIn, PerformanceOut
from app.domain.identity.schemas import Principal
from app.domain.trading.book import load_book
from app.lib.db import utcnow
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
    """The metric set over the account's equity snapshots. Snapshots come at irregular times (one at
    creation, one after every fill, plus a scheduled job), so by default the series is the account's
    opening equity (the first snapshot in range) followed by the last snapshot of each UTC day
    (`frequency=1d`; `1h` per hour), and without `end` the current period closes at the equity valued
    now, so a new account has figures from its first minute instead of waiting for a second period's
    snapshot. `raw` takes every snapshot as one period, as stored."""
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
        points = [(r.ts, r.equity) for r in (await conn.execute(stmt)).all()]
    else:
        unit = _BUCKETS[frequency]
        points = await _period_closes(conn, principal, account_id, where, unit, live=end is None)
    # NUMERIC -> float64: the statistics are ratios, computed in floating point like the backtests.
    equity = np.asarray([float(value) for _, value in points], dtype=np.float64)
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
        first_ts=points[0][0] if points else None,
        last_ts=points[-1][0] if points else None,
    )


async def _period_closes(
    conn: AsyncConnection,
    principal: Principal,
    account_id: uuid.UUID,
    where: list[ColumnElement[bool]],
    unit: str,
    *,
    live: bool,
) -> list[tuple[datetime, Decimal]]:
    """(ts, equity): the first snapshot in range (the opening value, so the first period has a start),
    then the last snapshot of each `unit`; with `live`, the current period's close is the equity now."""
    bucket = func.date_trunc(unit, EquitySnapshot.ts, "UTC")
    columns = (EquitySnapshot.ts, EquitySnapshot.equity, EquitySnapshot.id)
    closes = (
        select(*columns)
        .where(*where)
        .ext(distinct_on(bucket))
        .order_by(bucket, EquitySnapshot.ts.desc(), EquitySnapshot.id.desc())
    )
    opening = select(*columns).where(*where).order_by(EquitySnapshot.ts, EquitySnapshot.id).limit(1)
    rows = (await conn.execute(closes)).all()
    first = (await conn.execute(opening)).first()
    points = [(r.ts, r.equity) for r in rows]
    if first is not None and rows and first.id != rows[0].id:
        points.insert(0, (first.ts, first.equity))
    if live and points:
        book = await load_book(conn, account_id, reader=principal)
        now = utcnow()
        if book is not None:
            if len(points) > 1 and _period_start(points[-1][0], unit) == _period_start(now, unit):
                points[-1] = (now, book.equity)
            else:
                points.append((now, book.equity))
    return points


def _period_start(ts: datetime, unit: str) -> datetime:
    ts = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return ts if unit == "hour" else ts.replace(hour=0)
