"""The desk's figures for docs/BENCHMARKS.md, in headless Chromium against a live `tradedesk serve`:

1. first load of /desk: bytes transferred (every response body and header the page fetched until it is
   interactive) and time to interactive (navigation start to the sign-in form ready for input), cold
   cache, median of `--loads` fresh browser contexts;
2. fill to paint: a resting limit order on the blotter, then a price posted through the API that fills
   it; the time from the moment the price request was sent (the fill commits before its answer) to the
   blotter showing `filled`, as the page's own clock records it (a MutationObserver, then the next
   animation frame, i.e. painted), over `--fills` orders;
3. idle reads: the API requests the account view makes in `--idle` seconds with nothing happening
   while the stream is live (what polling would cost), as requests per minute.

    python -m benchmarks.measure_desk [--loads 10] [--fills 30] [--idle 10]

Needs Debian's chromium and the built desk (`make desk`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from benchmarks.live_server import live_server

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# In the page: resolve when the blotter shows `filled` for this order, with the paint time (page clock).
WATCH_FILL = """orderId => new Promise(resolve => {
  const seen = () => document.querySelector(`[data-order="${orderId}"]`)?.textContent === "filled";
  const done = () => requestAnimationFrame(() => resolve(performance.timeOrigin + performance.now()));
  if (seen()) return done();
  const observer = new MutationObserver(() => { if (seen()) { observer.disconnect(); done(); } });
  observer.observe(document.getElementById("blotter"), {subtree: true, childList: true, characterData: true});
})"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(url: str, admin_key: str, loads: int, fills: int, idle: float) -> dict:
    from playwright.async_api import async_playwright

    api = httpx.AsyncClient(
        base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    )
    code, symbol = f"MX{uuid.uuid4().hex[:6].upper()}", f"M{uuid.uuid4().hex[:6].upper()}"
    (await api.post("/exchanges", json={"code": code, "name": "Measure"})).raise_for_status()
    (
        await api.post(
            "/instruments",
            json={
                "symbol": symbol,
                "exchange": code,
                "base_asset": symbol,
                "quote_asset": "USD",
                "tick_size": "0.01",
                "lot_size": "1",
            },
        )
    ).raise_for_status()
    (await api.post(f"/instruments/{symbol}/price", json={"price": "100"})).raise_for_status()
    account = (await api.post("/accounts", json={"name": "measure", "initial_cash": "10000000"})).json()["id"]

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        load_bytes, load_ms = [], []
        for _ in range(loads):
            context = await browser.new_context()
            page = await context.new_page()
            sizes: list[int] = []

            async def on_response(response, sizes=sizes) -> None:
                body = await response.body()
                headers = await response.all_headers()
                sizes.append(len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()))

            page.on("response", on_response)
            await page.goto(url + "/desk")
            await page.wait_for_selector("#api-key")
            load_ms.append(await page.evaluate("() => performance.now()"))
            await page.wait_for_timeout(100)
            load_bytes.append(sum(sizes))
            await context.close()

        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(url + "/desk")
        await page.fill("#api-key", admin_key)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1:has-text('Accounts')")
        await page.goto(f"{url}/desk#/accounts/{account}")
        await page.wait_for_selector("#ticket")
        await page.wait_for_timeout(1000)
        feed = await page.inner_text("#feed-status")
        reads: list[str] = []

        def on_request(request) -> None:
            if "/api/v1/" in request.url:
                reads.append(request.url)

        page.on("request", on_request)
        await page.wait_for_timeout(idle * 1000)
        page.remove_listener("request", on_request)
        latencies = []
        for i in range(fills):
            price = f"{99 - (i % 5):.2f}"
            order = (
                await api.post(
                    f"/accounts/{account}/orders",
                    json={
                        "symbol": symbol,
                        "side": "buy",
                        "type": "limit",
                        "quantity": "1",
                        "limit_price": price,
                    },
                )
            ).json()
            await page.wait_for_selector(f"[data-order='{order['id']}']")
            painted = asyncio.ensure_future(page.evaluate(WATCH_FILL, order["id"]))
            await asyncio.sleep(0.05)
            sent = time.time() * 1000
            (await api.post(f"/instruments/{symbol}/price", json={"price": price})).raise_for_status()
            latencies.append(await asyncio.wait_for(painted, 10) - sent)
            (await api.post(f"/instruments/{symbol}/price", json={"price": "100"})).raise_for_status()
        await browser.close()
    await api.aclose()
    return {
        "first_load_bytes_median": statistics.median(load_bytes),
        "time_to_interactive_ms_median": statistics.median(load_ms),
        "time_to_interactive_ms_max": max(load_ms),
        "feed": feed,
        "fill_to_paint_ms_p50": _pct(latencies, 0.5),
        "fill_to_paint_ms_p95": _pct(latencies, 0.95),
        "fill_to_paint_ms_max": max(latencies),
        "fills": len(latencies),
        "idle_api_requests_per_min": len(reads) * 60 / idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--fills", type=int, default=30)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with live_server("desk") as (url, admin_key):
        result = asyncio.run(measure(url, admin_key, args.loads, args.fills, args.idle))
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
