"""The market clock, replays and simulations through the API, on a real SAQ worker."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import text

from app.domain.trading.reconcile import reconcile_account
from tests.integration.helpers import client_with_worker, make_account, make_market, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def feed_client(settings):
    """An app and a real worker on a queue nobody else uses, on its own loop (DELETE waits for the worker)."""
    async with client_with_worker(settings, "feeds", concurrency=6, own_loop=True) as c:
        yield c


async def load(
    client,
    headers,
    symbol: str,
    bars: list[tuple[str, str, str, str]],
    timeframe: str = "1d",
    step: timedelta = DAY,
) -> None:
    candles = [
        {"ts": (T0 + i * step).isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": "1000"}
        for i, (o, h, lo, c) in enumerate(bars)
    ]
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles",
        json={"timeframe": timeframe, "candles": candles},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text


async def replay(client, headers, expect: int = 202, **body) -> dict:
    body.setdefault("speed", "max")
    resp = await client.post("/api/v1/market/replays", json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()


async def wait_final(client, headers, kind: str, feed_id: str, limit: float = 60) -> dict:
    deadline = time.monotonic() + limit
    while True:
        resp = await client.get(f"/api/v1/market/{kind}/{feed_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in ("completed", "stopped", "failed"):
            return body
        assert time.monotonic() < deadline, f"{kind} still {body['status']} after {limit}s"
        await asyncio.sleep(0.02)


async def fills_in_order(db_engine, account_ids: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(order id, side, quantity, price, liquidity) of the accounts' fills, in booking order (`seq`: the fills
    of one price update share `created_at`, and their time-ordered ids may share a millisecond)."""
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT order_id::text, side, quantity::text, price::text, liquidity FROM fills "
                "WHERE account_id = ANY(CAST(:a AS uuid[])) ORDER BY seq"
            ),
            {"a": account_ids},
        )
        return [tuple(r) for r in rows]


# ---------------------------------------------------------------------------------------------------- clock


