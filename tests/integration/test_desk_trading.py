"""The desk's account view in a real browser: the stream as the only source of updates while it is up
(no polling), polling as the fallback while it is down, and the order ticket and blotter for order
classes, trailing stops, amend and the bulk actions (API.md, "Orders: classes, trailing stops, replace,
bulk actions").

The ticket's bodies and the blotter's rendering of legs are checked against the contract by answering
the page's requests in the browser (Playwright routes): what the page sends, and how it shows what it
gets, whatever the server build.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.integration import test_desk_browser as browser_tests
from tests.integration.test_desk_browser import Api, sign_in

# The browser and the live server of the desk's browser tests (module-scoped fixtures, by name).
chromium = browser_tests.chromium
desk_server = browser_tests.desk_server

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def market(desk_server) -> AsyncIterator[dict]:
    admin = Api(desk_server.url, desk_server.admin_key)
    code = f"DT{uuid.uuid4().hex[:6].upper()}"
    await admin("POST", "/exchanges", {"code": code, "name": "Desk trading"}, expect=201)
    symbol = f"T{uuid.uuid4().hex[:6].upper()}"
    await admin(
        "POST",
        "/instruments",
        {
            "symbol": symbol,
            "exchange": code,
            "base_asset": symbol,
            "quote_asset": "USD",
            "tick_size": "0.01",
            "lot_size": "1",
        },
        expect=201,
    )
    await admin("POST", f"/instruments/{symbol}/price", {"price": "100"}, expect=200)
    trader = await admin(
        "POST", "/users", {"email": f"dt-{uuid.uuid4().hex[:6]}@example.com", "role": "trader"}, expect=201
    )
    as_trader = Api(desk_server.url, trader["api_key"])
    yield {"url": desk_server.url, "admin": admin, "trader": trader, "as_trader": as_trader, "symbol": symbol}
    for api in (admin, as_trader):
        await api.http.aclose()


async def new_account(market: dict, name: str) -> str:
    account = await market["as_trader"](
        "POST", "/accounts", {"name": name, "initial_cash": "100000"}, expect=201
    )
    return account["id"]


def reads_of(requests: list[str], account_id: str) -> list[str]:
    """The page's reads of the account's order and fill lists (what a poll would fetch)."""
    return [u for u in requests if re.search(rf"/accounts/{account_id}/(orders|fills)\?", u)]


async def test_no_polling_while_the_stream_is_up_and_fills_still_arrive(chromium, market):
    account = await new_account(market, "Stream only")
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#feed-status", has_text="live").wait_for(timeout=10_000)
        await page.wait_for_timeout(1000)  # the one re-read after subscribing
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if r.method == "GET" else None)
        await page.wait_for_timeout(4000)  # longer than any refresh period the page ever had
        assert reads_of(requests, account) == []

        # An order placed elsewhere and its fill reach the page through the stream alone.
        order = await market["as_trader"](
            "POST",
            f"/accounts/{account}/orders",
            {
                "symbol": market["symbol"],
                "side": "buy",
                "type": "limit",
                "quantity": "4",
                "limit_price": "99.00",
            },
            expect=201,
        )
        await page.locator(f"[data-order='{order['id']}']", has_text="accepted").wait_for(timeout=5000)
        await market["admin"](
            "POST", f"/instruments/{market['symbol']}/price", {"price": "98.90"}, expect=200
        )
        await page.locator(f"[data-order='{order['id']}']", has_text="filled").wait_for(timeout=5000)
        await page.locator("#fills td", has_text="99").first.wait_for(timeout=5000)
        await page.locator("#positions td", has_text=market["symbol"]).wait_for(timeout=5000)
        await page.locator("#fill-announcer", has_text="Fill: buy 4").wait_for(timeout=5000)
        assert reads_of(requests, account) == []
        await market["admin"]("POST", f"/instruments/{market['symbol']}/price", {"price": "100"}, expect=200)
    finally:
        await context.close()


async def test_the_page_polls_while_the_stream_is_down(chromium, market):
    account = await new_account(market, "Polling")
    context = await chromium.new_context(viewport={"width": 1280, "height": 800})

    async def refuse(ws) -> None:  # every stream connection is closed at once
        await ws.close()

    await context.route_web_socket(re.compile(r".*/api/v1/stream$"), refuse)
    page = await context.new_page()
    try:
        await page.goto(market["url"] + "/desk")
        await page.get_by_label("API key").fill(market["trader"]["api_key"])
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Accounts").wait_for()
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#ticket").wait_for()
        await page.wait_for_timeout(1500)
        assert await page.inner_text("#feed-status") == "polling"
        order = await market["as_trader"](
            "POST",
            f"/accounts/{account}/orders",
            {
                "symbol": market["symbol"],
                "side": "buy",
                "type": "limit",
                "quantity": "2",
                "limit_price": "97.00",
            },
            expect=201,
        )
        await page.locator(f"[data-order='{order['id']}']", has_text="accepted").wait_for(timeout=5000)
        await market["admin"](
            "POST", f"/instruments/{market['symbol']}/price", {"price": "96.50"}, expect=200
        )
        await page.locator(f"[data-order='{order['id']}']", has_text="filled").wait_for(timeout=5000)
        await market["admin"]("POST", f"/instruments/{market['symbol']}/price", {"price": "100"}, expect=200)
    finally:
        await context.close()


async def capture_order_bodies(page, account: str, answer: dict | None = None) -> list[dict]:
    """Answers the page's order placements (and validations) itself, recording their bodies."""
    bodies: list[dict] = []

    async def handle(route) -> None:
        if route.request.method != "POST":
            await route.fallback()
            return
        bodies.append(json.loads(route.request.post_data or "{}"))
        if answer is None:
            await route.fulfill(status=200, json={"accepted": True})
        else:
            await route.fulfill(status=answer["status"], json=answer, content_type="application/problem+json")

    await page.route(re.compile(rf".*/api/v1/accounts/{account}/orders(/validate)?$"), handle)
    return bodies


