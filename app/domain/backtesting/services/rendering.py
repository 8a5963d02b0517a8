"""Backtest rows, trades and metrics as API answers: floats as plain decimal strings."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

import numpy as np

from app.domain.backtesting.schemas import MONEY_METRICS, RUN_SETTINGS_KEY, BacktestOut, TradeOut
from app.lib.decimals import plain

EXIT_FIELDS = ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct")
# Money amounts of a backtest (PnL, commission, equity metrics) are rounded to the fee scale of live
# trading (app/domain/trading/rules.py: FEE_QUANTUM): the engine computes in floats, whose last bits are
# noise once printed as decimals ("198.40075000000002").
MONEY_PLACES = 8
_WIDE = Context(prec=60)  # quantize() at 8 places needs more than the default 28 digits for big amounts


def decimal_places(step: Decimal | None, default: int = MONEY_PLACES) -> int:
    """Decimal places of an instrument's tick or lot size ("0.05" -> 2, "1" -> 0, "10" -> 0)."""
    if step is None or not step.is_finite() or step <= 0:
        return default
    return max(0, -int(step.normalize().as_tuple().exponent))


def money(value: float | None, places: int = MONEY_PLACES, *, keep_zeros: bool = False) -> str | None:
    """A float amount as a plain decimal string rounded half-even to `places`; trailing zeros dropped
    unless `keep_zeros` (prices keep their tick's places: "198.40")."""
    if value is None or not math.isfinite(value):
        return None
    with localcontext(_WIDE):
        rounded = Decimal(repr(float(value) + 0.0)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
        return plain(rounded if keep_zeros else rounded.normalize())


def fill_price(value: float | None, tick_places: int) -> str | None:
    """A simulated fill price: to the fee scale (MONEY_PLACES), the float's noise gone; written with the
    tick's places when it lies on the tick grid ("198.40"), else with the places it needs: slippage
    moves a fill off the grid (open x 1.0005 = "78.529245"), and a price rounded to the tick would no
    longer add up to the trade's PnL."""
    exact = money(value)
    if exact is None:
        return None
    on_grid = Decimal(exact).quantize(Decimal(1).scaleb(-tick_places)) if tick_places < MONEY_PLACES else None
    return plain(on_grid) if on_grid is not None and on_grid == Decimal(exact) else exact


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics for storage: NaN and infinities become null, numpy scalars plain numbers."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, int | np.integer):
            out[key] = int(value)
        else:
            f = float(value)
            out[key] = f if math.isfinite(f) else None
    return out


def metrics_out(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {k: money(v) if k in MONEY_METRICS and v is not None else v for k, v in metrics.items()}


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 6) if a is not None and b is not None else None


def split_run_settings(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strategy parameters, run settings) of a one-instrument row's stored `params`."""
    if RUN_SETTINGS_KEY not in params:
        return params, {}
    rest = {k: v for k, v in params.items() if k != RUN_SETTINGS_KEY}
    return rest, dict(params[RUN_SETTINGS_KEY] or {})


def backtest_out(row: Any) -> BacktestOut:
    m = row._mapping
    portfolio = m["kind"] == "portfolio"
    params, settings = (m["params"], {}) if portfolio else split_run_settings(m["params"])
    exits = settings.get("exits")
    return BacktestOut(
        id=m["id"],
        status=m["status"],
        progress=float(m["progress"]),
        strategy=m["strategy"],
        params=params,
        symbol=m["symbol"],
        timeframe=m["timeframe"],
        start=m["start"],
        end=m["end"],
        initial_cash=m["initial_cash"],
        commission=m["commission"],
        slippage_bps=m["slippage_bps"],
        metrics=metrics_out(m["metrics"]),
        error=m["error"],
        input_hash=m["input_hash"],
        job_key=m["job_key"],
        sweep_id=m["sweep_id"],
        owner_id=m["owner_id"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        queued_seconds=_seconds(m["created_at"], m["started_at"]),
        run_seconds=_seconds(m["started_at"], m["finished_at"]),
        kind=m["kind"],
        symbols=list(m["params"].get("symbols") or []) if portfolio else None,
        exits={k: exits.get(k) for k in EXIT_FIELDS} if exits else None,
        periods_per_year=settings.get("periods_per_year"),
    )


def _utc(epoch_seconds: int | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)


def trade_out(
    index: int, t: dict[str, Any], price_places: int = MONEY_PLACES, qty_places: int = MONEY_PLACES
) -> TradeOut:
    """One stored trade: its fill prices as `fill_price` writes them, the quantity to its lot's places."""
    return TradeOut(
        index=index,
        side=t["side"],
        quantity=money(t["quantity"], qty_places),
        entry_ts=_utc(t["entry_ts"]),  # type: ignore[arg-type]
        entry_price=fill_price(t["entry_price"], price_places),  # type: ignore[arg-type]
        exit_ts=_utc(t["exit_ts"]),
        exit_price=fill_price(t["exit_price"], price_places),  # type: ignore[arg-type]
        pnl=money(t["pnl"]),
        return_pct=t["return_pct"],
        commission=money(t["commission"]),  # type: ignore[arg-type]
        is_open=t["is_open"],
        entry_bar=t["entry_bar"],
        exit_bar=t["exit_bar"],
        symbol=t.get("symbol"),
        exit_reason=t.get("exit_reason"),
    )
