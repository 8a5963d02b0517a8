"""Deterministic synthetic OHLCV candles for demos, tests and benchmarks.

Log prices follow geometric Brownian motion whose per-bar variance follows GARCH(1,1), so calm and
turbulent stretches alternate as in real markets. Within a bar the path is a Brownian bridge from open
to close, and high/low are drawn from the exact distribution of that bridge's maximum/minimum, so the
wicks are consistent with the bar's volatility rather than an arbitrary percentage.

Annualisation assumes 252 trading days of 24 hours (``252 * 86400 / timeframe_seconds`` bars a year),
the desk's default ``periods_per_year`` for daily data: ``annual_volatility`` computed over generated
``1d`` closes with P = 252 comes out near ``annual_vol``. Bars are consecutive on the timeframe grid
(no weekend or session gaps).

Determinism: the same arguments and numpy version give identical candles (numpy ``PCG64``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from app.domain.markets.candles import (
    CSV_HEADER,
    MAX_INTEGER_DIGITS,
    MAX_SCALE,
    CandleRow,
    timeframe_seconds,
)

TRADING_DAYS_PER_YEAR = 252
DEFAULT_START = datetime(2020, 1, 1, tzinfo=UTC)

# Share of each bar's variance that arrives as the overnight-style gap between previous close and open.
_GAP_VARIANCE_SHARE = 0.05
# Median volume of a 1d bar; shorter bars scale it down proportionally.
_DAILY_MEDIAN_VOLUME = 1_000_000.0
# How strongly volume follows the size of the bar's shock, and how noisy it is otherwise (log units).
_VOLUME_SHOCK_LOADING = 0.5
_VOLUME_NOISE = 0.4
# float64 tick counts stay exact integers below 2**53; beyond that rounding to the tick would be meaningless.
_MAX_TICKS = 2.0**53


def generate_candles(
    *,
    bars: int,
    seed: int,
    timeframe: str = "1d",
    start: datetime | None = None,
    start_price: Decimal = Decimal("100"),
    tick_size: Decimal = Decimal("0.01"),
    annual_vol: float = 0.25,
    drift: float = 0.05,
    garch_alpha: float = 0.08,
    garch_beta: float = 0.90,
) -> list[CandleRow]:
    """``bars`` candles starting at ``start`` (default 2020-01-01T00:00Z, a boundary of every timeframe).

    ``annual_vol`` is the long-run volatility the GARCH variance reverts to, ``drift`` the annual
    expected log-price drift. ``garch_alpha``/``garch_beta`` are the shock and persistence weights;
    ``0, 0`` gives plain GBM with constant volatility. Prices are multiples of ``tick_size`` (rounded
    half-even, never below one tick); volumes are positive whole numbers.
    """
    tf = timeframe_seconds(timeframe)
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 0:
        raise ValueError(f"bars must be a non-negative int, got {bars!r}")
    tick_size = _to_decimal(tick_size)
    start_price = _to_decimal(start_price)
    if not tick_size.is_finite() or tick_size <= 0:
        raise ValueError(f"tick_size must be > 0, got {tick_size}")
    if tick_size.as_tuple().exponent < -MAX_SCALE:  # type: ignore[operator]
        raise ValueError(f"tick_size may have at most {MAX_SCALE} decimal places, got {tick_size}")
    if not start_price.is_finite() or start_price <= 0:
        raise ValueError(f"start_price must be > 0, got {start_price}")
    if not (math.isfinite(annual_vol) and annual_vol >= 0):
        raise ValueError(f"annual_vol must be a finite number >= 0, got {annual_vol!r}")
    if not math.isfinite(drift):
        raise ValueError(f"drift must be finite, got {drift!r}")
    if not (garch_alpha >= 0 and garch_beta >= 0 and garch_alpha + garch_beta < 1):
        raise ValueError("garch_alpha and garch_beta must be >= 0 with alpha + beta < 1 (stationary)")
    start = _aligned_start(start, tf, timeframe)
    if bars == 0:
        return []
    try:
        start + timedelta(seconds=tf * (bars - 1))
    except OverflowError:
        raise ValueError(f"{bars} bars of {timeframe} from {start} run past year 9999") from None

    periods_per_year = TRADING_DAYS_PER_YEAR * 86_400 / tf
    long_run_var = annual_vol**2 / periods_per_year
    mu = drift / periods_per_year
    omega = long_run_var * (1.0 - garch_alpha - garch_beta)

    # All randomness is drawn up front in a fixed order so that the output depends only on the seed.
    rng = np.random.Generator(np.random.PCG64(seed))
    shocks = rng.standard_normal((bars, 2))
    # 1 - U lies in (0, 1], keeping log() finite.
    uniforms = 1.0 - rng.random((bars, 2))
    volume_noise = rng.standard_normal(bars)

    # The GARCH recursion is sequential, so it runs as a plain loop over Python floats.
    variance = np.empty(bars)
    var_t = long_run_var
    gap_w = math.sqrt(_GAP_VARIANCE_SHARE)
    bar_w = math.sqrt(1.0 - _GAP_VARIANCE_SHARE)
    for t, (z_gap, z_bar) in enumerate(shocks.tolist()):
        variance[t] = var_t
        eps = math.sqrt(var_t) * (gap_w * z_gap + bar_w * z_bar)
        var_t = omega + garch_alpha * eps * eps + garch_beta * var_t

    sigma = np.sqrt(variance)
    gap = sigma * gap_w * shocks[:, 0]
    bar_sigma = sigma * bar_w
    move = (mu - 0.5 * variance) + bar_sigma * shocks[:, 1]

    # open[t] = close[t-1] + gap[t]; the first open is the start price itself (gap[0] goes unused).
    log_open = np.empty(bars)
    log_open[0] = math.log(float(start_price))
    log_open[1:] = log_open[0] + np.cumsum(move[:-1] + gap[1:])
    log_close = log_open + move

    # Maximum and minimum of a Brownian bridge from 0 to `move` with volatility `bar_sigma`, by
    # inverting P(max >= m) = exp(-2 m (m - move) / s^2).
    spread = -2.0 * (bar_sigma**2)[:, None] * np.log(uniforms)
    up = 0.5 * (move + np.sqrt(move**2 + spread[:, 0]))
    down = 0.5 * (move - np.sqrt(move**2 + spread[:, 1]))

    tick = float(tick_size)
    with np.errstate(over="ignore"):
        o_ticks = np.exp(log_open) / tick
        c_ticks = np.exp(log_close) / tick
        h_ticks = np.exp(log_open + up) / tick
        l_ticks = np.exp(log_open + down) / tick
    if (
        not np.all(np.isfinite(h_ticks))
        or h_ticks.max() >= _MAX_TICKS
        or h_ticks.max() * tick >= 10.0**MAX_INTEGER_DIGITS
    ):
        raise ValueError(
            "price path overflows the tick grid or NUMERIC(38, 18); lower drift, annual_vol or bars"
        )

    # np.rint rounds half to even. Rounding can push open/close past a wick, so the wicks are widened
    # to contain them afterwards; the floor of one tick keeps every price > 0.
    o_int = np.maximum(np.rint(o_ticks), 1.0).astype(np.int64)
    c_int = np.maximum(np.rint(c_ticks), 1.0).astype(np.int64)
    h_int = np.maximum(np.rint(h_ticks).astype(np.int64), np.maximum(o_int, c_int))
    l_int = np.maximum(np.minimum(np.rint(l_ticks).astype(np.int64), np.minimum(o_int, c_int)), 1)

    # Busy bars trade more: volume loads on the standardised absolute shock (mean |z| = sqrt(2/pi)).
    log_volume = (
        math.log(_DAILY_MEDIAN_VOLUME * tf / 86_400)
        + _VOLUME_SHOCK_LOADING * (np.abs(shocks[:, 1]) - math.sqrt(2.0 / math.pi))
        + _VOLUME_NOISE * volume_noise
    )
    volume = np.maximum(np.rint(np.exp(log_volume)), 1.0).astype(np.int64)

    to_price = _tick_converter(tick_size)
    step = timedelta(seconds=tf)
    rows: list[CandleRow] = []
    ts = start
    for o, h, lo, c, v in zip(
        o_int.tolist(), h_int.tolist(), l_int.tolist(), c_int.tolist(), volume.tolist(), strict=True
    ):
        rows.append(CandleRow(ts, to_price(o), to_price(h), to_price(lo), to_price(c), Decimal(v)))
        ts += step
    return rows


def _to_decimal(value: Decimal | int | str | float) -> Decimal:
    # A float argument means its shortest repr (0.01 -> "0.01"), not its binary expansion.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _aligned_start(start: datetime | None, tf: int, timeframe: str) -> datetime:
    if start is None:
        return DEFAULT_START
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    delta = start - datetime(1970, 1, 1, tzinfo=UTC)
    if delta.microseconds or (delta.days * 86_400 + delta.seconds) % tf:
        raise ValueError(f"start {start.isoformat()} is not aligned to the {timeframe} timeframe")
    return start


def _tick_converter(tick_size: Decimal) -> Callable[[int], Decimal]:
    # Built from a string so the result is an exact multiple of the tick whatever the decimal context.
    _, digits, exponent = tick_size.as_tuple()
    tick_units = int("".join(map(str, digits)))
    suffix = f"E{exponent}"

    def to_price(ticks: int) -> Decimal:
        return Decimal(f"{ticks * tick_units}{suffix}")

    return to_price


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def candles_to_csv(rows: Iterable[CandleRow]) -> str:
    """The ``text/csv`` upload body for ``rows``: the exact header, ``\\n`` line ends, fixed-point numbers."""
    lines = [CSV_HEADER]
    for r in rows:
        lines.append(f"{_rfc3339(r.ts)},{r.open:f},{r.high:f},{r.low:f},{r.close:f},{r.volume:f}")
    lines.append("")
    return "\n".join(lines)