async def test_the_ticket_sends_each_order_class_as_the_contract_says(chromium, market):
    account = await new_account(market, "Ticket bodies")
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#ticket").wait_for()
        # Other tests' instruments share the database: the ticket's first symbol may be any of them.
        await page.select_option("#ticket-symbol", market["symbol"])
        bodies = await capture_order_bodies(page, account)
        validate = page.get_by_role("button", name="Validate")
        symbol = market["symbol"]

        # A simple order is the body the four-type API always took: no defaults added.
        await page.select_option("#ticket-type", "limit")
        await page.fill("#ticket-quantity", "10")
        await page.fill("#ticket-limit", "95.00")
        await validate.click()
        await page.get_by_text("Accepted by every check").wait_for()
        assert bodies[-1] == {
            "symbol": symbol,
            "side": "buy",
            "type": "limit",
            "quantity": "10",
            "limit_price": "95.00",
            "time_in_force": "gtc",
        }

        await page.select_option("#ticket-class", "bracket")
        assert await page.locator("#ticket-legs").is_visible()
        await page.fill("#ticket-tp-limit", "105.00")
        await page.fill("#ticket-sl-stop", "90.00")
        await validate.click()
        await page.wait_for_function(
            "() => document.querySelector('#ticket-result').textContent.startsWith('Accepted')"
        )
        assert bodies[-1] == {
            "symbol": symbol,
            "side": "buy",
            "type": "limit",
            "order_class": "bracket",
            "quantity": "10",
            "limit_price": "95.00",
            "take_profit": {"limit_price": "105.00"},
            "stop_loss": {"stop_price": "90.00"},
            "time_in_force": "gtc",
        }

        # OTO with its one leg; a stop-loss limit joins the stop-loss.
        await page.select_option("#ticket-class", "oto")
        await page.fill("#ticket-tp-limit", "")
        await page.fill("#ticket-sl-limit", "89.50")
        await validate.click()
        await page.wait_for_timeout(200)
        assert bodies[-1]["order_class"] == "oto" and "take_profit" not in bodies[-1]
        assert bodies[-1]["stop_loss"] == {"stop_price": "90.00", "limit_price": "89.50"}

        # A trailing stop by percent, reduce-only, sized in shares.
        await page.select_option("#ticket-class", "simple")
        await page.select_option("#ticket-side", "sell")
        await page.select_option("#ticket-type", "trailing_stop")
        assert not await page.locator("#ticket-limit").is_visible()
        await page.select_option("#ticket-trail-kind", "trail_percent")
        await page.fill("#ticket-trail", "2.5")
        await page.check("#ticket-reduce-only")
        await validate.click()
        await page.wait_for_timeout(200)
        assert bodies[-1] == {
            "symbol": symbol,
            "side": "sell",
            "type": "trailing_stop",
            "quantity": "10",
            "trail_percent": "2.5",
            "reduce_only": True,
            "time_in_force": "gtc",
        }

        # A notional market order carries no quantity.
        await page.uncheck("#ticket-reduce-only")
        await page.select_option("#ticket-side", "buy")
        await page.select_option("#ticket-type", "market")
        await page.select_option("#ticket-sizing", "notional")
        await page.fill("#ticket-notional", "2500")
        await validate.click()
        await page.wait_for_timeout(200)
        assert bodies[-1] == {
            "symbol": symbol,
            "side": "buy",
            "type": "market",
            "notional": "2500",
            "time_in_force": "gtc",
        }

        # Checked before sending: nothing is sent, the field says why and takes focus.
        sent = len(bodies)
        await page.select_option("#ticket-class", "bracket")
        await page.fill("#ticket-tp-limit", "")
        await page.get_by_role("button", name="Place order").click()
        await page.locator("#ticket-tp-limit-error", has_text="required").wait_for()
        assert await page.get_attribute("#ticket-tp-limit", "aria-invalid") == "true"
        assert await page.evaluate("() => document.activeElement.id") == "ticket-tp-limit"
        assert len(bodies) == sent
    finally:
        await context.close()