async def test_clock_reports_each_exchange_session(client, admin_headers, make_user):
    code = f"CLK{uuid.uuid4().hex[:6].upper()}"
    resp = await client.post(
        "/api/v1/exchanges",
        json={
            "code": code,
            "name": "Clock",
            "timezone": "America/New_York",
            "session_open": "09:30:00",
            "session_close": "16:00:00",
            "session_days": [5, 1, 2, 3, 4],
        },
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["session_days"] == [1, 2, 3, 4, 5] and resp.json()["session_open"] == "09:30:00"
    trader = await make_user("trader")
    resp = await client.get("/api/v1/market/clock", headers=trader["headers"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    now = datetime.fromisoformat(body["now"])
    mine = next(e for e in body["exchanges"] if e["code"] == code)
    assert set(mine) >= {"code", "is_open", "next_open", "next_close"}
    if mine["is_open"]:
        assert now < datetime.fromisoformat(mine["next_close"]) < datetime.fromisoformat(mine["next_open"])
    else:
        opens = datetime.fromisoformat(mine["next_open"])
        assert now < opens < datetime.fromisoformat(mine["next_close"])
        assert (
            opens.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")).strftime("%H:%M") == "09:30"
        )
    resp = await client.post(
        "/api/v1/exchanges",
        json={"code": code + "X", "name": "x", "session_days": [1, 8]},
        headers=admin_headers,
    )
    assert resp.status_code in (400, 422) and "session_days" in resp.text
    assert (await client.get("/api/v1/market/clock")).status_code == 401


# --------------------------------------------------------------------------------------------------- replays

# Three daily bars. Bar 0 up (path 100, 99, 100.6, 100.5); bar 1 down (100.5, 100.8, 97, 98); bar 2 up
# (98, 96.5, 103, 102).
BARS = [("100", "100.6", "99", "100.5"), ("100.5", "100.8", "97", "98"), ("98", "103", "96.5", "102")]


async def test_replay_fills_resting_orders_on_their_bar_in_bar_path_order(
    feed_client, admin_headers, make_user, db_engine
):
    c = feed_client
    symbol = await make_market(c, admin_headers)
    await load(c, admin_headers, symbol, BARS)
    await c.post(f"/api/v1/instruments/{symbol}/price", json={"price": "100.00"}, headers=admin_headers)
    user = await make_user("trader")
    h = user["headers"]
    a, b = await make_account(c, h, allow_short=True), await make_account(c, h, allow_short=True)
    buy_at_low = await place(
        c, h, a, symbol=symbol, side="buy", type="limit", quantity=1, limit_price="97.00"
    )
    stop_at_high = await place(
        c, h, b, symbol=symbol, side="buy", type="stop", quantity=1, stop_price="100.80"
    )
    sell_stop = await place(c, h, b, symbol=symbol, side="sell", type="stop", quantity=1, stop_price="97.20")
    buy_bar2 = await place(c, h, a, symbol=symbol, side="buy", type="limit", quantity=1, limit_price="96.50")
    sell_bar2 = await place(
        c, h, b, symbol=symbol, side="sell", type="limit", quantity=1, limit_price="103.00"
    )

    # Bar 0 alone (low 99, high 100.6) reaches none of them.
    done = await wait_final(
        c,
        admin_headers,
        "replays",
        (await replay(c, admin_headers, symbols=[symbol], timeframe="1d", end=T0.isoformat()))["id"],
    )
    assert done["status"] == "completed" and done["progress"] == 1.0
    assert (done["bars_fed"], done["prices_fed"], done["fills"]) == (1, 4, 0)
    assert await fills_in_order(db_engine, [a, b]) == []
    resp = await c.get(f"/api/v1/instruments/{symbol}/price", headers=h)
    assert resp.json()["price"] == "100.50"  # the bar's close is the last price it leaves
    assert resp.json()["ts"].startswith((T0 + DAY - timedelta(seconds=1)).isoformat()[:19])

    # Bar 1 (down: open, high, low, close): the buy stop at its high first, then the limit and the sell
    # stop at its low, in that order; bar 2's orders wait.
    done = await wait_final(
        c,
        admin_headers,
        "replays",
        (
            await replay(
                c,
                admin_headers,
                symbols=[symbol],
                timeframe="1d",
                start=(T0 + DAY).isoformat(),
                end=(T0 + DAY).isoformat(),
            )
        )["id"],
    )
    assert (done["status"], done["bars_fed"], done["fills"]) == ("completed", 1, 3)
    fills = await fills_in_order(db_engine, [a, b])
    assert fills[0] == (stop_at_high["id"], "buy", "1", "100.80", "taker")
    assert {f[0]: f[3:] for f in fills[1:]} == {
        buy_at_low["id"]: ("97.00", "maker"),
        sell_stop["id"]: ("97.00", "taker"),
    }

    # Bar 2 (up: open, low, high, close): the buy limit at its low before the sell limit at its high.
    done = await wait_final(
        c,
        admin_headers,
        "replays",
        (await replay(c, admin_headers, symbols=[symbol], timeframe="1d", start=(T0 + 2 * DAY).isoformat()))[
            "id"
        ],
    )
    assert (done["status"], done["fills"]) == ("completed", 2)
    assert [f[0] for f in (await fills_in_order(db_engine, [a, b]))[3:]] == [buy_bar2["id"], sell_bar2["id"]]
    async with db_engine.connect() as conn:
        for account_id in (a, b):
            assert (await reconcile_account(conn, uuid.UUID(account_id))).ok


async def test_a_replay_of_two_symbols_feeds_them_together_in_time_order(
    feed_client, admin_headers, make_user, db_engine, monkeypatch
):
    """Two symbols' prices interleave in time order; they go to the price path in shared runs (cut
    only by a match), where runs of one symbol each made one transaction per price."""
    from app.domain.markets import feed_jobs

    c = feed_client
    x, y = await make_market(c, admin_headers), await make_market(c, admin_headers)
    flat = ("100.00", "100.50", "99.50", "100.00")
    dip = ("100.00", "100.50", "95.00", "100.00")
    await load(c, admin_headers, x, [dip if i == 20 else flat for i in range(30)])
    await load(c, admin_headers, y, [dip if i == 10 else flat for i in range(30)])
    for symbol in (x, y):
        resp = await c.post(
            f"/api/v1/instruments/{symbol}/price", json={"price": "100.00"}, headers=admin_headers
        )
        assert resp.status_code == 200, resp.text
    user = await make_user("trader")
    h = user["headers"]
    account = await make_account(c, h)
    on_x = await place(c, h, account, symbol=x, side="buy", type="limit", quantity=1, limit_price="96.00")
    on_y = await place(c, h, account, symbol=y, side="buy", type="limit", quantity=1, limit_price="96.00")
    runs: list[int] = []
    bars: list[tuple] = []
    feed = feed_jobs.feed_mixed_prices

    async def counted(conn, symbols, points):
        runs.append(len(points))
        step = await feed(conn, symbols, points)
        fed = zip(symbols[: step.consumed], points[: step.consumed], strict=True)
        bars.extend((s, p.bar) for s, p in fed if p.bar)
        return step

    monkeypatch.setattr(feed_jobs, "feed_mixed_prices", counted)
    observed: list[tuple[str, datetime]] = []  # what the prices: streams are given, in order

    async def observe(symbol, prices):
        observed.extend((symbol, p.ts) for p in prices)

    from app.domain.markets import events

    events.COMMITTED_PRICE_OBSERVERS.append(observe)
    try:
        done = await wait_final(
            c, admin_headers, "replays", (await replay(c, admin_headers, symbols=[x, y], timeframe="1d"))["id"]
        )
    finally:
        events.COMMITTED_PRICE_OBSERVERS.remove(observe)
    assert (done["status"], done["prices_fed"], done["bars_fed"], done["fills"]) == ("completed", 240, 60, 2)
    # published in time order across the two symbols, as fed (not all of one symbol's run, then the other's)
    mine = [(s, ts) for s, ts in observed if s in (x, y)]
    assert len(mine) == 240 and [ts for _, ts in mine] == sorted(ts for _, ts in mine)
    # y dips on bar 10, x on bar 20: filled in that order, each at its own bar's low
    fills = await fills_in_order(db_engine, [account])
    assert [(f[0], f[3]) for f in fills] == [(on_y["id"], "96.00"), (on_x["id"], "96.00")]
    # Two transactions (one per price before: 240): y's dip matched and the quiet prices after it, up to
    # x's dip; then x's dip matched and the rest.
    assert len(runs) == 2 and runs[0] == 240, runs
    # Each bar rides on its last price (published on `bars:<symbol>:1d` once that price is committed).
    assert len(bars) == 60 and bars[21] == (y, ("1d", T0 + 10 * DAY, *map(Decimal, dip), Decimal(1000)))
    for symbol in (x, y):
        resp = await c.get(f"/api/v1/instruments/{symbol}/price", headers=h)
        assert resp.json()["price"] == "100.00"
        assert resp.json()["ts"].startswith((T0 + 30 * DAY - timedelta(seconds=1)).isoformat()[:19])


async def _orders_for(c, h, account: str, symbol: str) -> list[dict]:
    specs = [
        ("buy", "limit", {"limit_price": "99.00"}),
        ("buy", "limit", {"limit_price": "97.50"}),
        ("buy", "stop", {"stop_price": "103.00"}),
        ("sell", "stop", {"stop_price": "98.00"}),
        ("buy", "stop_limit", {"stop_price": "100.20", "limit_price": "100.30"}),
        ("sell", "limit", {"limit_price": "101.00"}),
    ]
    return [
        await place(c, h, account, symbol=symbol, side=side, type=kind, quantity=2, **prices)
        for side, kind, prices in specs
    ]


async def test_the_same_replay_into_fresh_accounts_gives_identical_fills(
    feed_client, admin_headers, make_user, db_engine
):
    from app.domain.markets.synthetic import generate_candles

    c = feed_client
    symbol = await make_market(c, admin_headers)
    rows = generate_candles(
        bars=120, seed=5, timeframe="1d", start=T0, start_price=Decimal("100"), tick_size=Decimal("0.01")
    )
    await load(c, admin_headers, symbol, [(str(r.open), str(r.high), str(r.low), str(r.close)) for r in rows])
    user = await make_user("trader")
    h = user["headers"]
    runs = []
    for _ in range(2):
        resp = await c.post(
            f"/api/v1/instruments/{symbol}/price", json={"price": "100.00"}, headers=admin_headers
        )
        assert resp.status_code == 200
        account = await make_account(c, h, allow_short=True)
        orders = await _orders_for(c, h, account, symbol)
        index = {o["id"]: i for i, o in enumerate(orders)}
        done = await wait_final(
            c, admin_headers, "replays", (await replay(c, admin_headers, symbols=[symbol]))["id"]
        )
        assert done["status"] == "completed" and done["prices_fed"] == 4 * 120
        runs.append([(index[f[0]], *f[1:]) for f in await fills_in_order(db_engine, [account])])
        for o in orders:
            await c.delete(f"/api/v1/accounts/{account}/orders/{o['id']}", headers=h)
    assert runs[0] and runs[0] == runs[1]


async def test_stop_midway_leaves_a_consistent_book_and_one_replay_per_symbol(
    feed_client, admin_headers, make_user, db_engine
):
    from app.domain.markets.synthetic import generate_candles

    c = feed_client
    symbol = await make_market(c, admin_headers)
    rows = generate_candles(
        bars=400, seed=8, timeframe="1d", start=T0, start_price=Decimal("100"), tick_size=Decimal("0.01")
    )
    await load(c, admin_headers, symbol, [(str(r.open), str(r.high), str(r.low), str(r.close)) for r in rows])
    await c.post(f"/api/v1/instruments/{symbol}/price", json={"price": "100.00"}, headers=admin_headers)
    user = await make_user("trader")
    account = await make_account(c, user["headers"], allow_short=True)
    for i in range(10):
        await place(
            c,
            user["headers"],
            account,
            symbol=symbol,
            side="buy",
            type="limit",
            quantity=1,
            limit_price=str(Decimal("99.50") - i),
        )
        await place(
            c,
            user["headers"],
            account,
            symbol=symbol,
            side="sell",
            type="limit",
            quantity=1,
            limit_price=str(Decimal("100.50") + i),
        )
    # 40 bars of market time per wall second: ten seconds for the whole range.
    running = await replay(c, admin_headers, symbols=[symbol], speed=86400 * 40)
    assert running["status"] == "queued" and running["total_prices"] == 1600
    market_data = await make_user("market_data")
    second = await replay(c, market_data["headers"], expect=409, symbols=[symbol])
    assert running["id"] in second["detail"]
    resp = await c.post(
        "/api/v1/market/simulations", json={"symbols": [symbol], "interval_ms": 100}, headers=admin_headers
    )
    assert resp.status_code == 409, resp.text
    deadline = time.monotonic() + 30
    while (await c.get(f"/api/v1/market/replays/{running['id']}", headers=admin_headers)).json()[
        "prices_fed"
    ] < 40:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    resp = await c.delete(f"/api/v1/market/replays/{running['id']}", headers=market_data["headers"])
    assert resp.status_code == 200, resp.text
    stopped = await wait_final(c, admin_headers, "replays", running["id"])
    assert stopped["status"] == "stopped" and 40 <= stopped["prices_fed"] < 1600
    await asyncio.sleep(0.3)
    again = (await c.get(f"/api/v1/market/replays/{running['id']}", headers=admin_headers)).json()
    assert again["prices_fed"] == stopped["prices_fed"]  # nothing fed after the stop
    # The last price is exactly the last price the replay fed, and every account agrees with its fills.
    from app.domain.markets.feed_paths import bar_path

    path = [
        p
        for r in rows
        for p in bar_path(r.ts, r.open, r.high, r.low, r.close, 86400, "ohlc", Decimal("0.01"))
    ]
    last = (await c.get(f"/api/v1/instruments/{symbol}/price", headers=admin_headers)).json()
    assert Decimal(last["price"]) == path[stopped["prices_fed"] - 1].price
    async with db_engine.connect() as conn:
        assert (await reconcile_account(conn, uuid.UUID(account))).ok
        locked = await conn.scalar(
            text("SELECT count(*) FROM market_feed_symbols WHERE symbol = :s"), {"s": symbol}
        )
    assert locked == 0
    # The symbol is free again.
    follow = await replay(c, admin_headers, symbols=[symbol], start=rows[-2].ts.isoformat())
    assert (await wait_final(c, admin_headers, "replays", follow["id"]))["status"] == "completed"
    assert (
        await c.delete(f"/api/v1/market/replays/{uuid.uuid4()}", headers=admin_headers)
    ).status_code == 404


async def test_bad_replay_input_is_422_naming_the_field_and_roles_are_enforced(
    feed_client, admin_headers, make_user
):
    c = feed_client
    symbol = await make_market(c, admin_headers)
    await load(c, admin_headers, symbol, BARS)

    async def field_of(**body) -> str:
        resp = await c.post(
            "/api/v1/market/replays", json={"symbols": [symbol], **body}, headers=admin_headers
        )
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        return resp.json()["errors"][0]["field"]

    assert await field_of(symbols=[symbol, "NOSUCH1"]) == "symbols"
    assert await field_of(start="2030-01-01T00:00:00Z") == "start"
    assert await field_of(timeframe="1h") == "timeframe"  # no 1h candles at all
    assert await field_of(timeframe="7d") == "timeframe"
    for speed in (0, -5, "fast", 1e12):
        assert await field_of(speed=speed) == "speed"
    assert await field_of(start="2026-03-05T00:00:00Z", end="2026-03-01T00:00:00Z") == "end"
    trader = await make_user("trader")
    resp = await c.post("/api/v1/market/replays", json={"symbols": [symbol]}, headers=trader["headers"])
    assert resp.status_code == 403
    assert (
        await c.get(f"/api/v1/market/replays/{uuid.uuid4()}", headers=trader["headers"])
    ).status_code == 403


# ------------------------------------------------------------------------------------------------ simulations


async def test_simulation_moves_the_price_on_the_tick_grid_fills_orders_and_stops(
    feed_client, admin_headers, make_user
):
    c = feed_client
    symbol = await make_market(c, admin_headers, tick="0.05", price="50.00")
    user = await make_user("trader")
    account = await make_account(c, user["headers"])
    resting = await place(
        c, user["headers"], account, symbol=symbol, side="buy", type="limit", quantity=1, limit_price="49.95"
    )
    resp = await c.post(
        "/api/v1/market/simulations",
        json={"symbols": [symbol], "interval_ms": 10, "annual_volatility": 8, "seed": 42},
        headers=admin_headers,
    )
    assert resp.status_code == 202, resp.text
    sim = resp.json()
    assert sim["params"]["seed"] == 42 and sim["progress"] == 0
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while True:
        price = (await c.get(f"/api/v1/instruments/{symbol}/price", headers=user["headers"])).json()["price"]
        seen.add(price)
        assert Decimal(price) % Decimal("0.05") == 0
        status = (
            await c.get(f"/api/v1/accounts/{account}/orders/{resting['id']}", headers=user["headers"])
        ).json()
        if len(seen) >= 3 and status["status"] == "filled":
            break
        assert time.monotonic() < deadline, (seen, status["status"])
        await asyncio.sleep(0.02)
    assert status["avg_fill_price"] == "49.95"
    resp = await c.delete(f"/api/v1/market/simulations/{sim['id']}", headers=admin_headers)
    assert resp.status_code == 200
    done = await wait_final(c, admin_headers, "simulations", sim["id"])
    assert done["status"] == "stopped" and done["prices_fed"] > 3 and done["fills"] >= 1
    bad = await c.post(
        "/api/v1/market/simulations", json={"symbols": [symbol], "interval_ms": 1}, headers=admin_headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "interval_ms"
    unpriced = await make_market(c, admin_headers)
    bad = await c.post("/api/v1/market/simulations", json={"symbols": [unpriced]}, headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "symbols"


async def test_make_run_starts_the_demo_simulation_and_a_restart_replaces_it(
    feed_client, admin_headers, db_engine, monkeypatch
):
    from app.domain.markets.seed import DEMO_SIMULATION_LABEL, start_demo_simulation
    from app.lib.settings import Settings

    c = feed_client
    settings = c.app.state.settings
    symbols = [await make_market(c, admin_headers, price="10.00"), await make_market(c, admin_headers, price="20.00")]
    first = await start_demo_simulation(db_engine, settings, settings.admin_api_key, symbols)
    deadline = time.monotonic() + 30
    while (body := (await c.get(f"/api/v1/market/simulations/{first}", headers=admin_headers)).json())["prices_fed"] < 2:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    assert body["label"] == DEMO_SIMULATION_LABEL and body["params"]["interval_ms"] == 500
    second = await start_demo_simulation(db_engine, settings, settings.admin_api_key, symbols)
    assert (await wait_final(c, admin_headers, "simulations", first))["status"] == "stopped"
    resp = await c.delete(f"/api/v1/market/simulations/{second}", headers=admin_headers)
    assert resp.status_code == 200
    assert (await wait_final(c, admin_headers, "simulations", second))["status"] == "stopped"
    monkeypatch.setenv("TRADEDESK_DEMO_SIMULATION", "false")
    assert Settings.from_env().demo_simulation is False
    monkeypatch.delenv("TRADEDESK_DEMO_SIMULATION")
    assert Settings.from_env().demo_simulation is True


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    import sys
    from pathlib import Path

    from tests.conftest import server_env

    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    return subprocess.run([tradedesk, "market", *args], env=server_env(settings, COLUMNS="160"), capture_output=True,
                          text=True, timeout=120)


async def test_cli_replays_with_a_progress_bar_and_simulates_for_a_duration(client, admin_headers, settings, db_engine):
    symbol = await make_market(client, admin_headers)
    await load(client, admin_headers, symbol, BARS)
    done = await asyncio.to_thread(_cli, settings, "replay", symbol, "--timeframe", "1d", "--speed", "max")
    assert done.returncode == 0, done.stderr
    assert "completed: 12 prices (3 bars), 0 fills" in done.stdout
    assert "12/12" in done.stdout + done.stderr  # the progress bar's last state
    async with db_engine.connect() as conn:
        kind, owner = (await conn.execute(text(
            "SELECT kind, owner_id FROM market_feeds WHERE symbols = ARRAY[CAST(:s AS varchar)]"), {"s": symbol})).one()
    assert (kind, owner) == ("replay", None)
    sim = await asyncio.to_thread(_cli, settings, "simulate", symbol, "--interval-ms", "20", "--duration", "1.5",
                                  "--seed", "3")
    assert sim.returncode == 0, sim.stderr
    last = sim.stdout.strip().splitlines()[-1]
    assert last.startswith("stopped: ") and not last.startswith("stopped: 0 prices"), sim.stdout
    bad = await asyncio.to_thread(_cli, settings, "replay", symbol, "--start", "2031-01-01")
    assert bad.returncode == 2 and "no 1d candles in the requested range (start)" in bad.stderr
    bad = await asyncio.to_thread(_cli, settings, "replay", "NOSUCH9")
    assert bad.returncode == 2 and "(symbols)" in bad.stderr
