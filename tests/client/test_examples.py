"""The example programs in clients/python/examples run to completion against a live server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from tradedesk_client import AsyncClient

from tests.client.test_client_live import make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples"


def run_example(name: str, *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


async def test_sweep_research_ranks_and_plots(server, tmp_path):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=200)
    out = tmp_path / "sweep.svg"
    stdout = await asyncio.to_thread(
        run_example,
        "sweep_research.py",
        "--url",
        server.url,
        "--key",
        server.admin_key,
        "--symbol",
        symbol,
        "--grid",
        "fast=5,10",
        "--grid",
        "slow=20,30,40",
        "--out",
        str(out),
    )
    assert "6 runs" in stdout
    ranked = [line for line in stdout.splitlines() if "{" in line]
    assert len(ranked) == 6
    svg = out.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 6


async def test_sma_cross_bot_trades_a_replay_and_reconciles(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=120)
    stdout = await asyncio.to_thread(
        run_example,
        "sma_cross_bot.py",
        "--url",
        server.url,
        "--key",
        server.admin_key,
        "--symbol",
        symbol,
        "--fast",
        "3",
        "--slow",
        "8",
        "--speed",
        "2592000",
    )
    result = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
    assert result["replay"] == "completed", stdout
    assert int(result["fills"]) >= 2 and int(result["trade_updates"]) >= 2, stdout


async def test_bracket_bot_protects_every_entry(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=5)
    stdout = await asyncio.to_thread(
        run_example,
        "bracket_bot.py",
        "--url",
        server.url,
        "--key",
        server.admin_key,
        "--symbol",
        symbol,
        "--rounds",
        "2",
        "--take-profit",
        "0.3",
        "--stop-loss",
        "0.3",
    )
    result = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
    # 2 entries and 2 exits: the exchange cancels each round's other exit (one-cancels-the-other)
    assert result["position"] == "0" and int(result["fills"]) == 4, stdout
    assert result["rounds"].count("take_profit") + result["rounds"].count("stop_loss") == 2, stdout


async def test_bracket_bot_trades_on_an_existing_feed_and_cleans_up_when_no_exit_comes(server):
    """`make run` already simulates the demo symbols: the bot trades on that feed instead of failing on its
    409. Exits 50 % away never fill within --wait: the bot cancels its legs and closes its position."""
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=5)
        feed = await admin.market.simulate([symbol], interval_ms=50, annual_volatility=0.1, seed=3)
        try:
            stdout = await asyncio.to_thread(
                run_example, "bracket_bot.py", "--url", server.url, "--key", server.admin_key,
                "--symbol", symbol, "--rounds", "2", "--take-profit", "50", "--stop-loss", "50",
                "--wait", "1",
            )
        finally:
            await admin.market.stop_simulation(feed.id)
    result = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
    assert "already fed" in result["feed"], stdout
    assert "no exit within 1 s: closed" in result["rounds"] and result["position"] == "0", stdout
    assert int(result["fills"]) == 2, stdout  # the entry and the close, one round only