async def test_the_servers_field_errors_show_beside_their_inputs(chromium, market):
    account = await new_account(market, "Ticket errors")
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#ticket").wait_for()
        problem = {
            "type": "https://tradedesk.dev/problems/validation",
            "title": "Unprocessable",
            "status": 422,
            "detail": "take_profit.limit_price must be above stop_loss.stop_price",
            "errors": [
                {"field": "take_profit.limit_price", "message": "must be above the stop-loss"},
                {"field": "stop_loss", "message": "below the entry"},
            ],
        }
        await capture_order_bodies(page, account, answer=problem)
        await page.select_option("#ticket-class", "bracket")
        await page.select_option("#ticket-type", "limit")
        await page.fill("#ticket-limit", "95.00")
        await page.fill("#ticket-tp-limit", "80.00")
        await page.fill("#ticket-sl-stop", "90.00")
        await page.get_by_role("button", name="Place order").click()
        await page.locator("#ticket-result.error", has_text="must be above").wait_for()
        assert await page.inner_text("#ticket-tp-limit-error") == "must be above the stop-loss"
        assert await page.inner_text("#ticket-sl-stop-error") == "below the entry"
        assert await page.get_attribute("#ticket-sl-stop", "aria-invalid") == "true"
    finally:
        await context.close()


def _order(**fields) -> dict:
    base = {
        "id": str(uuid.uuid4()),
        "client_order_id": None,
        "account_id": "x",
        "symbol": "SYM",
        "side": "buy",
        "type": "limit",
        "quantity": "10",
        "filled_quantity": "0",
        "avg_fill_price": None,
        "limit_price": "95.00",
        "stop_price": None,
        "time_in_force": "gtc",
        "status": "accepted",
        "reject_reason": None,
        "fees": "0",
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
    }
    return base | fields


