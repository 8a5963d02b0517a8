"""Parity of exits between a backtest and the paper exchange, on the same candles (docs/PORTFOLIO.md
"Parity with the paper exchange").

Each case loads a few daily candles on a fresh instrument (no fees, no slippage) and runs them twice:

- **backtest**: `POST /api/v1/backtests` with `buy_and_hold` and `exits`, on a worker: long from bar 1's
  open with all of 10,000 of cash;
- **exchange**: a market replay (`POST /api/v1/market/replays`, path `ohlc`) of bar 0, then a real order
  placed through the API at its close (a bracket: market entry + take-profit limit + stop-loss stop; or
  a market entry and then a `trailing_stop` sell), then a replay of each later bar on its own, so every
  fill is known to its bar.

Bar 1 opens at bar 0's close, so both enter at the same price and bar and the orders use the engine's
levels (entry 100: target 105, stop 96, trail 10 %). The fills must then agree on bar, quantity, side,
reason and price, under these rules, each asserted exactly:

1. A bar that opens through a stop (or beyond the target): both fill at the open (the target at its
   limit price, which the exchange's resting limit gets too).
2. A target reached inside a bar: both fill at the target price.
3. A stop reached inside a bar: the engine fills at the stop level (a continuous market crosses it);
   the exchange, fed discrete prices, fills at the path price that crossed it, the bar's low. They
   agree when the low touches the stop exactly.
4. A bar that reaches both stop and target: the engine takes the stop (DOMAIN.md, pessimistic); the
   exchange takes whichever its path reaches first: the stop on an up bar (open, low, high, close), the
   target on a down bar (open, high, low, close).
5. A trailing stop's best price: the exchange's follows every path price as it comes; the engine, which
   does not know the order of prices inside a bar, counts a bar's high in the trail from the next bar
   on. On a down bar whose high raises the trail before its low crosses it, the exchange exits on that
   bar and the engine does not.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import text

from tests.integration.helpers import client_with_worker, make_account, make_market, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)
CASH = "10000"
QTY = Decimal(100)  # floor(10,000 / 100): the backtest's size, placed as the exchange order's quantity
BRACKET = {"take_profit_pct": 5, "stop_loss_pct": 4}  # entry 100: target 105.00, stop 96.00
TRAIL = {"trailing_stop_pct": 10}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def parity_client(settings):
    """An app and a real worker (backtests and replays) on a queue nobody else uses, on its own loop."""
    async with client_with_worker(settings, "parity", concurrency=4, own_loop=True) as c:
        yield c


@dataclass(frozen=True)
class Exit:
    bar: int
    price: Decimal
    quantity: Decimal
    reason: str  # stop_loss | take_profit | trailing_stop


async def load(c, admin, symbol: str, bars: list[tuple[str, str, str, str]]) -> None:
    candles = [
        {"ts": (T0 + i * DAY).isoformat(), "open": o, "high": h, "low": lo, "close": cl, "volume": "1000"}
        for i, (o, h, lo, cl) in enumerate(bars)
    ]
    resp = await c.post(
        f"/api/v1/instruments/{symbol}/candles", json={"timeframe": "1d", "candles": candles}, headers=admin
    )
    assert resp.status_code == 201, resp.text


async def wait(c, headers, url: str, done: tuple[str, ...], limit: float = 60) -> dict:
    deadline = time.monotonic() + limit
    while True:
        resp = await c.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


async def replay_bar(c, admin, symbol: str, bar: int) -> None:
    at = (T0 + bar * DAY).isoformat()
    resp = await c.post(
        "/api/v1/market/replays",
        json={"symbols": [symbol], "timeframe": "1d", "start": at, "end": at, "speed": "max", "path": "ohlc"},
        headers=admin,
    )
    assert resp.status_code == 202, resp.text
    body = await wait(
        c, admin, f"/api/v1/market/replays/{resp.json()['id']}", ("completed", "stopped", "failed")
    )
    assert body["status"] == "completed" and body["bars_fed"] == 1, body


async def engine_exit(c, user, symbol: str, exits: dict) -> tuple[Decimal, Exit | None]:
    """(entry price, the exit) of the backtest's one trade."""
    body = {
        "strategy": "buy_and_hold",
        "symbol": symbol,
        "timeframe": "1d",
        "initial_cash": CASH,
        "commission": "0",
        "exits": exits,
    }
    resp = await c.post("/api/v1/backtests", json=body, headers=user)
    assert resp.status_code == 202, resp.text
    done = await wait(c, user, f"/api/v1/backtests/{resp.json()['id']}", ("completed", "failed", "canceled"))
    assert done["status"] == "completed", done
    trades = (await c.get(f"/api/v1/backtests/{done['id']}/trades?sort=asc", headers=user)).json()["items"]
    assert len(trades) == 1, trades  # after an exit buy_and_hold stays flat
    (t,) = trades
    assert (t["side"], t["entry_bar"], Decimal(t["quantity"])) == ("long", 1, QTY)
    if t["is_open"]:
        return Decimal(t["entry_price"]), None
    return Decimal(t["entry_price"]), Exit(
        t["exit_bar"], Decimal(t["exit_price"]), Decimal(t["quantity"]), t["exit_reason"]
    )


