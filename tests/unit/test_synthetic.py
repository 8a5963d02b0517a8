from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.markets.candle_csv import parse_csv_stream
from app.domain.markets.candles import CSV_HEADER, TIMEFRAMES, CandleRow, validate_batch
from app.domain.markets.synthetic import DEFAULT_START, candles_to_csv, generate_candles


def parse(text: str, timeframe: str) -> list[CandleRow]:
    async def source() -> AsyncIterator[bytes]:
        data = text.encode()
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    async def collect() -> list[CandleRow]:
        return [row async for batch in parse_csv_stream(source(), timeframe, 1_000) for row in batch]

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(collect())
    finally:
        loop.close()


def log_returns(rows: list[CandleRow]) -> np.ndarray:
    return np.diff(np.log(np.array([float(r.close) for r in rows])))


def lag1_autocorrelation(x: np.ndarray) -> float:
    d = x - x.mean()
    return float((d[1:] * d[:-1]).sum() / (d * d).sum())


def assert_valid(rows: list[CandleRow], timeframe: str, tick: Decimal) -> None:
    # validate_batch re-checks every documented rule (> 0, OHLC order, grid, no duplicates) and sorts;
    # generated rows must already be in order.
    assert validate_batch(rows, timeframe) == rows
    step = timedelta(seconds=TIMEFRAMES[timeframe])
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.ts - prev.ts == step
    for row in rows:
        for price in (row.open, row.high, row.low, row.close):
            assert price > 0
            assert price % tick == 0, (price, tick)
        assert row.volume >= 1 and row.volume == row.volume.to_integral_value()


def test_same_seed_same_candles_and_different_seed_different_candles() -> None:
    a = generate_candles(bars=500, seed=7)
    assert a == generate_candles(bars=500, seed=7)
    assert [str(r.close) for r in a] == [str(r.close) for r in generate_candles(bars=500, seed=7)]
    b = generate_candles(bars=500, seed=8)
    assert [r.close for r in a] != [r.close for r in b]
    assert [r.ts for r in a] == [r.ts for r in b]


def test_bar_count_is_exact() -> None:
    assert len(generate_candles(bars=1, seed=1)) == 1
    assert len(generate_candles(bars=1234, seed=1, timeframe="5m")) == 1234
    assert generate_candles(bars=0, seed=1) == []


def test_defaults_start_at_2020_on_the_grid_at_the_start_price() -> None:
    rows = generate_candles(bars=3, seed=1)
    assert rows[0].ts == DEFAULT_START == datetime(2020, 1, 1, tzinfo=UTC)
    assert rows[0].ts.tzinfo is UTC
    assert rows[0].open == Decimal("100.00")
    assert [r.ts for r in rows] == [DEFAULT_START + timedelta(days=n) for n in range(3)]


@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
def test_every_generated_row_is_valid_for_every_timeframe(timeframe: str) -> None:
    assert_valid(generate_candles(bars=3_000, seed=11, timeframe=timeframe), timeframe, Decimal("0.01"))


@pytest.mark.parametrize(
    ("start_price", "tick", "vol"),
    [
        (Decimal("0.05"), Decimal("0.01"), 1.5),  # prices hover a few ticks above zero
        (Decimal("0.00001234"), Decimal("0.00000001"), 0.8),
        (Decimal("25000"), Decimal("0.5"), 0.6),
        (Decimal("100"), Decimal("5"), 0.25),
        (Decimal("100"), Decimal("0.01"), 0.0),  # no volatility: flat wicks, still valid
        (Decimal("3"), Decimal("0.01"), 3.0),
    ],
)
def test_rows_stay_valid_at_extreme_ticks_and_volatilities(
    start_price: Decimal, tick: Decimal, vol: float
) -> None:
    rows = generate_candles(bars=2_000, seed=5, start_price=start_price, tick_size=tick, annual_vol=vol)
    assert_valid(rows, "1d", tick)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**63),
    bars=st.integers(1, 300),
    timeframe=st.sampled_from(list(TIMEFRAMES)),
    start_price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2),
    tick=st.sampled_from([Decimal("0.01"), Decimal("0.05"), Decimal("1"), Decimal("0.0001")]),
    vol=st.floats(0.0, 4.0),
    drift=st.floats(-1.0, 1.0),
)
def test_any_parameters_give_valid_tick_aligned_rows(
    seed: int, bars: int, timeframe: str, start_price: Decimal, tick: Decimal, vol: float, drift: float
) -> None:
    rows = generate_candles(
        bars=bars,
        seed=seed,
        timeframe=timeframe,
        start_price=start_price,
        tick_size=tick,
        annual_vol=vol,
        drift=drift,
    )
    assert len(rows) == bars
    assert_valid(rows, timeframe, tick)


def test_prices_do_not_depend_on_the_callers_decimal_context() -> None:
    expected = generate_candles(bars=200, seed=6, start_price=Decimal("25000"), tick_size=Decimal("0.01"))
    with localcontext(prec=4):
        rows = generate_candles(bars=200, seed=6, start_price=Decimal("25000"), tick_size=Decimal("0.01"))
    assert [str(r.high) for r in rows] == [str(r.high) for r in expected]