async def test_the_blotter_nests_legs_and_shows_trailing_stops_and_versions(chromium, market):
    """Legs under their entry (also from `legs` of a nested answer), a trailing stop's live stop and
    watermark, the version; a field this page does not know breaks nothing."""
    account = await new_account(market, "Blotter shapes")
    entry = _order(
        order_class="bracket", version=2, created_at="2026-12-01T10:00:00Z", some_future_field={"x": 1}
    )
    tp = _order(
        order_class="bracket",
        parent_id=entry["id"],
        leg="take_profit",
        side="sell",
        status="held",
        limit_price="105.00",
        reduce_only=True,
    )
    sl = _order(
        order_class="bracket",
        parent_id=entry["id"],
        leg="stop_loss",
        side="sell",
        type="stop",
        status="held",
        limit_price=None,
        stop_price="90.00",
        reduce_only=True,
    )
    entry_nested = entry | {"legs": [sl]}
    trailing = _order(
        type="trailing_stop",
        side="sell",
        limit_price=None,
        stop_price="97.50",
        trail_percent="2.5",
        hwm="100.00",
        created_at="2026-12-01T11:00:00Z",
    )
    page_body = {"items": [trailing, tp, entry_nested], "next_cursor": None}
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:

        async def orders(route) -> None:
            if route.request.method == "GET":
                await route.fulfill(status=200, json=page_body)
            else:
                await route.fallback()

        await page.route(re.compile(rf".*/api/v1/accounts/{account}/orders\?.*"), orders)
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        rows = page.locator("#blotter tbody tr")
        await rows.first.wait_for()
        ids = [await rows.nth(i).get_attribute("data-row") for i in range(await rows.count())]
        assert ids == [trailing["id"], entry["id"], sl["id"], tp["id"]]
        assert await rows.nth(2).get_attribute("class") == "leg"
        assert "stop-loss" in await rows.nth(2).inner_text()
        assert "take-profit" in await rows.nth(3).inner_text()
        assert "stop 97.50 · trail 2.5% · hwm 100.00" in await rows.nth(0).inner_text()
        assert "v2" in await rows.nth(1).inner_text()
        # A held leg can be canceled (with its group) but not amended.
        assert await rows.nth(3).get_by_role("button", name=re.compile("^Amend")).count() == 0
        assert await rows.nth(3).get_by_role("button", name=re.compile("^Cancel")).count() == 1
        # The amend dialog offers the fields of the order's type.
        await rows.nth(0).get_by_role("button", name=re.compile("^Amend")).click()
        await page.locator("#amend-dialog").wait_for()
        assert await page.locator("#amend-dialog input").evaluate_all("els => els.map(e => e.id)") == [
            "amend-quantity",
            "amend-trail_percent",
        ]
        assert await page.input_value("#amend-trail_percent") == "2.5"
    finally:
        await context.close()


async def test_amend_sends_only_what_changed(chromium, market):
    account = await new_account(market, "Amend body")
    resting = await market["as_trader"](
        "POST",
        f"/accounts/{account}/orders",
        {"symbol": market["symbol"], "side": "buy", "type": "limit", "quantity": "5", "limit_price": "90.00"},
        expect=201,
    )
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        patches: list[dict] = []

        async def replace(route) -> None:
            if route.request.method != "PATCH":
                await route.fallback()
                return
            patches.append(json.loads(route.request.post_data or "{}"))
            await route.fulfill(status=200, json=resting | {"limit_price": "91.00", "version": 2})

        await page.route(re.compile(rf".*/api/v1/accounts/{account}/orders/{resting['id']}$"), replace)
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#feed-status", has_text="live").wait_for(timeout=10_000)
        await page.wait_for_timeout(500)  # the re-read after subscribing is done
        await page.get_by_role("button", name=re.compile("^Amend")).click()
        await page.fill("#amend-limit_price", "91.00")
        await page.get_by_role("button", name="Send amendment").click()
        await page.locator("#amend-dialog").wait_for(state="detached")
        assert patches == [{"limit_price": "91.00"}]
        row = page.locator(f"[data-row='{resting['id']}']")
        assert "v2" in await row.inner_text() and "91.00" in await row.inner_text()
    finally:
        await context.close()


# --- against the server's contingent orders, replace and bulk actions ---------------------------------