async def fills(db_engine, account: str) -> list[tuple[str, str, Decimal, Decimal]]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT f.side, o.leg, f.quantity, f.price FROM fills f JOIN orders o ON o.id = f.order_id "
                "WHERE f.account_id = CAST(:a AS uuid) ORDER BY f.seq"
            ),
            {"a": account},
        )
        return [(r.side, r.leg or "", Decimal(r.quantity), Decimal(r.price)) for r in rows]


async def exchange_exit(
    c, admin, user, db_engine, symbol: str, n_bars: int, kind: str
) -> tuple[Decimal, Exit | None]:
    """(entry price, the exit) of the same position on the paper exchange, fed bar by bar."""
    await replay_bar(c, admin, symbol, 0)  # the last price is now bar 0's close (= bar 1's open)
    account = await make_account(c, user, cash="100000")
    if kind == "bracket":
        await place(
            c,
            user,
            account,
            symbol=symbol,
            side="buy",
            type="market",
            quantity=QTY,
            order_class="bracket",
            take_profit={"limit_price": "105.00"},
            stop_loss={"stop_price": "96.00"},
        )
    else:
        await place(c, user, account, symbol=symbol, side="buy", type="market", quantity=QTY)
        trail = await place(
            c,
            user,
            account,
            symbol=symbol,
            side="sell",
            type="trailing_stop",
            quantity=QTY,
            trail_percent="10",
        )
        assert Decimal(trail["hwm"]) == 100 and Decimal(trail["stop_price"]) == 90
    (entry,) = await fills(db_engine, account)
    assert entry[0] == "buy" and entry[2] == QTY
    for bar in range(1, n_bars):
        await replay_bar(c, admin, symbol, bar)
        after = await fills(db_engine, account)
        if len(after) > 1:
            (side, leg, qty, price) = after[1]
            assert side == "sell" and len(after) == 2, after  # one exit, the other leg canceled
            reason = {"take_profit": "take_profit", "stop_loss": "stop_loss"}.get(leg, "trailing_stop")
            return entry[3], Exit(bar, price, qty, reason)
    return entry[3], None


UP_BAR0 = ("99.00", "100.50", "98.50", "100.00")  # closes at 100: bar 1 opens there

