"""The desk's accessibility, checked in a real browser: axe-core on every view, keyboard operation of
the order ticket, the live region that announces fills.

axe-core comes from the desk's own node_modules (a devDependency, installed by `make desk`) and is
evaluated into the page by Playwright, never loaded from a CDN: the page's Content-Security-Policy stays
as served. Every rule axe runs by default is checked; a violation of impact `serious` or `critical`
fails the test, naming the rule and the elements.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration import test_desk_browser as browser_tests
from tests.integration.test_desk_browser import Api, seed_market, sign_in, snapshot

# The browser and the live server of the desk's browser tests (module-scoped fixtures, by name).
chromium = browser_tests.chromium
desk_server = browser_tests.desk_server

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

AXE = Path(__file__).resolve().parents[2] / "desk" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip("axe-core is not installed: run `make desk` (npm ci installs the desk's devDependencies)")
    return AXE.read_text()


async def axe_violations(page, axe_source: str) -> list[dict]:
    """axe's violations of impact serious or critical on the page as it is now."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source)
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary.split('\\n')[1])}))"
    )
    return [v for v in result if v["impact"] in BLOCKING]


async def assert_accessible(page, axe_source: str, view: str) -> None:
    violations = await axe_violations(page, axe_source)
    assert not violations, f"{view}: " + "; ".join(
        f"{v['id']} ({v['impact']}, {v['help']}): {v['nodes'][:4]}" for v in violations
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def world(desk_server) -> AsyncIterator[dict]:
    """An instrument with candles, a trader's account with a filled and a resting order (so a position,
    a fill and an open order), a risk manager, a completed backtest and sweep."""
    admin = Api(desk_server.url, desk_server.admin_key)
    symbol = await seed_market(admin, prefix="A", name="A11y", seed=5)
    trader = await admin(
        "POST", "/users", {"email": f"a11y-{uuid.uuid4().hex[:6]}@example.com", "role": "trader"}, expect=201
    )
    risk = await admin(
        "POST",
        "/users",
        {"email": f"a11y-risk-{uuid.uuid4().hex[:6]}@example.com", "role": "risk_manager"},
        expect=201,
    )
    as_trader = Api(desk_server.url, trader["api_key"])
    account = await as_trader(
        "POST", "/accounts", {"name": "A11y trader", "initial_cash": "100000"}, expect=201
    )
    orders = f"/accounts/{account['id']}/orders"
    await as_trader(
        "POST", orders, {"symbol": symbol, "side": "buy", "type": "market", "quantity": "5"}, expect=201
    )
    await as_trader(
        "POST",
        orders,
        {"symbol": symbol, "side": "buy", "type": "limit", "quantity": "2", "limit_price": "90.00"},
        expect=201,
    )
    # A bracket whose legs wait for its entry, and a trailing stop: the blotter's nested rows.
    await as_trader(
        "POST",
        orders,
        {
            "symbol": symbol,
            "side": "buy",
            "type": "limit",
            "quantity": "1",
            "limit_price": "80.00",
            "order_class": "bracket",
            "take_profit": {"limit_price": "120.00"},
            "stop_loss": {"stop_price": "70.00"},
        },
        expect=201,
    )
    await as_trader(
        "POST",
        orders,
        {"symbol": symbol, "side": "sell", "type": "trailing_stop", "quantity": "1", "trail_percent": "5"},
        expect=201,
    )
    await admin(
        "POST",
        f"/accounts/{account['id']}/risk/limits",
        {"limit_type": "max_position_quantity", "value": "100"},
        expect=201,
    )
    backtest = {
        "strategy": "sma_cross",
        "symbol": symbol,
        "timeframe": "1d",
        "initial_cash": "100000",
        "commission": "0.001",
        "params": {"fast": 5, "slow": 20},
    }
    run = await as_trader("POST", "/backtests", backtest, expect=202)
    for _ in range(300):
        if (await as_trader("GET", f"/backtests/{run['id']}"))["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    yield {
        "url": desk_server.url,
        "admin": admin,
        "symbol": symbol,
        "trader": trader,
        "risk": risk,
        "account": account["id"],
    }
    for api in (admin, as_trader):
        await api.http.aclose()


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
async def test_every_view_has_no_serious_axe_violation(chromium, world, axe_source, width, height):
    context = await chromium.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    try:
        await page.goto(world["url"] + "/desk")
        await page.get_by_label("API key").wait_for()
        await assert_accessible(page, axe_source, "sign-in")
        await page.get_by_label("API key").fill("td_wrong_key_0123456789")
        await page.get_by_role("button", name="Sign in").click()
        await page.locator(".login .error:not(:empty)").wait_for()
        await assert_accessible(page, axe_source, "sign-in with an error")
        await page.get_by_label("API key").fill(world["trader"]["api_key"])
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Accounts").wait_for()
        await assert_accessible(page, axe_source, "accounts")

        await page.get_by_role("link", name="A11y trader").click()
        await page.locator("#ticket").wait_for()
        await page.locator("#positions td", has_text=world["symbol"]).wait_for()
        await page.locator("#blotter tr.leg").first.wait_for()
        await assert_accessible(page, axe_source, "account")
        # The ticket with every optional part showing: exit legs, a trailing stop, a field error.
        await page.select_option("#ticket-class", "bracket")
        await page.select_option("#ticket-type", "trailing_stop")
        await page.fill("#ticket-quantity", "")
        await page.get_by_role("button", name="Place order").click()
        await page.locator("#ticket-quantity-error:not(:empty)").wait_for()
        await assert_accessible(page, axe_source, "account with the full ticket and field errors")
        await page.get_by_role("button", name="Amend").first.click()
        await page.locator("#amend-dialog").wait_for()
        await assert_accessible(page, axe_source, "amend dialog")
        await page.keyboard.press("Escape")
        await page.locator("#amend-dialog").wait_for(state="detached")

        await page.goto(f"{world['url']}/desk#/instruments/{world['symbol']}?account={world['account']}")
        await page.locator("#candle-chart canvas").first.wait_for()
        await assert_accessible(page, axe_source, "instrument")

        await page.get_by_role("link", name="Research").click()
        await page.locator("#backtest-form").wait_for()
        await page.locator("[data-backtest]").first.wait_for()
        await assert_accessible(page, axe_source, "research")
        await snapshot(page, f"a11y-research-{width}")
    finally:
        await context.close()

    context, page = await sign_in(chromium, world["url"], world["risk"]["api_key"], width, height)
    try:
        await page.get_by_role("link", name="Risk").click()
        await page.locator(f"[data-account='{world['account']}']").wait_for()
        await assert_accessible(page, axe_source, "risk")
    finally:
        await context.close()


async def test_the_order_ticket_works_from_the_keyboard(chromium, world):
    """Tab order follows the form; a limit order is typed and placed with the keyboard alone; its fill
    is announced in a live region; Amend opens a dialog that Escape closes, focus back on its button."""
    context, page = await sign_in(chromium, world["url"], world["trader"]["api_key"])
    try:
        await page.goto(f"{world['url']}/desk#/accounts/{world['account']}")
        await page.locator("#ticket").wait_for()
        # Other tests' instruments share the database: the ticket's first symbol may be any of them.
        await page.select_option("#ticket-symbol", world["symbol"])
        await page.focus("#ticket-symbol")
        order = []
        for _ in range(9):
            order.append(await page.evaluate("() => document.activeElement.id"))
            await page.keyboard.press("Tab")
        # Simple limit: the fields it takes, in reading order, then the two buttons.
        await page.focus("#ticket-symbol")
        await page.keyboard.press("Tab")  # side
        await page.keyboard.press("Tab")  # class
        await page.keyboard.press("Tab")  # type
        await page.keyboard.type("l")  # a focused select picks by typed letter: limit
        assert await page.evaluate("() => document.activeElement.value") == "limit"
        order_limit = ["ticket-type"]
        for _ in range(6):
            await page.keyboard.press("Tab")
            order_limit.append(await page.evaluate("() => document.activeElement.id"))
        assert order[:5] == ["ticket-symbol", "ticket-side", "ticket-class", "ticket-type", "ticket-sizing"]
        assert order_limit == [
            "ticket-type",
            "ticket-quantity",
            "ticket-limit",
            "ticket-reduce-only",
            "ticket-tif",
            "ticket-validate",
            "ticket-submit",
        ]
        await page.focus("#ticket-quantity")
        await page.keyboard.press("Control+A")
        await page.keyboard.type("3")
        await page.keyboard.press("Tab")
        await page.keyboard.type("99.00")
        await page.keyboard.press("Enter")  # submits the form
        await page.locator("#ticket-result", has_text="Order accepted.").wait_for()

        await world["admin"]("POST", f"/instruments/{world['symbol']}/price", {"price": "98.50"}, expect=200)
        announcer = page.locator("#fill-announcer")
        await page.locator("#fill-announcer", has_text="Fill: buy 3").wait_for(timeout=10_000)
        assert await announcer.get_attribute("role") == "status"
        await world["admin"]("POST", f"/instruments/{world['symbol']}/price", {"price": "100"}, expect=200)

        amend = page.get_by_role("button", name="Amend").first
        await amend.focus()
        label = await amend.get_attribute("aria-label")
        await page.keyboard.press("Enter")
        dialog = page.locator("#amend-dialog")
        await dialog.wait_for()
        assert await page.evaluate("() => document.activeElement.closest('dialog') !== null")
        await page.keyboard.press("Escape")
        await dialog.wait_for(state="detached")
        assert await page.evaluate("() => document.activeElement.getAttribute('aria-label')") == label
    finally:
        await context.close()