def test_wicks_are_mostly_strictly_outside_the_body() -> None:
    rows = generate_candles(bars=2_000, seed=3)
    upper = np.mean([r.high > max(r.open, r.close) for r in rows])
    lower = np.mean([r.low < min(r.open, r.close) for r in rows])
    assert upper > 0.9 and lower > 0.9


def test_open_is_the_previous_close_plus_a_small_gap() -> None:
    rows = generate_candles(bars=2_000, seed=3)
    gaps = np.abs([np.log(float(b.open) / float(a.close)) for a, b in zip(rows, rows[1:], strict=False)])
    bodies = np.abs([np.log(float(r.close) / float(r.open)) for r in rows])
    assert 0 < gaps.mean() < 0.4 * bodies.mean()


SEEDS = [0, 1, 2, 3, 42]


@pytest.mark.parametrize("seed", SEEDS)
def test_volatility_clusters(seed: int) -> None:
    r = log_returns(generate_candles(bars=5_000, seed=seed))
    assert lag1_autocorrelation(r**2) > 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_without_garch_there_is_no_clustering(seed: int) -> None:
    # The contrast shows the clustering statistic above measures the GARCH term, not an artefact.
    r = log_returns(generate_candles(bars=5_000, seed=seed, garch_alpha=0.0, garch_beta=0.0))
    assert abs(lag1_autocorrelation(r**2)) < 0.05


def test_returns_are_not_themselves_autocorrelated() -> None:
    r = log_returns(generate_candles(bars=5_000, seed=42))
    assert abs(lag1_autocorrelation(r)) < 0.05


@pytest.mark.parametrize("annual_vol", [0.1, 0.25, 0.6])
def test_realised_volatility_matches_annual_vol(annual_vol: float) -> None:
    r = log_returns(generate_candles(bars=5_000, seed=9, annual_vol=annual_vol))
    realised = r.std(ddof=1) * np.sqrt(252)
    assert realised == pytest.approx(annual_vol, rel=0.2)


def test_drift_moves_the_price_on_average() -> None:
    up = [generate_candles(bars=1_000, seed=s, drift=1.0, annual_vol=0.1)[-1].close for s in range(5)]
    down = [generate_candles(bars=1_000, seed=s, drift=-1.0, annual_vol=0.1)[-1].close for s in range(5)]
    assert min(up) > Decimal(100) > max(down)


def test_volume_is_a_positive_integer_scaled_to_the_timeframe() -> None:
    daily = np.median([float(r.volume) for r in generate_candles(bars=2_000, seed=4)])
    minute = np.median([float(r.volume) for r in generate_candles(bars=2_000, seed=4, timeframe="1m")])
    assert 500_000 < daily < 2_000_000
    assert 300 < minute < 1_500


def test_custom_start_is_normalised_to_utc() -> None:
    start = datetime(2024, 3, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    rows = generate_candles(bars=2, seed=1, start=start)
    assert rows[0].ts == datetime(2024, 3, 1, tzinfo=UTC) and rows[0].ts.tzinfo is UTC
    assert generate_candles(bars=1, seed=1, start=datetime(2024, 3, 1))[0].ts == rows[0].ts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2024, 3, 1, 1, tzinfo=UTC)}, "not aligned"),
        ({"timeframe": "1h", "start": datetime(2024, 3, 1, 1, 30, tzinfo=UTC)}, "not aligned"),
        ({"timeframe": "2h"}, "unknown timeframe"),
        ({"bars": -1}, "bars"),
        ({"tick_size": Decimal(0)}, "tick_size"),
        ({"start_price": Decimal("-1")}, "start_price"),
        ({"annual_vol": -0.1}, "annual_vol"),
        ({"annual_vol": float("nan")}, "annual_vol"),
        ({"drift": float("inf")}, "drift"),
        ({"garch_alpha": 0.2, "garch_beta": 0.8}, "stationary"),
        ({"bars": 10_000, "timeframe": "1d", "start": datetime(9990, 1, 1, tzinfo=UTC)}, "9999"),
        ({"drift": 1e6}, "overflows"),
        ({"start_price": Decimal("9e19"), "tick_size": Decimal("1e5"), "annual_vol": 2.0}, "overflows"),
        ({"tick_size": Decimal("1e-19")}, "at most 18 decimal places"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs: dict[str, object], message: str) -> None:
    params: dict[str, object] = {"bars": 100, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_candles(**params)  # type: ignore[arg-type]


def test_csv_has_the_exact_header_and_fixed_point_numbers() -> None:
    rows = generate_candles(bars=3, seed=1, start_price=Decimal("0.00001"), tick_size=Decimal("0.00000001"))
    text = candles_to_csv(rows)
    lines = text.split("\n")
    assert lines[0] == CSV_HEADER == "ts,open,high,low,close,volume"
    assert lines[-1] == "" and len(lines) == 5
    assert lines[1].startswith("2020-01-01T00:00:00Z,0.00001000,")
    assert "E" not in text and "+" not in text


def test_csv_round_trips_through_the_stream_parser() -> None:
    for timeframe in ("1m", "4h", "1d"):
        rows = generate_candles(bars=2_500, seed=2, timeframe=timeframe)
        parsed = parse(candles_to_csv(rows), timeframe)
        assert parsed == rows
        assert [str(r.close) for r in parsed] == [str(r.close) for r in rows]


def test_csv_of_no_rows_is_just_the_header() -> None:
    assert candles_to_csv([]) == CSV_HEADER + "\n"
