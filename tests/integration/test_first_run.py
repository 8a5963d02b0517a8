"""What a new user meets first: a quiet CLI, a `tradedesk check` that checks the embedded services, and
account performance figures from the first minute."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.helpers import D, account, make_account, make_market, place, set_price


@pytest.mark.asyncio(loop_scope="session")
async def test_new_account_performance_has_figures_before_any_scheduled_snapshot(
    client, admin_headers, make_user
):
    user = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    acct = await make_account(client, user["headers"], cash="10000")
    url = f"/api/v1/accounts/{acct}/performance"
    body = (await client.get(url, headers=user["headers"])).json()
    # the opening equity, then today's close valued now: one period, flat
    assert body["points"] == 2 and body["periods"] == 1, body
    assert body["total_return"] == 0.0 and body["max_drawdown"] == 0.0 and body["best_period"] == 0.0

    await place(client, user["headers"], acct, symbol=symbol, side="buy", type="market", quantity=10)
    await set_price(client, admin_headers, symbol, "110")
    equity = D((await account(client, user["headers"], acct))["equity"])
    body = (await client.get(url, headers=user["headers"])).json()
    assert body["points"] == 2 and body["periods"] == 1, body
    assert body["total_return"] == pytest.approx(float(equity / D("10000") - 1), abs=1e-12)
    assert body["total_return"] > 0


# ------------------------------------------------------------------------------------------------ CLI

NOISE = ("RuntimeDirWarning", "embedded_postgres_started", "remaining pids", "Running commandline")


def _embedded_env(data_dir: Path) -> dict[str, str]:
    drop = (
        "DATABASE_URL",
        "REDIS_URL",
        "TRADEDESK_QUEUE_URL",
        "TRADEDESK_WORKERS_IN_PROCESS",
        "XDG_RUNTIME_DIR",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LOG_")}
    env.update(TRADEDESK_DATA_DIR=str(data_dir), TRADEDESK_QUEUE_NAME=f"first-run-{uuid.uuid4().hex[:6]}")
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    return subprocess.run([tradedesk, *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_cli_is_quiet_and_check_checks_the_embedded_services(embedded_tmp_path: Path):
    env = _embedded_env(embedded_tmp_path / "data")
    done = _cli(env, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Database upgraded to head."
    assert not [n for n in NOISE if n in done.stderr], done.stderr

    done = _cli(env, "check", "--no-require-workers")
    assert not [n for n in NOISE if n in done.stderr], done.stderr
    assert "[FAIL]" not in done.stdout, done.stdout
    assert "[ok] database: reachable and at migration head" in done.stdout, done.stdout
    assert "[ok] queue: reachable" in done.stdout, done.stdout
    assert "embedded" in done.stdout
    assert done.returncode == 0, done.stdout

    # with no worker running, the default check says so and fails
    done = _cli(env, "check")
    assert done.returncode == 1 and "[FAIL] workers: 0 alive" in done.stdout, done.stdout

    done = _cli(env, "--verbose", "db", "current")
    assert done.returncode == 0, done.stderr
    assert "embedded_postgres_started" in done.stderr and "remaining pids" in done.stderr, done.stderr


@pytest.mark.slow
def test_cli_attaching_to_a_running_embedded_server_does_not_claim_to_start_it(embedded_tmp_path: Path):
    env = _embedded_env(embedded_tmp_path / "data")
    (embedded_tmp_path / "data").mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, embedded_postgres; embedded_postgres.get_server(sys.argv[1]);"
            " print('up', flush=True); time.sleep(120)",
            str(embedded_tmp_path / "data" / "pg"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "up"
        done = _cli(env, "--verbose", "db", "current")
        assert done.returncode == 0, done.stderr
        assert "embedded_postgres_attached" in done.stderr, done.stderr
        assert "embedded_postgres_started" not in done.stderr, done.stderr
    finally:
        os.killpg(holder.pid, signal.SIGTERM)
        holder.wait(timeout=30)
