"""Throughput of the streaming CSV candle parser: bytes in, validated `CandleRow` batches out.

    .venv/bin/python -m pytest benchmarks/test_candles_parse_bench.py -p no:xdist -s

The target is >= 300k rows/s on the development machine. It is printed and recorded in the
benchmark's ``extra_info`` rather than asserted, so that a slower CI runner does not fail the build.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from app.domain.markets.candle_csv import parse_csv_stream
from app.domain.markets.synthetic import candles_to_csv, generate_candles

ROWS = 200_000
# A typical ASGI request-body chunk, so the benchmark includes the cost of lines straddling chunks.
CHUNK_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def csv_body() -> bytes:
    # Only the bytes are kept: the generated rows would otherwise sit in the heap and inflate the
    # garbage collector's work during the measurement.
    return candles_to_csv(generate_candles(bars=ROWS, seed=20260101, timeframe="1m")).encode()


def parse_all(body: bytes) -> int:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), CHUNK_BYTES):
            yield body[i : i + CHUNK_BYTES]

    async def consume() -> int:
        # Batches are dropped after counting, as a loader does once it has copied them to the database.
        count = 0
        async for batch in parse_csv_stream(chunks(), "1m"):
            count += len(batch)
        return count

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(consume())
    finally:
        loop.close()


def test_parse_csv_stream_throughput(benchmark: BenchmarkFixture, csv_body: bytes) -> None:
    parsed = benchmark.pedantic(parse_all, args=(csv_body,), rounds=3, iterations=1)
    assert parsed == ROWS
    stats = benchmark.stats.stats
    best, mean = ROWS / stats.min, ROWS / stats.mean
    benchmark.extra_info["rows_per_second_best"] = round(best)
    benchmark.extra_info["rows_per_second_mean"] = round(mean)
    print(f"\nparse_csv_stream: {ROWS:,} rows, {len(csv_body) / 1e6:.1f} MB")
    print(f"parse_csv_stream: {best:,.0f} rows/s best of 3, {mean:,.0f} rows/s mean")