async def place_from_ticket(page, symbol: str, **fields: str) -> None:
    """Fills the ticket (select ids for choices, input ids for text) and places the order. The symbol is
    always chosen: other tests' instruments share the database, so the first one may be any of them."""
    await page.select_option("#ticket-symbol", symbol)
    for field in ("ticket-class", "ticket-side", "ticket-type", "ticket-sizing", "ticket-trail-kind"):
        if field in fields:
            await page.select_option(f"#{field}", fields.pop(field))
    for field, value in fields.items():
        await page.fill(f"#{field}", value)
    await page.get_by_role("button", name="Place order").click()
    await page.locator("#ticket-result:not(:has-text('Placing'))").wait_for()


async def test_a_bracket_from_the_ticket_shows_its_legs_activate_on_the_fill(chromium, market):
    account = await new_account(market, "Bracket")
    symbol = market["symbol"]
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#feed-status", has_text="live").wait_for(timeout=10_000)
        await place_from_ticket(
            page,
            symbol,
            **{
                "ticket-class": "bracket",
                "ticket-type": "limit",
                "ticket-quantity": "5",
                "ticket-limit": "99.00",
                "ticket-tp-limit": "110.00",
                "ticket-sl-stop": "90.00",
            },
        )
        assert await page.inner_text("#ticket-result") == "Order accepted."
        entry = page.locator("#blotter tbody tr:not(.leg)").first
        entry_id = await entry.get_attribute("data-row")
        legs = page.locator(f"#blotter tr.leg[data-parent='{entry_id}']")
        await legs.nth(1).wait_for(timeout=5000)
        assert [await legs.nth(i).locator(".badge").inner_text() for i in range(2)] == ["held", "held"]
        assert (
            "stop-loss" in await legs.nth(0).inner_text() and "take-profit" in await legs.nth(1).inner_text()
        )

        # The entry fills: both legs become working orders, seen through the stream.
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "98.90"}, expect=200)
        await page.locator(f"[data-order='{entry_id}']", has_text="filled").wait_for(timeout=5000)
        for i in range(2):
            await legs.nth(i).locator(".badge", has_text="accepted").wait_for(timeout=5000)
        await page.get_by_role("button", name=f"Close position {symbol}").wait_for(timeout=5000)
        # The take-profit fills; the stop-loss is canceled with it (one cancels the other).
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "110.00"}, expect=200)
        await legs.nth(1).locator(".badge", has_text="filled").wait_for(timeout=5000)
        await legs.nth(0).locator(".badge", has_text="canceled").wait_for(timeout=5000)
        # Entry and exit both filled: the position is flat again.
        await page.get_by_role("button", name=f"Close position {symbol}").wait_for(
            state="detached", timeout=5000
        )
    finally:
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "100"}, expect=200)
        await context.close()


async def test_amend_changes_a_resting_order_on_the_server(chromium, market):
    account = await new_account(market, "Amend")
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await place_from_ticket(
            page,
            market["symbol"],
            **{"ticket-type": "limit", "ticket-quantity": "5", "ticket-limit": "90.00"},
        )
        row = page.locator("#blotter tbody tr").first
        order_id = await row.get_attribute("data-row")
        await row.get_by_role("button", name=re.compile("^Amend")).click()
        await page.fill("#amend-quantity", "3")
        await page.fill("#amend-limit_price", "91.00")
        await page.get_by_role("button", name="Send amendment").click()
        await page.locator("#amend-dialog").wait_for(state="detached")
        await page.locator(f"[data-row='{order_id}']", has_text="v2").wait_for(timeout=5000)
        text = await page.inner_text(f"[data-row='{order_id}']")
        assert "91.00" in text and "\t3\t" in text
        stored = await market["as_trader"]("GET", f"/accounts/{account}/orders/{order_id}", expect=200)
        assert (stored["quantity"], stored["limit_price"], stored["version"]) == ("3", "91.00", 2)

        # A server rule broken by the amendment shows in the dialog, the order unchanged.
        await (
            page.locator(f"[data-row='{order_id}']").get_by_role("button", name=re.compile("^Amend")).click()
        )
        await page.fill("#amend-limit_price", "91.005")
        await page.get_by_role("button", name="Send amendment").click()
        await page.locator("#amend-result.error").wait_for()
        assert await page.get_attribute("#amend-limit_price", "aria-invalid") == "true"
        # the one failing field's message is the detail: said once, not "detail — field: detail"
        said = await page.inner_text("#amend-result")
        assert said.count("is not a multiple of tick_size") == 1, said
        await page.keyboard.press("Escape")
        stored = await market["as_trader"]("GET", f"/accounts/{account}/orders/{order_id}", expect=200)
        assert stored["version"] == 2

        # Cancel all: every open order of the account ends.
        await page.get_by_role("button", name="Cancel all orders").click()
        await page.locator(f"[data-order='{order_id}']", has_text="canceled").wait_for(timeout=5000)
    finally:
        await context.close()


