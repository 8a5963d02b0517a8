"""The HTML report in a real browser: `tradedesk serve` (with its own in-process worker) runs a backtest,
headless Chromium opens the report through a report token, and the charts must have drawn. The same for
a portfolio backtest's tear sheet and a 2-parameter sweep's heatmap.

Needs the `chromium` package (Debian/Ubuntu: `apt-get install -y chromium`); skipped without it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import httpx
import pytest

from app.domain.backtesting.report import COLORS
from app.domain.markets.synthetic import candles_to_csv, generate_candles
from tests.conftest import REDIS_URL, RUN_ID
from tests.integration.helpers import find_or_install_chromium

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw rows) of an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(out)


def count_color(png: bytes, hex_color: str, tolerance: int = 6) -> int:
    width, height, channels, pixels = png_pixels(png)
    target = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    n = 0
    for i in range(0, width * height * channels, channels):
        if all(abs(pixels[i + k] - target[k]) <= tolerance for k in range(3)):
            n += 1
    return n


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_or_install_chromium()
    if path is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def server(database_url, settings, tmp_path_factory):
    """`tradedesk serve` in a subprocess with its own queue, Redis prefix and in-process worker."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "TRADEDESK_QUEUE_NAME": f"tdtest-{RUN_ID}-browser",
        "TRADEDESK_REDIS_PREFIX": f"tdtest-{RUN_ID}-browser",
        "TRADEDESK_WORKERS_IN_PROCESS": "true",
        "TRADEDESK_ADMIN_API_KEY": settings.admin_api_key,
        "LOG_LEVEL": "WARNING",
        "TRADEDESK_ACCESS_LOG": "false",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("tradedesk")),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tradedesk serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _instrument(http: httpx.AsyncClient, admin: dict[str, str], bars: int, seed: int) -> str:
    code, symbol = f"XP{uuid.uuid4().hex[:6].upper()}", f"PF{uuid.uuid4().hex[:6].upper()}"
    assert (
        await http.post("/api/v1/exchanges", json={"code": code, "name": "Tear"}, headers=admin)
    ).status_code == 201
    resp = await http.post(
        "/api/v1/instruments",
        json={
            "symbol": symbol,
            "exchange": code,
            "base_asset": "P",
            "quote_asset": "USD",
            "tick_size": "0.01",
            "lot_size": "1",
            "min_quantity": "1",
            "min_notional": "0",
        },
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    csv = candles_to_csv(generate_candles(bars=bars, seed=seed, timeframe="1d"))
    resp = await http.post(
        f"/api/v1/instruments/{symbol}/candles?timeframe=1d",
        content=csv.encode(),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    return symbol


async def _completed_backtest(base: str, admin_key: str) -> tuple[str, dict[str, str]]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        symbol = await _instrument(http, admin, 1500, 21)
        resp = await http.post(
            "/api/v1/users", json={"email": f"browser-{uuid.uuid4().hex[:8]}@example.com"}, headers=admin
        )
        user = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        resp = await http.post(
            "/api/v1/backtests",
            json={
                "strategy": "sma_cross",
                "params": {"fast": 10, "slow": 40},
                "symbol": symbol,
                "timeframe": "1d",
                "initial_cash": "100000",
                "commission": "0.0005",
            },
            headers=user,
        )
        assert resp.status_code == 202, resp.text
        backtest_id = resp.json()["id"]
        deadline = time.monotonic() + 30
        while True:
            body = (await http.get(f"/api/v1/backtests/{backtest_id}", headers=user)).json()
            if body["status"] == "completed":
                break
            assert body["status"] in ("queued", "running"), body
            assert time.monotonic() < deadline, "the server's worker did not finish the backtest"
            await asyncio.sleep(0.1)
        assert body["metrics"]["trades"] > 5
        return backtest_id, user


def _run_chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,1600", *args],
        capture_output=True,
        timeout=45,
    )


async def test_report_renders_its_charts_in_a_real_browser(browser, server, settings, tmp_path):
    backtest_id, user = await _completed_backtest(server, settings.admin_api_key)
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:

        async def token() -> str:
            resp = await http.post(f"/api/v1/backtests/{backtest_id}/report-token", headers=user)
            assert resp.status_code == 201, resp.text
            body = resp.json()
            assert body["url"] == f"/static/reports/{backtest_id}?token={body['token']}"
            return server + body["url"]

        # The DOM after scripts ran: the page's own check found every chart laid out with a drawn line.
        url = await token()
        dom = await asyncio.to_thread(_run_chromium, browser, tmp_path, "--dump-dom", url)
        html = dom.stdout.decode()
        assert dom.returncode == 0 and "render-status" in html, dom.stderr.decode()[-2000:]
        status = re.search(r'<div id="render-status"[^>]*>', html).group(0)
        assert 'data-charts="3"' in status and 'data-drawn="3"' in status, status
        assert int(re.search(r'data-markers="(\d+)"', status).group(1)) > 10
        assert 'data-rendered="true"' in html
        widths = [int(w) for w in re.findall(r":(\d+)x\d+", status)]
        assert len(widths) == 3 and all(w > 800 for w in widths), status

        # The link can be reopened while the token is valid (a reload); a wrong token cannot.
        reused = await http.get(url.removeprefix(server))
        assert reused.status_code == 200 and "<svg" in reused.text
        wrong = url.removeprefix(server).rsplit("=", 1)[0] + "=" + "x" * 43
        assert (await http.get(wrong)).status_code == 401
        assert (await http.get(f"/static/reports/{backtest_id}")).status_code in (400, 401)
        assert (await http.get(f"/api/v1/backtests/{backtest_id}/report")).status_code == 401

        # The pixels: the equity line's colour covers a real stretch of the screenshot.
        png = tmp_path / "report.png"
        shot = await asyncio.to_thread(_run_chromium, browser, tmp_path, f"--screenshot={png}", await token())
        assert shot.returncode == 0 and png.exists(), shot.stderr.decode()[-2000:]
        data = png.read_bytes()
        width, height, _, _ = png_pixels(data)
        assert (width, height) == (1280, 1600)
        assert await asyncio.to_thread(count_color, data, COLORS["equity"]) > 500
        assert await asyncio.to_thread(count_color, data, COLORS["price"]) > 300


def _render_status(html: str, charts: int, min_width: int = 300) -> str:
    status = re.search(r'<div id="render-status"[^>]*>', html).group(0)
    assert f'data-charts="{charts}"' in status and f'data-drawn="{charts}"' in status, status
    assert 'data-rendered="true"' in html
    widths = [int(w) for w in re.findall(r":(\d+)x\d+", status)]
    assert len(widths) == charts and all(w > min_width for w in widths), status
    return status


async def test_portfolio_tear_sheet_and_sweep_heatmap_render_in_a_real_browser(
    browser, server, settings, tmp_path
):
    admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        symbols = [await _instrument(http, admin, 600, seed) for seed in (31, 32, 33, 34)]
        resp = await http.post(
            "/api/v1/users", json={"email": f"tear-{uuid.uuid4().hex[:8]}@example.com"}, headers=admin
        )
        user = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        resp = await http.post(
            "/api/v1/backtests",
            json={
                "symbols": symbols[1:],
                "benchmark": symbols[0],
                "timeframe": "1d",
                "initial_cash": "100000",
                "commission": {"rate": "0.0005", "minimum": "1"},
                "allocation": {
                    "type": "target_weights",
                    "weights": dict.fromkeys(symbols[1:], 0.3),
                    "rebalance": "monthly",
                },
                "exits": {"trailing_stop_pct": 15},
            },
            headers=user,
        )
        assert resp.status_code == 202, resp.text
        backtest_id = resp.json()["id"]
        resp = await http.post(
            "/api/v1/backtests/sweeps",
            json={
                "strategy": "sma_cross",
                "grid": {"fast": [5, 10, 20], "slow": [30, 60]},
                "symbol": symbols[0],
                "timeframe": "1d",
                "initial_cash": "100000",
                "rank_by": "sharpe",
            },
            headers=user,
        )
        assert resp.status_code == 202, resp.text
        sweep_id = resp.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            body = (await http.get(f"/api/v1/backtests/{backtest_id}", headers=user)).json()
            sweep = (await http.get(f"/api/v1/backtests/sweeps/{sweep_id}", headers=user)).json()
            if body["status"] == "completed" and sweep["status"] == "completed":
                break
            assert body["status"] in ("queued", "running") or body["status"] == "completed", body
            assert time.monotonic() < deadline, (body["status"], sweep["counts"])
            await asyncio.sleep(0.1)

        resp = await http.post(f"/api/v1/backtests/{backtest_id}/report-token", headers=user)
        url = server + resp.json()["url"]
        dom = await asyncio.to_thread(_run_chromium, browser, tmp_path, "--dump-dom", url)
        html = dom.stdout.decode()
        assert dom.returncode == 0 and "render-status" in html, dom.stderr.decode()[-2000:]
        # equity vs benchmark, underwater, monthly heatmap, rolling Sharpe, exposure per symbol
        status = _render_status(html, 5)
        for name in ("equity", "drawdown", "monthly", "rolling-sharpe", "exposure"):
            assert f"{name}:" in status, status
        assert html.count('class="cell"') >= 12  # at least a year of monthly cells
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # self-contained: nothing fetched

        # The sweep heatmap: a 3 x 2 grid of cells, one chart, drawn.
        resp = await http.get(f"/api/v1/backtests/sweeps/{sweep_id}/heatmap", headers=user)
        assert resp.status_code == 200 and resp.headers["content-security-policy"].startswith(
            "default-src 'none'"
        )
        page = tmp_path / "heatmap.html"
        page.write_text(resp.text)
        dom = await asyncio.to_thread(_run_chromium, browser, tmp_path, "--dump-dom", page.as_uri())
        html = dom.stdout.decode()
        _render_status(html, 1, min_width=200)  # 3 columns of 90 px
        assert html.count('class="cell"') == 6