# name, kind, bars, the engine's exit, the exchange's exit ((bar, price, reason) or None: still open)
CASES = [
    (
        "target inside a bar: both at the target",
        "bracket",
        [UP_BAR0, ("100.00", "102.00", "99.00", "101.50"), ("101.50", "105.50", "100.50", "104.00")],
        (2, "105.00", "take_profit"),
        (2, "105.00", "take_profit"),
    ),
    (
        "open beyond the target: both at the target's limit price",
        "bracket",
        [UP_BAR0, ("100.00", "102.00", "99.00", "101.50"), ("106.00", "107.00", "105.50", "106.50")],
        (2, "105.00", "take_profit"),
        (2, "105.00", "take_profit"),
    ),
    (
        "stop inside a down bar: engine at the stop, exchange at the low",
        "bracket",
        [UP_BAR0, ("100.00", "102.00", "99.00", "101.50"), ("101.50", "102.00", "95.00", "95.50")],
        (2, "96.00", "stop_loss"),
        (2, "95.00", "stop_loss"),
    ),
    (
        "a low that touches the stop: both at the stop",
        "bracket",
        [UP_BAR0, ("100.00", "102.00", "96.00", "97.00")],
        (1, "96.00", "stop_loss"),
        (1, "96.00", "stop_loss"),
    ),
    (
        "gap through the stop: both at the open",
        "bracket",
        [UP_BAR0, ("100.00", "102.00", "99.00", "101.50"), ("94.00", "95.00", "93.00", "94.50")],
        (2, "94.00", "stop_loss"),
        (2, "94.00", "stop_loss"),
    ),
    (
        "both reached on an up bar: both take the stop (the path visits the low first)",
        "bracket",
        [UP_BAR0, ("100.00", "106.00", "95.00", "105.50")],
        (1, "96.00", "stop_loss"),
        (1, "95.00", "stop_loss"),
    ),
    (
        "both reached on a down bar: the engine takes the stop, the exchange the target it meets first",
        "bracket",
        [UP_BAR0, ("100.00", "106.00", "95.00", "95.50")],
        (1, "96.00", "stop_loss"),
        (1, "105.00", "take_profit"),
    ),
    (
        "neither reached: both still open",
        "bracket",
        [UP_BAR0, ("100.00", "104.00", "97.00", "103.00"), ("103.00", "104.90", "96.10", "97.00")],
        None,
        None,
    ),
    (
        "trailing stop inside a bar: engine at the trail, exchange at the low",
        "trailing",
        [UP_BAR0, ("100.00", "110.00", "99.50", "109.00"), ("108.00", "108.50", "98.00", "98.50")],
        (2, "99.00", "trailing_stop"),
        (2, "98.00", "trailing_stop"),
    ),
    (
        "trailing stop, gap through the trail: both at the open",
        "trailing",
        [UP_BAR0, ("100.00", "110.00", "99.50", "109.00"), ("97.00", "98.00", "96.00", "97.50")],
        (2, "97.00", "trailing_stop"),
        (2, "97.00", "trailing_stop"),
    ),
    (
        "trailing stop, a down bar's high raises the trail before its low: the exchange exits a bar earlier",
        "trailing",
        [UP_BAR0, ("100.00", "110.00", "98.00", "99.00"), ("99.00", "99.50", "98.50", "99.20")],
        (2, "99.00", "trailing_stop"),
        (1, "98.00", "trailing_stop"),
    ),
]


@pytest.mark.parametrize(("name", "kind", "bars", "engine", "exchange"), CASES, ids=[c[0] for c in CASES])
async def test_backtest_exits_match_the_paper_exchange(
    parity_client, admin_headers, make_user, db_engine, name, kind, bars, engine, exchange
):
    c = parity_client
    user = (await make_user("trader"))["headers"]
    symbol = await make_market(c, admin_headers, maker="0", taker="0", slippage="0")
    await load(c, admin_headers, symbol, bars)

    e_entry, e_exit = await engine_exit(c, user, symbol, BRACKET if kind == "bracket" else TRAIL)
    x_entry, x_exit = await exchange_exit(c, admin_headers, user, db_engine, symbol, len(bars), kind)
    # Same entry: bar 1's open in the backtest, bar 0's close on the exchange (equal by construction).
    assert e_entry == x_entry == Decimal("100.00")

    def expected(spec):
        return None if spec is None else Exit(spec[0], Decimal(spec[1]), QTY, spec[2])

    assert e_exit == expected(engine), name
    assert x_exit == expected(exchange), name


async def test_the_cases_cover_every_rule():
    same = [c for c in CASES if c[3] == c[4]]
    differ = [c for c in CASES if c[3] != c[4]]
    assert {c[3][2] for c in same if c[3]} == {"take_profit", "stop_loss", "trailing_stop"}
    # Rule 3 (a stop and a trail inside a bar, and the stop of an up bar reaching both), 4 and 5.
    assert len(differ) == 5
