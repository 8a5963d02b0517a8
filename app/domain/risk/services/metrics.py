"""An account's risk metrics: exposure, drawdown, VaR (historical, parametric, Monte Carlo) and the
utilisation of its limits."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.models import Account, EquitySnapshot
from app.domain.identity.schemas import Principal
from app.domain.risk import calculations, checks, pretrade
from app.domain.risk.models import RiskLimit
from app.domain.risk.monitoring import as_check_limit as _as_check_limit
from app.domain.risk.schemas import (
    LimitUsage,
    MetricsOut,
    VarMethodOut,
    VarOut,
)
from app.domain.risk.services.mappers import (
    LIMIT_COLS,
    as_float,
)
from app.domain.trading.book import AccountBook, load_book
from app.lib.db import utcnow
from app.lib.errors import not_found
from app.lib.log import get_logger

log = get_logger("app.risk")

ZERO = Decimal(0)
_HUNDRED = Decimal(100)


async def peak_and_state(conn: AsyncConnection, book: AccountBook) -> tuple[checks.PortfolioState, Decimal]:
    """The portfolio as the limits measure it, with drawdown from the highest equity ever observed."""
    state = pretrade.portfolio_state(book)
    snapshot_peak = await conn.scalar(
        select(func.max(EquitySnapshot.equity)).where(EquitySnapshot.account_id == book.id)
    )
    equity = state.equity
    peak = max(book.peak_equity, snapshot_peak if snapshot_peak is not None else book.peak_equity, equity)
    fraction = calculations.drawdown(equity, peak)
    state = replace(state, drawdown_pct=fraction * _HUNDRED if fraction is not None else ZERO)
    return state, peak


CLOSES_SQL = text(
    """
    SELECT s.symbol, c.ts, c.close
      FROM unnest(CAST(:symbols AS text[])) AS s(symbol)
      CROSS JOIN LATERAL (
        SELECT ts, close FROM candles
         WHERE symbol = s.symbol AND timeframe = '1d'
         ORDER BY ts DESC
         LIMIT :lookback) c
    """
)


async def _var(
    conn: AsyncConnection,
    positions: dict[str, tuple[Decimal, Decimal]],
    lookback: int,
    exposure: dict[str, Any],
) -> VarOut:
    held = sorted(s for s, (q, _) in positions.items() if q != 0)
    if not held:
        # A flat book has no market risk: zero, not "unknown".
        return VarOut(
            lookback=lookback,
            observations=0,
            var_95=0.0,
            cvar_95=0.0,
            var_99=0.0,
            cvar_99=0.0,
            var_95_amount=ZERO,
            cvar_95_amount=ZERO,
            var_99_amount=ZERO,
            cvar_99_amount=ZERO,
            annual_volatility=0.0,
            base_amount=ZERO,
            missing_history=[],
            parametric=_FLAT_METHOD,
            monte_carlo=_FLAT_METHOD,
        )
    quantities = [positions[s][0] for s in held]
    # Same rule as calculations.returns_base, kept exact: long-only value, else gross exposure.
    base: Decimal = exposure["net"] if all(q >= 0 for q in quantities) else exposure["gross"]
    series: dict[str, dict[datetime, float]] = {s: {} for s in held}
    for symbol, ts, close in await conn.execute(CLOSES_SQL, {"symbols": held, "lookback": lookback}):
        series[symbol][ts] = float(close)
    missing = [s for s in held if not series[s]]
    common = sorted(set.intersection(*(set(v) for v in series.values()))) if not missing else []
    models = None
    if len(common) >= 2:
        closes = np.array([[series[s][ts] for s in held] for ts in common], dtype=np.float64)
        q = np.array([float(q) for q in quantities])
        returns = calculations.portfolio_returns(q, closes)
        marks = np.array([float(positions[s][1]) for s in held])  # the prices `exposure` is valued at
        models = calculations.model_var_report(q, closes, base, marks=marks)
    else:
        returns = np.empty(0, dtype=np.float64)
    report = calculations.var_report(returns, base)
    return VarOut(
        lookback=lookback,
        observations=int(report["observations"]),  # type: ignore[call-overload]
        var_95=as_float(report["var_95"]),
        cvar_95=as_float(report["cvar_95"]),
        var_99=as_float(report["var_99"]),
        cvar_99=as_float(report["cvar_99"]),
        var_95_amount=report["var_95_amount"],
        cvar_95_amount=report["cvar_95_amount"],  # type: ignore[arg-type]
        var_99_amount=report["var_99_amount"],
        cvar_99_amount=report["cvar_99_amount"],  # type: ignore[arg-type]
        annual_volatility=as_float(calculations.annualised_volatility(returns)),
        base_amount=base,
        missing_history=missing,
        parametric=_method_out(models["parametric"]) if models else None,
        monte_carlo=_method_out(models["monte_carlo"]) if models else None,
    )


_FLAT_METHOD = VarMethodOut(
    var_95=0.0,
    cvar_95=0.0,
    var_99=0.0,
    cvar_99=0.0,
    var_95_amount=ZERO,
    cvar_95_amount=ZERO,
    var_99_amount=ZERO,
    cvar_99_amount=ZERO,
)


def _method_out(report: dict[str, Any]) -> VarMethodOut:
    return VarMethodOut(
        **{k: as_float(v) if isinstance(v, float) else v for k, v in report.items()}  # type: ignore[arg-type]
    )


def _usage(state: checks.PortfolioState, rows: list[Any]) -> list[LimitUsage]:
    limits = [_as_check_limit(r) for r in rows]
    breached = {b.limit_id for b in checks.current_breaches(state, limits)}
    out = []
    for row, lim in zip(rows, limits, strict=True):
        used = checks.current_value(state, lim)
        util = checks.utilisation(state, lim)
        level = None
        if util is not None:
            pct = util * _HUNDRED
            level = "critical" if pct >= _HUNDRED else "warning" if pct >= lim.warn_at_pct else "ok"
        out.append(
            LimitUsage(
                id=row.id,
                limit_type=row.limit_type,
                symbol=row.symbol,
                value=row.value,
                warn_at_pct=row.warn_at_pct,
                used=used if used is not None and used.is_finite() else None,
                utilisation=as_float(util),
                alert_level=row.alert_level,
                current_level=level,  # type: ignore[arg-type]
                breached=lim.id in breached,
            )
        )
    return out


async def enabled_limits(conn: AsyncConnection, account_id: uuid.UUID, *, lock: bool = False) -> list[Any]:
    stmt = (
        select(*LIMIT_COLS)
        .where(RiskLimit.account_id == account_id, RiskLimit.enabled)
        .order_by(RiskLimit.created_at, RiskLimit.id)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list((await conn.execute(stmt)).all())


_ORDERS_LAST_MINUTE_SQL = text(
    "SELECT count(*) FROM orders WHERE account_id = :a AND created_at > now() - interval '60 seconds'"
)


async def risk_metrics(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, lookback: int = 250
) -> MetricsOut:
    book = await load_book(conn, account_id, with_stats=True, reader=principal)
    if book is None:
        raise not_found("Account")
    base_currency = await conn.scalar(select(Account.base_currency).where(Account.id == account_id))
    # The book's read counts the last minute's orders only for accounts with a max_orders_per_minute limit
    # (placement's read skips the index range scan otherwise); the metrics always show the real count.
    book.orders_last_minute = await conn.scalar(_ORDERS_LAST_MINUTE_SQL, {"a": account_id}) or 0
    state, peak = await peak_and_state(conn, book)
    rows = await enabled_limits(conn, account_id)
    equity = state.equity
    exposure = calculations.exposures(state.positions, equity)
    var = await _var(conn, state.positions, lookback, exposure)
    fraction = calculations.drawdown(equity, peak)
    return MetricsOut(
        account_id=account_id,
        as_of=utcnow(),
        base_currency=base_currency or "",
        equity=equity,
        cash=book.cash,
        gross_exposure=exposure["gross"],
        net_exposure=exposure["net"],  # type: ignore[arg-type]
        leverage=as_float(exposure["leverage"]),
        concentration_pct=as_float(exposure["concentration_pct"]),
        largest_symbol=exposure["largest_symbol"],  # type: ignore[arg-type]
        daily_pnl=equity - book.day_open_equity if book.day_open_equity is not None else None,
        day_open_equity=book.day_open_equity,
        peak_equity=peak,
        drawdown=as_float(fraction),
        trading_state=book.trading_state,
        open_orders=book.open_orders,
        orders_last_minute=book.orders_last_minute,
        var=var,
        limits=_usage(state, rows),
    )
