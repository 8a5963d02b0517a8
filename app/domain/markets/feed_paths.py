"""The prices a replay or a simulation feeds: the bar path of a candle and a random walk on the tick grid.

Pure (numpy, no I/O), so the feed jobs (feed_jobs.py) and their tests share one definition.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

import numpy as np

# A year of wall time: simulations run around the clock, so volatility scales with calendar seconds.
SECONDS_PER_YEAR = 365.25 * 86_400


def to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """`price` on the tick grid, half-even (candles from elsewhere may carry more decimals than the tick)."""
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * tick


class PricePoint(NamedTuple):
    """One price for the price path (services.feed_prices). A NamedTuple: a replay makes four per bar, and
    building a tuple costs a fraction of a frozen dataclass."""

    price: Decimal
    ts: datetime
    volume: Decimal | None = None  # quantity available at this price; None = unlimited
    ends_bar: bool = False  # the bar's last price (a replay counts bars by these)
    # A replay's bar on its last price: (timeframe, ts, open, high, low, close, volume), published on
    # `bars:<symbol>:<timeframe>` once that price is committed.
    bar: tuple[str, datetime, Decimal, Decimal, Decimal, Decimal, Decimal] | None = None


def bar_path(
    ts: datetime,
    open_: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    bar_seconds: int,
    path: str,
    tick: Decimal | None,
    bar: tuple[str, datetime, Decimal, Decimal, Decimal, Decimal, Decimal] | None = None,
) -> list[PricePoint]:
    """One bar as last prices (DOMAIN.md, "Market replay").

    `ohlc`: open; then low and high, low first for an up bar (close >= open) and high first for a down bar;
    then close. The timestamps are the bar's `ts` plus thirds of the timeframe, the close at the bar's end
    minus one second. `close`: the close alone, at the bar's end minus one second. Prices are rounded to
    `tick` (None: the caller knows they are on the grid already). `bar` rides on the last price.
    """
    if tick is not None:
        open_, high, low, close = (to_tick(p, tick) for p in (open_, high, low, close))
    end = ts + timedelta(seconds=bar_seconds - 1)
    if path == "close":
        return [PricePoint(close, end, None, True, bar)]
    third = timedelta(seconds=bar_seconds / 3)
    first, second = (low, high) if close >= open_ else (high, low)
    return [
        PricePoint(open_, ts),
        PricePoint(first, ts + third),
        PricePoint(second, ts + 2 * third),
        PricePoint(close, end, None, True, bar),
    ]


class RandomWalk:
    """Geometric Brownian motion sampled every `interval_ms`, published on the tick grid.

    The walk keeps its exact (unrounded) log price, so many steps smaller than a tick still add up; the
    published price is that level rounded to the tick, never below one tick. `drift` and
    `annual_volatility` are annual rates over calendar time. Deterministic for a seed.
    """

    def __init__(
        self,
        start: Decimal,
        tick: Decimal,
        *,
        annual_volatility: float,
        drift: float,
        interval_ms: int,
        rng: np.random.Generator,
    ) -> None:
        dt = interval_ms / 1000 / SECONDS_PER_YEAR
        self.tick = tick
        self._log_price = math.log(float(start))
        self._mean = (drift - annual_volatility**2 / 2) * dt
        self._scale = annual_volatility * math.sqrt(dt)
        self._rng = rng
        self._shocks: np.ndarray = np.empty(0)
        self._next = 0

    def step(self) -> Decimal:
        if self._next >= len(self._shocks):  # draw in blocks: one numpy call per 1,024 steps
            self._shocks = self._rng.standard_normal(1024)
            self._next = 0
        self._log_price += self._mean + self._scale * float(self._shocks[self._next])
        self._next += 1
        price = to_tick(Decimal(repr(math.exp(self._log_price))), self.tick)
        return max(price, self.tick)


def random_walks(
    starts: list[Decimal],
    ticks: list[Decimal],
    *,
    seed: int,
    annual_volatility: float,
    drift: float,
    interval_ms: int,
) -> list[RandomWalk]:
    """One walk per symbol, each with its own stream of the seed (numpy SeedSequence.spawn), so a symbol's
    path depends only on the seed and its position in the request."""
    streams = np.random.SeedSequence(seed).spawn(len(starts))
    return [
        RandomWalk(
            start,
            tick,
            annual_volatility=annual_volatility,
            drift=drift,
            interval_ms=interval_ms,
            rng=np.random.default_rng(stream),
        )
        for start, tick, stream in zip(starts, ticks, streams, strict=True)
    ]
