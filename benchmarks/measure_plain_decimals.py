"""What plain-notation decimals cost on the orders-list path: the NUMERIC decoder and the response encoder.

    python -m benchmarks.measure_plain_decimals [--rounds 400]

Side by side in one process, interleaved round by round so that load from elsewhere hits both alike:

* decode: one 100-row page of five NUMERIC columns (an orders page: quantity, filled, a price, a zero fee
  at the 1e-8 fee scale, a null) fetched from PostgreSQL on two connections that differ only in the text
  NUMERIC decoder, `Decimal` (before) against `decode_numeric` (app/lib/decimals.py);
* encode: that page as 100 `OrderOut` rendered by Litestar's `Response` (before) and by `ApiResponse`
  (now): with plain decimals (what the codec now reads) and with one exponent-form decimal per order
  (arithmetic results; the re-encoding path).

Prints the median microseconds of each and the ratio now / before. Needs only PostgreSQL (DATABASE_URL,
default the local server); it creates nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from litestar import Response

from app.domain.trading.schemas import OrderOut, OrderPage
from app.lib.db import libpq_url
from app.lib.decimals import decode_numeric
from app.lib.http import ApiResponse

PAGE_SQL = """
SELECT (g % 7 + 1)::numeric AS quantity, 0::numeric AS filled, (99.5 + g * 0.01)::numeric(20, 2) AS price,
       0.00000000::numeric(20, 8) AS fee, NULL::numeric AS stop
FROM generate_series(1, 100) AS g
"""


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _connection(url: str, decoder) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("numeric", encoder=str, decoder=decoder, schema="pg_catalog", format="text")
    return conn


def _page(rows, fee: Decimal | None = None) -> OrderPage:
    now = datetime.now(UTC)
    items = [
        OrderOut(
            id=uuid.uuid4(),
            client_order_id=None,
            account_id=uuid.uuid4(),
            symbol="BENCH",
            side="buy",
            type="limit",
            quantity=r["quantity"],
            filled_quantity=r["filled"],
            avg_fill_price=None,
            limit_price=r["price"],
            stop_price=r["stop"],
            time_in_force="gtc",
            status="accepted",
            reject_reason=None,
            fees=fee if fee is not None else r["fee"],
            created_at=now,
            updated_at=now,
        )
        for r in rows
    ]
    return OrderPage(items=items, next_cursor=None)


async def main(rounds: int) -> None:
    url = libpq_url(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    before = await _connection(url, Decimal)
    now = await _connection(url, decode_numeric)
    timings: dict[str, list[float]] = {k: [] for k in ("decode_before", "decode_now")}
    rows = None
    for _ in range(rounds):
        for name, conn in (("decode_before", before), ("decode_now", now)):
            started = time.perf_counter()
            rows = await conn.fetch(PAGE_SQL)
            timings[name].append(time.perf_counter() - started)
    await before.close()
    await now.close()
    assert rows is not None
    plain, exponent = _page(rows), _page(rows, fee=Decimal("0E-8"))
    for label, page in (("plain", plain), ("exponent", exponent)):
        responses = {f"encode_{label}_before": Response(page), f"encode_{label}_now": ApiResponse(page)}
        for name in responses:
            timings[name] = []
        for _ in range(rounds):
            for name, response in responses.items():
                started = time.perf_counter()
                response.render(page, "application/json")
                timings[name].append(time.perf_counter() - started)
    for stage in ("decode", "encode_plain", "encode_exponent"):
        b, n = _median_us(timings[f"{stage}_before"]), _median_us(timings[f"{stage}_now"])
        print(f"{stage:16s} before {b:8.1f} us   now {n:8.1f} us   now/before {n / b:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    asyncio.run(main(parser.parse_args().rounds))
