"""API keys and per-user budgets under hostile use: rotation that cannot be replayed into a dead key, the
bootstrap admin key restored at start-up, rate limits and key counts per user, and quotas on queued
backtests and sweeps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from app.server.app import create_app
from tests.conftest import make_settings
from tests.integration.helpers import make_account, make_daily_market, make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _keys(client, headers) -> list[dict]:
    resp = await client.get("/api/v1/auth/keys", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


# ------------------------------------------------------------------------------------------------ rotation


async def test_rotating_a_key_twice_is_409_and_the_first_new_key_keeps_no_expiry(client, make_user):
    user = await make_user("trader")
    key_id = (await _keys(client, user["headers"]))[0]["id"]
    first = await client.post(
        f"/api/v1/auth/keys/{key_id}/rotate", json={"grace_seconds": 600}, headers=user["headers"]
    )
    assert first.status_code == 201, first.text
    assert first.json()["expires_at"] is None
    again = await client.post(
        f"/api/v1/auth/keys/{key_id}/rotate", json={"grace_seconds": 600}, headers=user["headers"]
    )
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/conflict") and "already rotated" in again.json()["detail"]
    # only one successor exists
    assert len(await _keys(client, user["headers"])) == 2


async def test_concurrent_rotations_of_one_key_hand_out_one_new_key(client, make_user):
    user = await make_user("trader")
    key_id = (await _keys(client, user["headers"]))[0]["id"]
    resps = await asyncio.gather(
        *(client.post(f"/api/v1/auth/keys/{key_id}/rotate", headers=user["headers"]) for _ in range(5))
    )
    codes = sorted(r.status_code for r in resps)
    assert codes == [201, 409, 409, 409, 409], [r.text for r in resps]


async def test_an_expiry_without_a_utc_offset_is_a_400_naming_the_field(client, make_user):
    user = await make_user("trader")
    for naive in ("2020-01-01T00:00:00", "2999-01-01T00:00:00"):
        resp = await client.post(
            "/api/v1/auth/keys", json={"name": "naive", "expires_at": naive}, headers=user["headers"]
        )
        assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "expires_at", resp.text


async def test_the_key_list_is_paginated_newest_first(client, make_user):
    user = await make_user("trader")
    made = []
    for name in ("a", "b"):
        resp = await client.post("/api/v1/auth/keys", json={"name": name}, headers=user["headers"])
        made.append(resp.json()["id"])
    page = (await client.get("/api/v1/auth/keys", params={"limit": 2}, headers=user["headers"])).json()
    assert [k["id"] for k in page["items"]] == made[::-1] and page["next_cursor"]
    rest = await client.get(
        "/api/v1/auth/keys", params={"limit": 2, "cursor": page["next_cursor"]}, headers=user["headers"]
    )
    assert [k["name"] for k in rest.json()["items"]] == ["default"] and rest.json()["next_cursor"] is None


async def test_rotating_an_expired_key_is_refused(client, make_user):
    user = await make_user("trader")
    expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    short = await client.post(
        "/api/v1/auth/keys", json={"name": "short", "expires_at": expires}, headers=user["headers"]
    )
    assert short.status_code == 201, short.text
    await asyncio.sleep(1.3)
    resp = await client.post(f"/api/v1/auth/keys/{short.json()['id']}/rotate", headers=user["headers"])
    assert resp.status_code == 409, resp.text
    assert "expired" in resp.json()["detail"]
    assert len(await _keys(client, user["headers"])) == 2  # no new key was created


async def test_expires_at_in_the_past_is_422(client, make_user):
    user = await make_user("trader")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    resp = await client.post(
        "/api/v1/auth/keys", json={"name": "dead", "expires_at": past}, headers=user["headers"]
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "expires_at"
    assert len(await _keys(client, user["headers"])) == 1


async def test_rotate_body_is_optional_and_the_openapi_says_so(client, make_user):
    user = await make_user("trader")
    key_id = (await _keys(client, user["headers"]))[0]["id"]
    resp = await client.post(f"/api/v1/auth/keys/{key_id}/rotate", headers=user["headers"])
    assert resp.status_code == 201, resp.text
    schema = (await client.get("/schema/openapi.json")).json()
    body = schema["paths"]["/api/v1/auth/keys/{key_id}/rotate"]["post"]["requestBody"]
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/KeyRotate"}


# ---------------------------------------------------------------------------------------------- bootstrap key


class _RecordingLog:
    """Stands in for the app module's logger: structlog caches loggers on first use, so capture_logs
    cannot see one that earlier tests in the session already used."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **kw: self.lines.append((level, event, kw))


async def test_admin_key_is_restored_at_start_up_after_it_was_revoked(monkeypatch):
    import app.server.app as app_module

    settings = make_settings(admin_api_key=f"td_restore_{uuid.uuid4().hex}_0123456789abcdef")
    headers = {"Authorization": f"Bearer {settings.admin_api_key}"}
    async with AsyncTestClient(app=create_app(settings)) as c:
        mine = (await c.get("/api/v1/auth/whoami", headers=headers)).json()["key_id"]
        assert (await c.delete(f"/api/v1/auth/keys/{mine}", headers=headers)).status_code == 204
        assert (await c.get("/api/v1/users/me", headers=headers)).status_code == 401
    for expected in ("restored", "unchanged"):
        recorder = _RecordingLog()
        monkeypatch.setattr(app_module, "log", recorder)
        async with AsyncTestClient(app=create_app(settings)) as c:
            assert (await c.get("/api/v1/users/me", headers=headers)).status_code == 200
        ensured = [(level, kw) for level, event, kw in recorder.lines if event == "admin_key_ensured"]
        # a reinstated key is worth a warning: someone had revoked the operator's way in
        assert ensured == [("warning" if expected == "restored" else "info", {"action": expected})], ensured