async def test_close_a_position_and_close_all(chromium, market):
    account = await new_account(market, "Close")
    orders = f"/accounts/{account}/orders"
    symbol = market["symbol"]
    await market["as_trader"](
        "POST", orders, {"symbol": symbol, "side": "buy", "type": "market", "quantity": "7"}, expect=201
    )
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#positions td", has_text=symbol).wait_for()
        await page.get_by_role("button", name=f"Close position {symbol}").click()
        await page.get_by_role("button", name=f"Close position {symbol}").wait_for(
            state="detached", timeout=5000
        )
        closing = page.locator("#blotter tbody tr").first
        assert "reduce-only" in await closing.inner_text() and "sell" in await closing.inner_text()
        positions = await market["as_trader"]("GET", f"/accounts/{account}/positions", expect=200)
        assert all(p["quantity"] == "0" for p in positions["items"])

        await market["as_trader"](
            "POST", orders, {"symbol": symbol, "side": "buy", "type": "market", "quantity": "2"}, expect=201
        )
        await page.get_by_role("button", name=f"Close position {symbol}").wait_for(timeout=5000)
        await page.get_by_role("button", name="Close all positions").click()
        await page.get_by_role("button", name=f"Close position {symbol}").wait_for(
            state="detached", timeout=5000
        )
    finally:
        await context.close()


async def test_a_trailing_stop_shows_its_stop_and_watermark_follow_the_price(chromium, market):
    account = await new_account(market, "Trailing")
    symbol = market["symbol"]
    await market["as_trader"](
        "POST",
        f"/accounts/{account}/orders",
        {"symbol": symbol, "side": "buy", "type": "market", "quantity": "5"},
        expect=201,
    )
    context, page = await sign_in(chromium, market["url"], market["trader"]["api_key"])
    try:
        await page.goto(f"{market['url']}/desk#/accounts/{account}")
        await page.locator("#feed-status", has_text="live").wait_for(timeout=10_000)
        await place_from_ticket(
            page,
            symbol,
            **{
                "ticket-side": "sell",
                "ticket-type": "trailing_stop",
                "ticket-trail-kind": "trail_price",
                "ticket-quantity": "5",
                "ticket-trail": "2.00",
            },
        )
        assert await page.inner_text("#ticket-result") == "Order accepted."
        row = page.locator("#blotter tbody tr").first
        price = row.locator("[data-price-of]")
        assert re.fullmatch(r"stop 98(\.00)? · trail 2(\.00)? · hwm 100(\.00)?", await price.inner_text())
        # The price rises: the watermark and the stop follow it on the page without a reload.
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "105.00"}, expect=200)
        await price.filter(
            has_text=re.compile(r"stop 103(\.00)? · trail 2(\.00)? · hwm 105(\.00)?")
        ).wait_for(timeout=5000)
        # It falls to the stop: the order triggers and fills.
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "102.50"}, expect=200)
        await row.locator(".badge", has_text="filled").wait_for(timeout=5000)
    finally:
        await market["admin"]("POST", f"/instruments/{symbol}/price", {"price": "100"}, expect=200)
        await context.close()
