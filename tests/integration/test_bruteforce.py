"""Brute-force protection: failed keys from one IP are slowed, then blocked for a cooling-off period;
valid keys are never refused, from another IP or the blocked one; counted in a Prometheus metric."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from litestar.testing.transport import TestClientTransport

from app.domain.identity.bruteforce import BruteForcePolicy
from app.server.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


class PeerTransport(TestClientTransport):
    """The in-process transport with the TCP peer address taken from a test-only header."""

    def parse_request(self, request):  # type: ignore[no-untyped-def]
        scope = super().parse_request(request)
        peer = request.headers.get("x-test-peer")
        if peer:
            scope["client"] = (peer, 40000)
        return scope


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def guarded():
    settings = make_settings(
        redis_prefix=f"tdtest-bf-{uuid.uuid4().hex[:8]}",
        auth_failure_window_seconds=60,
        auth_slowdown_after=2,
        auth_slowdown_base_ms=150,
        auth_slowdown_max_ms=400,
        auth_block_after=5,
        auth_block_seconds=3,
    )
    app = create_app(settings)
    async with AsyncTestClient(app=app, timeout=30) as c:
        c._transport = PeerTransport(client=c)  # type: ignore[assignment]
        yield c


def peer(ip: str, key: str) -> dict[str, str]:
    return {"x-test-peer": ip, "Authorization": f"Bearer {key}"}


def metric(body: str, series: str) -> float:
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exported")


async def failed_counts(c) -> dict[str, float]:
    body = (await c.get("/metrics")).text
    return {
        o: metric(body, f'tradedesk_auth_failures_total{{outcome="{o}"}}')
        for o in ("rejected", "slowed", "blocked")
    }


def test_delay_doubles_then_caps():
    policy = BruteForcePolicy(slow_after=3, delay_base_ms=100, delay_max_ms=500)
    assert [policy.delay_seconds(n) for n in range(1, 8)] == [0, 0, 0, 0.1, 0.2, 0.4, 0.5]
    assert policy.delay_seconds(10_000) == 0.5  # no overflow for huge counts


async def test_slowed_then_blocked_valid_keys_unaffected(guarded, settings):
    admin_key = settings.admin_api_key
    attacker, bystander = f"203.0.113.{uuid.uuid4().int % 250}", "198.51.100.7"
    before = await failed_counts(guarded)

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        resp = await guarded.get("/api/v1/users/me", headers=peer(attacker, f"td_guess{uuid.uuid4().hex}"))
        timings.append(time.perf_counter() - started)
        assert resp.status_code == 401, resp.text
    # Failures 1-2 are answered at once; 3, 4, 5 are held back 150, 300, 400 (cap) ms.
    assert max(timings[:2]) < 0.15
    assert timings[2] >= 0.15 and timings[3] >= 0.3 and timings[4] >= 0.4

    # The sixth failure blocks the IP: 429 with Retry-After, answered without a delay.
    started = time.perf_counter()
    resp = await guarded.get("/api/v1/users/me", headers=peer(attacker, "td_guess-again"))
    assert resp.status_code == 429 and time.perf_counter() - started < 0.15
    assert 1 <= int(resp.headers["retry-after"]) <= 3
    assert resp.json()["detail"] == "Too many failed authentication attempts from this address"
    resp = await guarded.get("/api/v1/users/me", headers=peer(attacker, "td_guess-more"))
    assert resp.status_code == 429

    # Valid keys: never refused, from another IP or from the blocked one; another IP's failures are 401.
    assert (await guarded.get("/api/v1/users/me", headers=peer(bystander, admin_key))).status_code == 200
    assert (await guarded.get("/api/v1/users/me", headers=peer(attacker, admin_key))).status_code == 200
    resp = await guarded.get("/api/v1/users/me", headers=peer(bystander, "td_typo"))
    assert resp.status_code == 401

    after = await failed_counts(guarded)
    assert after["rejected"] - before["rejected"] == 3  # attacker's first two and the bystander's typo
    assert after["slowed"] - before["slowed"] == 3
    assert after["blocked"] - before["blocked"] == 2
    assert "tradedesk_auth_ip_blocks_total" in (await guarded.get("/metrics")).text

    # One auth.ip_blocked event for the block, one auth.failed per counted failure (none while blocked).
    admin = peer(bystander, admin_key)
    blocked = (await guarded.get("/api/v1/audit", params={"type": "auth.ip_blocked"}, headers=admin)).json()[
        "items"
    ]
    assert [e["target"] for e in blocked] == [attacker]
    failed = (await guarded.get("/api/v1/audit", params={"type": "auth.failed"}, headers=admin)).json()[
        "items"
    ]
    assert len([e for e in failed if e["client_ip"] == attacker]) == 5

    # After the cooling-off period the block is gone (the window's count still slows the next try).
    await asyncio.sleep(3.2)
    resp = await guarded.get("/api/v1/users/me", headers=peer(attacker, "td_after-cooling"))
    assert resp.status_code == 429  # still over the threshold inside the 60 s window: blocked again
    blocked = (await guarded.get("/api/v1/audit", params={"type": "auth.ip_blocked"}, headers=admin)).json()[
        "items"
    ]
    assert len(blocked) == 2


async def test_block_ends_after_cooling_off_when_attempts_stop(settings):
    app = create_app(
        make_settings(
            redis_prefix=f"tdtest-bf-{uuid.uuid4().hex[:8]}",
            auth_failure_window_seconds=2,
            auth_slowdown_after=100,
            auth_block_after=2,
            auth_block_seconds=2,
        )
    )
    async with AsyncTestClient(app=app, timeout=30) as c:
        c._transport = PeerTransport(client=c)  # type: ignore[assignment]
        codes = [
            (await c.get("/api/v1/users/me", headers=peer("192.0.2.9", "td_x"))).status_code for _ in range(4)
        ]
        assert codes == [401, 401, 429, 429]
        await asyncio.sleep(2.2)  # both the block and the failure window have run out
        assert (await c.get("/api/v1/users/me", headers=peer("192.0.2.9", "td_x"))).status_code == 401
