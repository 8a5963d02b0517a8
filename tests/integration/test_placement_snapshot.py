"""An account's next order is decided on the state its previous order's write left (placement.py:
_Snapshot) and written in one round trip, and never on state that has changed since.

Each test changes something the decision depends on between two orders, the way another API process,
a price feed or an admin would (the API, or SQL on a connection of its own), and checks that the second
order is decided on the current state. The first test checks that the kept state is exactly what a
fresh read returns, after every kind of order.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from app.domain.trading import placement, rules
from app.domain.trading.book import book_from_row
from app.lib.db import _numeric_as_text, libpq_url
from app.lib.metrics import PLACEMENT_SNAPSHOTS
from tests.integration.helpers import D, account, make_account, make_market, place, set_price

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _count(result: str) -> float:
    return PLACEMENT_SNAPSHOTS.labels(result=result)._value.get()


async def _sql(settings, sql: str, *params):
    conn = await asyncpg.connect(libpq_url(settings.database_url))
    try:
        return await conn.fetch(sql, *params)
    finally:
        await conn.close()


async def _fresh_lean_row(settings, account_id: uuid.UUID, side: str, symbol: str):
    conn = await asyncpg.connect(libpq_url(settings.database_url))
    try:
        await _numeric_as_text(conn)  # as on the order pool
        return await conn.fetchrow(placement.LEAN_READ_SQL, account_id, side, symbol, None)
    finally:
        await conn.close()


def _decision_inputs(row) -> dict:
    """Everything decide_on_row and the write take from a lean read row."""
    book = book_from_row(row, False)
    return {
        "book": {k: getattr(book, k) for k in ("cash", "reserved_cash", "realized_pnl", "fees_paid", "peak_equity",
                                               "allow_short", "trading_state", "initial_cash", "owner_id")},
        "positions": {s: (p.quantity, p.avg_entry_price, p.realized_pnl) for s, p in book.positions.items()},
        "prices": dict(book.prices),
        "scales": {k: str(getattr(book, k)) for k in ("cash", "reserved_cash", "realized_pnl", "fees_paid")},
        **{k: row[k] for k in (*rules.INSTRUMENT_FIELDS, "row_version", "instrument_version",
                               "exchange_version", "existing_order")},
        "open_sell_quantity": None if row["open_sell_quantity"] is None else Decimal(row["open_sell_quantity"]),
    }


async def test_kept_state_is_what_a_fresh_read_returns(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001", maker="0.0005", slippage="5")
    acct = await make_account(client, h, cash="100000")
    account_id = uuid.UUID(acct)
    used = _count("used")
    steps = [
        dict(side="buy", type="market", quantity="10"),            # first: read, decide, write, keep
        dict(side="buy", type="market", quantity="3"),             # decided on the kept state
        dict(side="buy", type="limit", quantity="4", limit_price="90"),   # rests: reserves cash
        dict(side="sell", type="market", quantity="5"),            # realises PnL; open sells now known
        dict(side="sell", type="limit", quantity="2", limit_price="120"),  # rests: open sells + 2
        dict(side="sell", type="market", quantity="1"),
        dict(side="buy", type="market", quantity="7", time_in_force="ioc"),
    ]
    for step in steps:
        placed = await place(client, h, acct, symbol=sym, **step)
        assert placed["status"] in ("filled", "accepted"), placed
        kept = client.app.state.placement_caches.snapshots[account_id]
        fresh = await _fresh_lean_row(settings, account_id, step["side"], sym)
        expected = _decision_inputs(fresh)
        got = _decision_inputs(kept.row)
        if step["side"] == "buy" and kept.row["open_sell_quantity"] is not None:
            # A buy's read does not count open sells; the count kept from an earlier sell must still be
            # what a sell's read returns.
            sell_read = await _fresh_lean_row(settings, account_id, "sell", sym)
            assert Decimal(kept.row["open_sell_quantity"]) == Decimal(sell_read["open_sell_quantity"]), step
            got["open_sell_quantity"] = None
        assert got == expected, step
    # Every step but the first and the first sell (the buys' reads did not count open sells, so a sell
    # cannot be decided on their state) was decided on the kept state.
    assert _count("used") - used == len(steps) - 2


async def test_a_new_price_is_not_missed(client, admin_headers, make_user):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")
    stale = _count("stale")
    await set_price(client, admin_headers, sym, "120")
    second = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")
    assert D(second["avg_fill_price"]) == D("120")
    assert _count("stale") - stale == 1
    assert D((await account(client, h, acct))["cash"]) == D("100000") - D("100") - D("120")


async def test_an_exchange_fee_change_is_not_missed(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    # A fee change touches only the exchange row: neither the account nor the instrument.
    await _sql(settings, "UPDATE exchanges SET taker_fee_rate = 0.01 WHERE code = "
                         "(SELECT exchange_code FROM instruments WHERE symbol = $1)", sym)
    stale = _count("stale")
    second = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    assert D(second["fees"]) == D("10.00") and _count("stale") - stale == 1


async def test_a_halt_is_not_missed(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")
    await _sql(settings, "UPDATE instruments SET status = 'halted' WHERE symbol = $1", sym)
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "buy", "type": "market", "quantity": "1", "time_in_force": "gtc"})
    assert resp.status_code == 422 and resp.json()["type"].endswith("/instrument-halted"), resp.text


async def test_cash_changed_elsewhere_is_decided_on_again(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="1000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")  # cash 900 kept
    # Another process adds cash: the kept state says 900, so this order is rejected on it, and a rejection
    # is always decided again on a fresh read, which allows it.
    await _sql(settings, "UPDATE accounts SET cash = cash + 5000 WHERE id = $1", uuid.UUID(acct))
    rejected = _count("rejected")
    big = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="20")
    assert big["status"] == "filled" and _count("rejected") - rejected == 1
    # Another process takes cash away: the kept state allows the order, the write finds the account row
    # changed and writes nothing, and the fresh decision rejects it.
    await _sql(settings, "UPDATE accounts SET cash = 50 WHERE id = $1", uuid.UUID(acct))
    stale = _count("stale")
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "buy", "type": "market", "quantity": "1", "time_in_force": "gtc"})
    assert resp.status_code == 422 and resp.json()["type"].endswith("/insufficient-buying-power"), resp.text
    assert _count("stale") - stale == 1


async def test_a_cancelled_sell_frees_the_position_at_once(client, admin_headers, make_user):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    resting = await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity="10", limit_price="150")
    assert client.app.state.placement_caches.snapshots[uuid.UUID(acct)].row["open_sell_quantity"] == "10"
    # A cancel releases no cash for a sell and leaves the account row alone: the kept open-sell count is
    # now too high, which can only reject; the rejection is decided again on a fresh read.
    resp = await client.delete(f"/api/v1/accounts/{acct}/orders/{resting['id']}", headers=h)
    assert resp.status_code == 200, resp.text
    rejected = _count("rejected")
    sold = await place(client, h, acct, symbol=sym, side="sell", type="market", quantity="10")
    assert sold["status"] == "filled" and _count("rejected") - rejected == 1


async def test_client_order_id_replays_and_conflicts_on_kept_state(client, admin_headers, make_user):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, h, cash="100000")
    first = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1", client_order_id="bot-1")
    used = _count("client_order_id_used")
    # Decided on the kept state (which holds no orders), the write hits the unique index and writes
    # nothing; the fresh read finds the order and replays it.
    replay = await place(client, h, acct, expect=200, symbol=sym, side="buy", type="market", quantity="1",
                         client_order_id="bot-1")
    assert replay["id"] == first["id"] and _count("client_order_id_used") - used == 1
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1", client_order_id="bot-2")
    conflict = await place(client, h, acct, expect=409, symbol=sym, side="buy", type="market", quantity="2",
                           client_order_id="bot-2")
    assert "client_order_id" in conflict["detail"] and _count("client_order_id_used") - used == 2
    items = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    assert len(items) == 2


async def test_an_account_holding_another_symbol_is_not_kept(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym_a = await make_market(client, admin_headers, price="100", taker="0")
    sym_b = await make_market(client, admin_headers, price="50", taker="0")
    acct = await make_account(client, h, cash="100000")
    account_id = uuid.UUID(acct)
    await place(client, h, acct, symbol=sym_a, side="buy", type="market", quantity="10")
    await place(client, h, acct, symbol=sym_b, side="buy", type="market", quantity="1")
    # Its equity moves with A's price, which changes neither the account row nor B's.
    assert account_id not in client.app.state.placement_caches.snapshots
    await set_price(client, admin_headers, sym_a, "200")
    await place(client, h, acct, symbol=sym_b, side="buy", type="market", quantity="1")
    snapshot = await _sql(settings, "SELECT equity FROM equity_snapshots WHERE account_id = $1 ORDER BY ts DESC, id DESC "
                                    "LIMIT 1", account_id)
    # cash 100000 - 1000 - 50 - 50, A at 200, B 2 at 50
    assert snapshot[0]["equity"] == D("98900") + D("2000") + D("100")


BRACKET = {"side": "buy", "type": "limit", "quantity": "5", "limit_price": "90", "order_class": "bracket",
           "take_profit": {"limit_price": "120"}, "stop_loss": {"stop_price": "80"}}


async def test_a_bracket_is_written_on_the_kept_state_and_leaves_what_a_fresh_read_returns(
    client, admin_headers, make_user, settings
):
    """Groups and trailing stops take the kept state too (contingent.py, _place_kept): the entry's checks
    on it, entry, legs and events in one statement, and the state that write leaves is kept."""
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0.001")
    acct = await make_account(client, h, cash="100000")
    account_id = uuid.UUID(acct)
    caches = client.app.state.placement_caches
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    used, stale = _count("used"), _count("stale")
    steps = [
        BRACKET,                                                        # rests; its legs are held
        dict(side="buy", type="market", quantity="1"),                  # a simple order after it
        dict(side="sell", type="trailing_stop", quantity="2", trail_price="5"),  # read: a sell; rests
        dict(side="buy", type="limit", quantity="1", limit_price="95", order_class="oto",
             take_profit={"limit_price": "130"}),
    ]
    for step in steps:
        placed = await place(client, h, acct, symbol=sym, **step)
        assert placed["status"] in ("filled", "accepted"), placed
        kept = caches.snapshots[account_id]
        side = "sell" if kept.row["open_sell_quantity"] is not None else "buy"
        fresh = await _fresh_lean_row(settings, account_id, side, sym)
        assert _decision_inputs(kept.row) == _decision_inputs(fresh), step
    # Every step but the sell (the buys' states did not count open sells) was written on the kept state.
    assert (_count("used") - used, _count("stale") - stale) == (len(steps) - 1, 0)


async def test_exit_legs_a_bracket_makes_active_are_counted_against_the_next_sell(client, admin_headers, make_user):
    """A bracket whose entry fills at placement activates its exits at once: its take-profit is an open
    sell the kept count does not have, so the account's next sell reads the count again (a long-only
    account may not sell what its open sells already cover)."""
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="100000")
    caches = client.app.state.placement_caches
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="10")
    await place(client, h, acct, symbol=sym, side="sell", type="limit", quantity="2", limit_price="150")
    assert caches.snapshots[uuid.UUID(acct)].row["open_sell_quantity"] == "2"
    used = _count("used")
    entry = await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="5", order_class="bracket",
                        take_profit={"limit_price": "160"}, stop_loss={"stop_price": "90"})
    assert entry["status"] == "filled" and [leg["status"] for leg in entry["legs"]] == ["accepted", "accepted"]
    assert _count("used") - used == 1
    assert caches.snapshots[uuid.UUID(acct)].row["open_sell_quantity"] is None
    # Held 15; open sells 2 + 5 (the take-profit; its stop-loss shares the quantity): 8 left to sell.
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, "side": "sell", "type": "market", "quantity": "9", "time_in_force": "gtc"})
    assert resp.status_code == 422 and "sellable position 8" in resp.json()["detail"], resp.text


async def test_a_bracket_on_a_changed_account_is_decided_on_a_fresh_read(client, admin_headers, make_user, settings):
    h = (await make_user("trader"))["headers"]
    sym = await make_market(client, admin_headers, price="100", taker="0")
    acct = await make_account(client, h, cash="100000")
    await place(client, h, acct, symbol=sym, side="buy", type="market", quantity="1")
    # Another writer (another process, a job) takes cash: the account row changes.
    await _sql(settings, "UPDATE accounts SET cash = cash - 99000, initial_cash = initial_cash - 99000 WHERE id = $1",
               uuid.UUID(acct))
    stale = _count("stale")
    resp = await client.post(f"/api/v1/accounts/{acct}/orders", headers=h, json={
        "symbol": sym, **BRACKET, "quantity": "20", "time_in_force": "gtc"})
    # 20 x 90 = 1,800 > the 900 left. Decided on the kept state (99,900) it passed, but its write found the
    # account row changed and wrote nothing; the fresh read refuses it.
    assert resp.status_code == 422, resp.text
    assert _count("stale") - stale == 1
    listed = (await client.get(f"/api/v1/accounts/{acct}/orders", headers=h)).json()["items"]
    assert len(listed) == 1
