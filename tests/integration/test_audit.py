"""The security audit trail: one event per key, role, trading-state, admin and authentication event,
and GET /api/v1/audit (admin only, cursor-paginated, filterable)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.helpers import make_account

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def audit(client, admin_headers, **params) -> list[dict]:
    resp = await client.get("/api/v1/audit", params={"limit": 500, **params}, headers=admin_headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


async def test_key_created_rotated_revoked(client, admin_headers, make_user):
    user = await make_user("trader")
    rid = f"req-{uuid.uuid4().hex}"
    created = await client.post(
        "/api/v1/auth/keys", json={"name": "bot"}, headers={**user["headers"], "X-Request-ID": rid}
    )
    assert created.status_code == 201
    key_id = created.json()["id"]
    rotated = await client.post(
        f"/api/v1/auth/keys/{key_id}/rotate", json={"grace_seconds": 60}, headers=user["headers"]
    )
    assert rotated.status_code == 201
    assert (await client.delete(f"/api/v1/auth/keys/{key_id}", headers=user["headers"])).status_code == 204
    # A key of somebody else: 404 and nothing recorded.
    other = await make_user("trader")
    assert (await client.delete(f"/api/v1/auth/keys/{key_id}", headers=other["headers"])).status_code == 404

    events = await audit(client, admin_headers, user_id=user["id"])
    by_type = {e["type"]: e for e in events}
    assert [e["type"] for e in events] == ["key.revoked", "key.rotated", "key.created"]
    assert by_type["key.created"]["target"] == key_id and by_type["key.created"]["details"] == {"name": "bot"}
    assert by_type["key.created"]["request_id"] == rid
    assert by_type["key.rotated"]["target"] == key_id
    assert by_type["key.rotated"]["details"]["new_key_id"] == rotated.json()["id"]
    assert by_type["key.revoked"]["target"] == key_id
    for e in events:
        assert e["actor_id"] == e["subject_user_id"] == user["id"]
        assert e["client_ip"] == "testclient"  # the in-process test transport's peer
    assert await audit(client, admin_headers, user_id=other["id"]) == []


async def test_role_change_and_deactivation(client, admin_headers, make_user):
    user = await make_user("trader")
    admin_id = (await client.get("/api/v1/users/me", headers=admin_headers)).json()["id"]
    resp = await client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "risk_manager"}, headers=admin_headers
    )
    assert resp.status_code == 200 and resp.json()["role"] == "risk_manager"
    # The new role applies at once (cached principals are dropped).
    assert (await client.get("/api/v1/auth/whoami", headers=user["headers"])).json()["role"] == "risk_manager"
    resp = await client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["is_active"] is False
    assert (await client.get("/api/v1/users/me", headers=user["headers"])).status_code == 401

    events = await audit(client, admin_headers, user_id=user["id"], type="user.role_changed")
    assert len(events) == 1
    assert events[0]["details"] == {"from": "trader", "to": "risk_manager"}
    assert events[0]["actor_id"] == admin_id and events[0]["subject_user_id"] == user["id"]
    assert len(await audit(client, admin_headers, user_id=user["id"], type="user.deactivated")) == 1
    # Setting the same role again changes nothing and records no role change.
    await client.patch(f"/api/v1/users/{user['id']}", json={"role": "risk_manager"}, headers=admin_headers)
    assert len(await audit(client, admin_headers, user_id=user["id"], type="user.role_changed")) == 1


async def test_user_update_errors(client, admin_headers, make_user):
    user, trader = await make_user("trader"), await make_user("trader")
    admin_id = (await client.get("/api/v1/users/me", headers=admin_headers)).json()["id"]
    path = f"/api/v1/users/{user['id']}"
    assert (await client.patch(path, json={"role": "admin"}, headers=trader["headers"])).status_code == 403
    resp = await client.patch(path, json={}, headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "role"
    resp = await client.patch(path, json={"role": "superuser"}, headers=admin_headers)
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "role"
    assert (await client.patch(path, json={"rol": "admin"}, headers=admin_headers)).status_code == 400
    resp = await client.patch(f"/api/v1/users/{uuid.uuid4()}", json={"role": "admin"}, headers=admin_headers)
    assert resp.status_code == 404
    resp = await client.patch(f"/api/v1/users/{admin_id}", json={"role": "trader"}, headers=admin_headers)
    assert resp.status_code == 409
    assert await audit(client, admin_headers, user_id=user["id"], type="user.role_changed") == []


async def test_trading_state_change(client, admin_headers, make_user):
    trader, rm = await make_user("trader"), await make_user("risk_manager")
    acct = await make_account(client, trader["headers"])
    resp = await client.put(
        f"/api/v1/accounts/{acct}/trading-state",
        json={"state": "halted", "reason": "fat finger"},
        headers=rm["headers"],
    )
    assert resp.status_code == 200, resp.text
    events = await audit(client, admin_headers, user_id=rm["id"], type="account.trading_state_changed")
    assert len(events) == 1
    assert events[0]["account_id"] == acct
    assert events[0]["details"] == {"from": "active", "to": "halted", "reason": "fat finger"}


async def test_admin_actions(client, admin_headers):
    admin_id = (await client.get("/api/v1/users/me", headers=admin_headers)).json()["id"]
    since = datetime.now(UTC)  # the other tests' admin writes came before this
    code = f"A{uuid.uuid4().hex[:5].upper()}"
    resp = await client.post(
        "/api/v1/exchanges", json={"code": code, "name": "audited"}, headers=admin_headers
    )
    assert resp.status_code == 201, resp.text
    resp = await client.post("/api/v1/exchanges", json={"code": code, "name": "again"}, headers=admin_headers)
    assert resp.status_code == 409
    # An admin action is recorded once its response has gone out: wait for the second one's row.
    for _ in range(50):
        events = await audit(
            client, admin_headers, type="admin.action", user_id=admin_id, since=since.isoformat()
        )
        mine = [e for e in events if e["target"] == "POST /api/v1/exchanges"]
        if len(mine) >= 2:
            break
        await asyncio.sleep(0.1)
    assert [e["details"]["status"] for e in mine] == [409, 201]
    assert mine[0]["details"]["route"] == "/api/v1/exchanges"
    # Reads are not admin actions, nor are writes on routes other roles may use (an admin's own order).
    assert not [e for e in events if e["target"].startswith("GET ")]


async def test_authentication_failure(client, admin_headers):
    since = datetime.now(UTC) - timedelta(seconds=1)
    marker = f"td_{uuid.uuid4().hex[:7]}"
    resp = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {marker}-not-a-key"})
    assert resp.status_code == 401
    events = await audit(client, admin_headers, type="auth.failed", since=since.isoformat())
    mine = [e for e in events if e["details"]["key_prefix"] == marker[:10]]
    assert len(mine) == 1
    assert mine[0]["client_ip"] == "testclient" and mine[0]["target"] == "testclient"
    assert mine[0]["actor_id"] is None and mine[0]["request_id"]
    # A missing key guesses nothing: not an audit event.
    assert (await client.get("/api/v1/users/me")).status_code == 401
    assert len(await audit(client, admin_headers, type="auth.failed", since=since.isoformat())) == len(events)


async def test_audit_is_admin_only(client, make_user):
    for role in ("trader", "risk_manager", "market_data"):
        user = await make_user(role)
        resp = await client.get("/api/v1/audit", headers=user["headers"])
        assert resp.status_code == 403, role
        assert resp.json()["status"] == 403
        # Filtering by one's own id changes nothing (no per-user view of the trail).
        resp = await client.get("/api/v1/audit", params={"user_id": user["id"]}, headers=user["headers"])
        assert resp.status_code == 403
    assert (await client.get("/api/v1/audit")).status_code == 401


async def test_pagination_and_filters(client, admin_headers, make_user):
    user = await make_user("trader")
    before = datetime.now(UTC)
    ids = []
    for i in range(5):
        resp = await client.post("/api/v1/auth/keys", json={"name": f"k{i}"}, headers=user["headers"])
        ids.append(resp.json()["id"])
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, "user_id": user["id"], **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/api/v1/audit", params=params, headers=admin_headers)
        assert resp.status_code == 200
        body = resp.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [e["target"] for e in seen] == ids[::-1]  # newest first, each once
    assert len({e["id"] for e in seen}) == 5

    # Time range: [since, until)
    middle = seen[2]["occurred_at"]
    newer = await audit(client, admin_headers, user_id=user["id"], since=middle)
    older = await audit(client, admin_headers, user_id=user["id"], until=middle)
    assert len(newer) + len(older) == 5 and {e["id"] for e in newer}.isdisjoint(e["id"] for e in older)
    assert await audit(client, admin_headers, user_id=user["id"], until=before.isoformat()) == []
    assert await audit(client, admin_headers, user_id=user["id"], type="key.revoked") == []

    for params, field in (
        ({"type": "key.exploded"}, "type"),
        ({"cursor": "%%%"}, "cursor"),
        ({"since": "2026-12-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
        ({"since": "2026-12-01T00:00:00"}, "since"),
        ({"user_id": "nope"}, "user_id"),
        ({"limit": 0}, "limit"),
    ):
        resp = await client.get("/api/v1/audit", params=params, headers=admin_headers)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["errors"][0]["field"] == field, resp.json()


async def test_automatic_reduce_only_is_audited(client, admin_headers, make_user):
    from tests.integration.helpers import place, set_price
    from tests.integration.test_risk import add_limit, monitor, setup

    trader, symbol, acct = await setup(client, admin_headers, make_user)
    rm = await make_user("risk_manager")
    await add_limit(client, rm["headers"], acct, "max_daily_loss", 500)
    await place(client, trader["headers"], acct, symbol=symbol, side="buy", type="market", quantity=100)
    await set_price(client, admin_headers, symbol, "94")
    result = await monitor(client, trader["headers"], acct)
    assert result["trading_state"] == "reduce_only"
    events = await audit(client, admin_headers, user_id=trader["id"], type="account.trading_state_changed")
    assert len(events) == 1 and events[0]["account_id"] == acct
    assert events[0]["details"]["automatic"] is True
    assert events[0]["details"]["from"] == "active" and events[0]["details"]["to"] == "reduce_only"
