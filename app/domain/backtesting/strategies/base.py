"""Strategy type and the vectorised indicator helpers strategies are built from (pure numpy).

A strategy turns bars into a target array: ``target[t]`` in {-1, 0, 1} is the position direction it
wants after seeing bars ``0..t`` (decided at bar ``t``'s close; the engine fills it at ``t+1``'s open).
Every helper here is causal: the value at ``t`` uses only inputs at indices ``<= t``. Indicator values
during warm-up are NaN, and NaN never compares true, so no signal fires before an indicator exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

if TYPE_CHECKING:
    from app.domain.backtesting.engine import Bars


class StrategyParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for strategy parameter structs: immutable, and a misspelt parameter is an error."""


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    description: str
    params_type: type[StrategyParams]
    signals_fn: Callable[[Bars, Any], np.ndarray]
    warmup_fn: Callable[[Any], int]

    def default_params(self) -> StrategyParams:
        return self.params_type()

    def signals(self, bars: Bars, params: StrategyParams | None = None) -> np.ndarray:
        """Target array (int8, one entry per bar, values in {-1, 0, 1})."""
        if params is None:
            params = self.default_params()
        if not isinstance(params, self.params_type):
            raise TypeError(f"{self.name} expects {self.params_type.__name__}, got {type(params).__name__}")
        target = np.asarray(self.signals_fn(bars, params), dtype=np.int8)
        if target.shape != bars.close.shape:
            raise AssertionError(f"{self.name} returned {target.shape}, expected {bars.close.shape}")
        return target

    def periods_needed(self, params: StrategyParams | None = None) -> int:
        """Bars needed before the first signal can possibly fire (the warm-up, including bar t)."""
        return int(self.warmup_fn(params if params is not None else self.default_params()))


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average over ``n`` values, NaN for the first ``n - 1``.

    Window sums are differences of one running sum (np.cumsum is a sequential accumulate), which is
    O(N) for any window and bit-for-bit what a per-bar running-sum loop computes. The cost is
    cancellation of about ``N * eps`` relative, i.e. ~1e-10 on a million bars: only exact ties move.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if n < 1 or x.size < n:
        return out
    c = np.cumsum(x)
    out[n - 1] = c[n - 1] / n
    np.subtract(c[n:], c[:-n], out=out[n:])
    out[n:] /= n
    return out


def rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Population (ddof=0) standard deviation over ``n`` values, NaN during warm-up.

    Centering on the global mean first keeps the sum-of-squares cancellation small for price levels far
    from zero; tiny negative variances from rounding are clipped to 0.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if n < 1 or x.size < n:
        return out
    xc = x - x.mean()
    c1 = np.cumsum(xc)
    c2 = np.cumsum(xc * xc)
    s1 = c1[n - 1 :] - np.concatenate(([0.0], c1[:-n]))
    s2 = c2[n - 1 :] - np.concatenate(([0.0], c2[:-n]))
    mean = s1 / n
    out[n - 1 :] = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return out


def _ewm_from(x: np.ndarray, alpha: float, y0: float) -> np.ndarray:
    """``y_t = (1 - alpha) * y_{t-1} + alpha * x_t`` with ``y_{-1} = y0``, without a Python loop.

    Inside a block of K values the recursion has the closed form
    ``y_t = b^(t+1) y_prev + alpha b^t cumsum(b^-j x_j)`` (b = 1 - alpha). K is chosen so that b^-K
    stays below 1e150, keeping every term finite; blocks are chained through their last value.
    """
    beta = 1.0 - alpha
    size = x.size
    if size == 0:
        return np.empty_like(x)
    if beta <= 0.0:
        return x.copy()
    block = max(1, min(size, int(150.0 / -math.log10(beta)) if beta < 1.0 else size))
    powers = beta ** np.arange(block, dtype=np.float64)
    # All blocks at once as rows of a matrix (the tail padded with zeros, cut off at the end): the
    # within-block terms are one cumsum along the rows; only the chaining of the ~N/K carried values
    # is a Python loop. Each element is computed by the same operations in the same order as a
    # block-by-block loop, so the result is bit-for-bit that loop's.
    rows = -(-size // block)
    grid = np.zeros(rows * block)
    grid[:size] = x
    grid = grid.reshape(rows, block)
    grid *= 1.0 / powers
    np.cumsum(grid, axis=1, out=grid)
    grid *= alpha * powers
    carried = beta * powers
    prev = np.empty(rows)
    last_carry, last = float(carried[-1]), grid[:, -1].tolist()
    value = float(y0)
    for i in range(rows):
        prev[i] = value
        value = last_carry * value + last[i]
    grid += prev[:, None] * carried
    return grid.ravel()[:size].copy() if rows * block != size else grid.ravel()


def ema(x: np.ndarray, n: int, *, alpha: float | None = None) -> np.ndarray:
    """Exponential moving average seeded with the SMA of the first ``n`` values (the TA-Lib convention).

    ``alpha`` defaults to ``2 / (n + 1)``; Wilder smoothing is ``alpha = 1 / n``. NaN before index n-1.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if n < 1 or x.size < n:
        return out
    a = 2.0 / (n + 1.0) if alpha is None else float(alpha)
    seed = float(x[:n].sum()) / n
    out[n - 1] = seed
    out[n:] = _ewm_from(x[n:], a, seed)
    return out


def crosses_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bars t with ``a[t-1] < b[t-1]`` and ``a[t] > b[t]`` (strict, both defined)."""
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[:-1] < b[:-1]) & (a[1:] > b[1:])
    return out


def crosses_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bars t with ``a[t-1] > b[t-1]`` and ``a[t] < b[t]`` (strict, both defined)."""
    out = np.zeros(a.shape, dtype=bool)
    out[1:] = (a[:-1] > b[:-1]) & (a[1:] < b[1:])
    return out


def hold_events(n: int, *events: tuple[np.ndarray, int]) -> np.ndarray:
    """Target that takes ``value`` at each bar where its mask is set and holds it until the next event.

    Before the first event the target is 0 (flat). Where masks overlap, the later pair wins.
    """
    values = np.zeros(n, dtype=np.int8)
    marked = np.zeros(n, dtype=bool)
    for mask, value in events:
        values[mask] = value
        marked |= mask
    last = np.where(marked, np.arange(n), 0)
    np.maximum.accumulate(last, out=last)
    return values[last]


def crossover_target(fast: np.ndarray, slow: np.ndarray, *, allow_short: bool) -> np.ndarray:
    """Long from a cross-over; flat (or short if ``allow_short``) from a cross-under."""
    return hold_events(
        fast.size,
        (crosses_above(fast, slow), 1),
        (crosses_below(fast, slow), -1 if allow_short else 0),
    )