# ------------------------------------------------------------------------------------------- per-user budgets


async def test_rate_limit_is_one_budget_per_user_across_keys(make_user):
    settings = make_settings(rate_limit_read=6, redis_prefix=f"rl-{uuid.uuid4().hex[:6]}")
    async with AsyncTestClient(app=create_app(settings)) as c:
        admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
        resp = await c.post("/api/v1/users", json={"email": f"rl-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin)
        first = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        second_key = await c.post("/api/v1/auth/keys", json={"name": "second"}, headers=first)
        second = {"Authorization": f"Bearer {second_key.json()['api_key']}"}
        codes = []
        for i in range(10):
            r = await c.get("/api/v1/users/me", headers=first if i % 2 else second)
            codes.append(r.status_code)
        assert codes.count(200) == 6 and codes.count(429) == 4, codes
        # the headers count the user's budget, whichever key is used
        r = await c.get("/api/v1/users/me", headers=first)
        assert (
            r.status_code == 429
            and r.headers["ratelimit-limit"] == "6"
            and r.headers["ratelimit-remaining"] == "0"
        )
        # another user has a budget of their own
        resp = await c.post("/api/v1/users", json={"email": f"rl-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin)
        other = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        r = await c.get("/api/v1/users/me", headers=other)
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "5"


async def test_order_validation_counts_against_the_order_budget(make_user):
    settings = make_settings(rate_limit_orders=3, redis_prefix=f"rl-{uuid.uuid4().hex[:6]}")
    async with AsyncTestClient(app=create_app(settings)) as c:
        admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
        symbol = await make_market(c, admin, price="100")
        acct = await make_account(c, admin)
        body = {"symbol": symbol, "side": "buy", "type": "limit", "quantity": "1", "limit_price": "90"}
        codes = [
            (await c.post(f"/api/v1/accounts/{acct}/orders/validate", json=body, headers=admin)).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        placed = await c.post(f"/api/v1/accounts/{acct}/orders", json=body, headers=admin)
        assert placed.status_code == 429, placed.text
        assert placed.json()["detail"].endswith("'orders' requests")


async def test_active_keys_per_user_are_capped():
    settings = make_settings(api_keys_max_per_user=3)
    async with AsyncTestClient(app=create_app(settings)) as c:
        admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
        resp = await c.post(
            "/api/v1/users", json={"email": f"cap-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin
        )
        h = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        resps = await asyncio.gather(
            *(c.post("/api/v1/auth/keys", json={"name": f"k{i}"}, headers=h) for i in range(5))
        )
        codes = sorted(r.status_code for r in resps)
        assert codes == [201, 201, 409, 409, 409], [r.text for r in resps]
        refused = next(r for r in resps if r.status_code == 409).json()
        assert refused["type"].endswith("/too-many-api-keys") and refused["limit"] == 3
        # a revoked key frees its slot
        spare = next(r for r in resps if r.status_code == 201).json()
        assert (await c.delete(f"/api/v1/auth/keys/{spare['id']}", headers=h)).status_code == 204
        assert (await c.post("/api/v1/auth/keys", json={"name": "again"}, headers=h)).status_code == 201
        # rotation replaces a key, so it is allowed at the cap
        key_id = (await _keys(c, h))[0]["id"]
        assert (await c.post(f"/api/v1/auth/keys/{key_id}/rotate", headers=h)).status_code == 201


@pytest.fixture(scope="module")
def quota_settings():
    return make_settings(backtests_max_active_per_user=3, sweeps_max_active_per_user=1)


async def test_queued_backtests_per_user_are_capped_with_retry_after(quota_settings, db_engine):
    async with AsyncTestClient(app=create_app(quota_settings), timeout=30) as c:
        admin = {"Authorization": f"Bearer {quota_settings.admin_api_key}"}
        symbol = await make_daily_market(c, admin, bars=120, seed=5)
        resp = await c.post("/api/v1/users", json={"email": f"q-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin)
        h = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        body = {
            "strategy": "sma_cross",
            "params": {"fast": 5, "slow": 20},
            "symbol": symbol,
            "timeframe": "1d",
            "initial_cash": "10000",
            "commission": "0",
        }
        resps = await asyncio.gather(*(c.post("/api/v1/backtests", json=body, headers=h) for _ in range(8)))
        codes = sorted(r.status_code for r in resps)
        assert codes == [202, 202, 202, 429, 429, 429, 429, 429], [r.text for r in resps]
        limited = next(r for r in resps if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["type"].endswith("/quota-exceeded") and limited.json()["limit"] == 3
        listed = (await c.get("/api/v1/backtests", headers=h)).json()["items"]
        assert len(listed) == 3
        # a finished (here: canceled) backtest frees its slot
        assert (await c.delete(f"/api/v1/backtests/{listed[0]['id']}", headers=h)).status_code in (
            200,
            202,
            204,
        )
        assert (await c.post("/api/v1/backtests", json=body, headers=h)).status_code == 202
        # sweeps have their own quota
        sweep = {
            **{k: v for k, v in body.items() if k != "params"},
            "grid": {"fast": [3, 5], "slow": [20, 30]},
        }
        first = await c.post("/api/v1/backtests/sweeps", json=sweep, headers=h)
        assert first.status_code == 202, first.text
        second = await c.post("/api/v1/backtests/sweeps", json=sweep, headers=h)
        assert second.status_code == 429 and "retry-after" in second.headers, second.text
        # another user is not affected
        resp = await c.post("/api/v1/users", json={"email": f"q-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin)
        other = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        assert (await c.post("/api/v1/backtests", json=body, headers=other)).status_code == 202
