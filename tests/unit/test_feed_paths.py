"""The bar path of a replay and the simulated random walk (app/domain/markets/feed_paths.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.domain.markets.feed_paths import bar_path, random_walks, to_tick

TS = datetime(2026, 1, 5, tzinfo=UTC)
TICK = Decimal("0.01")


def prices(path) -> list[str]:
    return [str(p.price) for p in path]


def test_up_bar_goes_open_low_high_close_and_down_bar_open_high_low_close():
    up = bar_path(TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), 3600, "ohlc", TICK)
    assert prices(up) == ["10.00", "9.00", "12.00", "11.00"]
    down = bar_path(TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("9.5"), 3600, "ohlc", TICK)
    assert prices(down) == ["10.00", "12.00", "9.00", "9.50"]
    flat = bar_path(TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("10"), 3600, "ohlc", TICK)
    assert prices(flat) == ["10.00", "9.00", "12.00", "10.00"]  # close == open counts as up
    assert [p.ts - TS for p in up] == [timedelta(0), timedelta(minutes=20), timedelta(minutes=40),
                                       timedelta(minutes=59, seconds=59)]
    assert [p.ends_bar for p in up] == [False, False, False, True]


def test_close_path_and_rounding_to_the_tick():
    (only,) = bar_path(TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11.005"), 86400, "close", TICK)
    assert (str(only.price), only.ts, only.ends_bar) == ("11.00", TS + timedelta(seconds=86399), True)
    assert to_tick(Decimal("11.015"), TICK) == Decimal("11.02")  # half-even
    assert to_tick(Decimal("101.3"), Decimal("0.5")) == Decimal("101.5")


def test_random_walk_is_seeded_per_symbol_on_the_tick_grid_and_positive():
    def run(seed: int, starts: list[str]) -> list[list[Decimal]]:
        walks = random_walks([Decimal(s) for s in starts], [Decimal("0.05"), Decimal("0.01")], seed=seed,
                             annual_volatility=3.0, drift=0.0, interval_ms=60_000)
        return [[w.step() for _ in range(3000)] for w in walks]

    a, b = run(1, ["50", "0.02"]), run(1, ["50", "0.02"])
    assert a == b  # same seed, same paths
    assert run(2, ["50", "0.02"])[0] != a[0]
    assert all(p % Decimal("0.05") == 0 for p in a[0])
    assert len(set(a[0])) > 50  # it moves
    assert min(a[1]) >= Decimal("0.01")  # never below one tick, even from a price of two ticks
    # A symbol's path depends on its position in the request, not on the other symbols.
    assert run(1, ["50", "7"])[0] == a[0]


def test_a_replayed_bar_rides_on_its_last_price_and_is_published_after_it():
    import json

    from app.domain.markets.services import prices as price_service

    bar = ("1h", TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), Decimal("500"))
    path = bar_path(TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), 3600, "ohlc", None, bar)
    assert [p.bar for p in path] == [None, None, None, bar]
    (close,) = bar_path(
        TS, Decimal("10"), Decimal("12"), Decimal("9"), Decimal("11"), 3600, "close", None, bar
    )
    assert close.bar == bar
    messages = list(price_service._price_messages("ABC", path))
    assert [name for name, _ in messages] == ["prices:ABC"] * 4 + ["bars:ABC:1h"]
    assert json.loads(messages[-1][1]) == {
        "type": "bar", "symbol": "ABC", "timeframe": "1h", "ts": "2026-01-05T00:00:00Z",
        "open": "10", "high": "12", "low": "9", "close": "11", "volume": "500",
    }
