"""Exits inside bars (stop-loss, take-profit, trailing stop), shared by both backtest engines.

One implementation for the one-instrument engine (engine.py) and the portfolio engine
(portfolio_book.py): pure numpy over the bars of a holding period, one column per open position.

The levels follow the paper exchange's stop and trailing-stop rules (app/domain/trading/rules.py:
``is_triggered``, ``trail_hwm``, ``trailing_stop_price``), in float64 and without the tick grid:

- stop ``avg_entry * (1 - sl)``, target ``avg_entry * (1 + tp)``, trailing stop ``best * (1 - tr)``
  where ``best`` is the highest price since the position opened (its entry open, each later open,
  each completed bar's high); mirrored for shorts (lowest price, levels above);
- the exchange's trigger rule (a sell stop triggers at a price at or below the stop) is applied to the
  bar's open first, so a gap through the stop fills at the open, then to the bar's low;
- stops fill as market orders (slippage against the trader), the target as a resting limit at its
  price; a bar that reaches both the stop and the target takes the stop (DOMAIN.md: pessimistic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXIT_REASONS = ("signal", "stop_loss", "trailing_stop", "take_profit")


@dataclass(frozen=True, slots=True)
class Exits:
    """Exit levels in percent of the entry (or of the best price since, for the trailing stop)."""

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None

    def __post_init__(self) -> None:
        for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0.0 < v < 100.0):
                raise ValueError(f"`{name}` must be a percentage above 0 and below 100")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.stop_loss_pct, self.take_profit_pct, self.trailing_stop_pct))

    def as_dict(self) -> dict[str, float | None]:
        """The levels as floats (what input hashes encode: 5 and 5.0 are one level)."""
        return {
            name: None if (v := getattr(self, name)) is None else float(v)
            for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct")
        }


@dataclass(frozen=True, slots=True, eq=False)
class ExitHits:
    """The result of ``first_exits``: for the columns ``cols`` (indices into the scanned columns) that
    exit, the row of their first exit bar, the fill price and the reason; ``extreme`` is every
    column's best price through the whole scanned period (meaningful for the columns that survive)."""

    cols: np.ndarray
    rows: np.ndarray
    price: np.ndarray
    reason: np.ndarray
    extreme: np.ndarray


def first_exits(
    opens: np.ndarray,
    highs: np.ndarray,
    lows: np.ndarray,
    side: np.ndarray,
    avg: np.ndarray,
    extreme: np.ndarray,
    exits: Exits,
    slip: float,
) -> ExitHits:
    """The first exit of each open position over bars (L, k): ``side`` (k,) is +1 / -1, ``avg`` the
    average entry price, ``extreme`` the best price before the first scanned bar (the entry open for
    a position opened at it). ``slip`` is the slippage as a fraction (stops only)."""
    s = np.asarray(side, dtype=np.float64)
    L, k = opens.shape
    adverse = np.where(s > 0, lows, highs)
    favourable = np.where(s > 0, highs, lows)
    # Signed space: multiplying by s turns every short comparison into the long one.
    neg_inf = np.full(k, -np.inf)
    fixed = s * avg * (1.0 - s * exits.stop_loss_pct / 100.0) if exits.stop_loss_pct is not None else neg_inf
    ext_after = np.maximum.accumulate(s * favourable, axis=0)  # signed best price through each bar
    ext0 = s * extreme
    ext_before = np.vstack([ext0[None, :], np.maximum(ext_after[:-1], ext0)]) if L > 1 else ext0[None, :]
    if exits.trailing_stop_pct is not None:
        f = exits.trailing_stop_pct / 100.0
        # Signed level of extreme * (1 - s f): s * e * (1 - s f) = (s e) * (1 - s f).
        gap_trail = ext_before * (1.0 - s * f)
        in_trail = np.maximum(ext_before, s * opens) * (1.0 - s * f)
    else:
        gap_trail = in_trail = np.full((L, k), -np.inf)
    gap_stop = np.maximum(fixed, gap_trail)
    in_stop = np.maximum(fixed, in_trail)
    sO, sA, sF = s * opens, s * adverse, s * favourable
    gap = sO <= gap_stop
    inside = sA <= in_stop
    if exits.take_profit_pct is not None:
        target = s * avg * (1.0 + s * exits.take_profit_pct / 100.0)
        profit = sF >= target
    else:
        target = np.full(k, np.inf)
        profit = np.zeros_like(gap)
    hit = gap | inside | profit
    any_hit = hit.any(axis=0)
    best = s * np.maximum(ext0, ext_after[-1])
    if not np.any(any_hit):
        empty = np.empty(0, dtype=np.int64)
        return ExitHits(empty, empty, np.empty(0), np.empty(0, dtype=object), best)
    j = np.flatnonzero(any_hit)
    r = np.argmax(hit, axis=0)[j]
    sj = s[j]
    is_gap = gap[r, j]
    is_stop = is_gap | inside[r, j]
    stop_level = np.where(is_gap, gap_stop[r, j], in_stop[r, j])
    stop_px = np.where(is_gap, opens[r, j], sj * in_stop[r, j]) * (1.0 - sj * slip)
    price = np.where(is_stop, stop_px, sj * target[j])
    trailing_binds = stop_level > fixed[j]
    reason = np.where(is_stop, np.where(trailing_binds, "trailing_stop", "stop_loss"), "take_profit")
    return ExitHits(j, r, price, reason.astype(object), best)


def first_exits_ragged(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    side: np.ndarray,
    avg: np.ndarray,
    exits: Exits,
    slip: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``first_exits`` for many holding periods of one instrument at once: position ``i`` is held over
    bars [starts[i], ends[i]) from the open of ``starts[i]`` (its best price before the first bar).

    Returns (exit bar or -1, fill price, reason) per position. The periods are padded into a few
    rectangles (lengths grouped by powers of two, so at most twice the bars are scanned); padding is NaN,
    which compares false, so the answers are those of one ``first_exits`` call per period, bit for bit.
    """
    k = starts.size
    bar = np.full(k, -1, dtype=np.int64)
    price = np.zeros(k)
    reason = np.full(k, "", dtype=object)
    if k == 0:
        return bar, price, reason
    lengths = ends - starts
    bucket = np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64)
    n = open_.size
    for j in np.unique(bucket).tolist():
        cols = np.flatnonzero(bucket == j)
        width = int(lengths[cols].max())
        offsets = np.arange(width)[:, None]
        rows = starts[cols][None, :] + offsets
        pad = offsets >= lengths[cols][None, :]
        rows = np.minimum(rows, n - 1)

        def take(a: np.ndarray, rows: np.ndarray = rows, pad: np.ndarray = pad) -> np.ndarray:
            out = a[rows]
            out[pad] = np.nan
            return out

        hits = first_exits(
            take(open_),
            take(high),
            take(low),
            side[cols],
            avg[cols],
            open_[starts[cols]],
            exits,
            slip,
        )
        at = cols[hits.cols]
        bar[at] = starts[at] + hits.rows
        price[at] = hits.price
        reason[at] = hits.reason
    return bar, price, reason
