"""`tradedesk data generate` + `tradedesk data load` end to end against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_generate_then_load_via_cli(client, admin_headers, settings, tmp_path: Path):
    symbol = await make_market(client, admin_headers)
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    env = {**os.environ, "DATABASE_URL": settings.database_url, "LOG_LEVEL": "WARNING"}
    csv = tmp_path / "bars.csv"
    subprocess.run([tradedesk, "data", "generate", symbol, "--bars", "300", "--seed", "5", "--out", str(csv)],
                   check=True, env=env, capture_output=True)
    assert csv.read_text().splitlines()[0] == "ts,open,high,low,close,volume"
    done = subprocess.run([tradedesk, "data", "load", symbol, str(csv), "--timeframe", "1d"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "loaded 300 candles" in done.stdout
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1d&limit=1000", headers=admin_headers)
    assert len(resp.json()["items"]) == 300
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n2026-01-01T00:00:00Z,1,0.5,1,1,1\n")
    failed = subprocess.run([tradedesk, "data", "load", symbol, str(bad), "--timeframe", "1d"], env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 1 and "row 1" in failed.stderr
