from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar.testing import AsyncTestClient

from app.server.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_health_is_ok_without_auth(client):
    resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert resp.headers["x-request-id"]


async def test_health_answers_only_get_and_head_and_is_documented(client):
    head = await client.head("/health", headers={"X-Request-ID": "probe-1"})
    assert head.status_code == 200 and head.content == b"" and head.headers["x-request-id"] == "probe-1"
    assert head.headers["cache-control"] == "no-store"
    post = await client.post("/health")
    assert post.status_code == 405, post.text
    assert post.headers["content-type"].startswith("application/problem+json") and "GET" in post.headers["allow"]
    schema = (await client.get("/schema/openapi.json")).json()
    live = schema["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert live["required"] == ["status"]
    assert (await client.get("/health")).status_code == 200  # (counted below, whichever tests ran before)
    metrics = (await client.get("/metrics")).text
    assert 'tradedesk_http_requests_total{method="GET",path="/health",status_code="200"}' in metrics


async def test_request_id_is_echoed_even_on_404(client):
    resp = await client.get("/no/such/route", headers={"X-Request-ID": "abc-123"})
    assert resp.status_code == 404
    assert resp.headers["x-request-id"] == "abc-123"
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found") and body["title"]


async def test_ready_when_everything_is_up(client):
    resp = await client.get("/ready")
    assert resp.status_code == 200, resp.text
    checks = resp.json()["checks"]
    assert checks["database"]["ok"] and checks["cache"]["ok"] and checks["queue"]["ok"]


async def test_api_health_report(client):
    resp = await client.get("/api/v1/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["version"]
    assert set(body["components"]) >= {"database", "cache", "queue", "workers"}
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["database"]["latency_ms"] >= 0


async def test_ready_is_503_when_redis_unreachable():
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(settings)) as c:
        resp = await c.get("/ready")
        assert resp.status_code == 503
        assert "cache" in resp.json()["failing"]
        assert (await c.get("/health")).status_code == 200


async def test_ready_is_503_when_database_not_migrated():
    import asyncpg

    from tests.conftest import _admin_exec, _db_url

    name = f"td_empty_{uuid.uuid4().hex[:8]}"
    await _admin_exec(f'CREATE DATABASE "{name}"')
    try:
        settings = make_settings(database_url=_db_url(name))
        async with AsyncTestClient(app=create_app(settings)) as c:
            resp = await c.get("/ready")
            assert resp.status_code == 503
            assert resp.json()["failing"] == ["database"]
    finally:
        await _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert asyncpg  # imported for the admin helper's driver


async def test_malformed_json_is_problem_details_400(client, admin_headers):
    resp = await client.post(
        "/api/v1/users", content=b'{"email": "x@y.z", ', headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == 400 and body["title"] and body["type"] and body["detail"]


async def test_wrong_type_lists_the_bad_field(client, admin_headers):
    resp = await client.post("/api/v1/users", json={"email": 42, "role": "trader"}, headers=admin_headers)
    assert resp.status_code == 400
    body = resp.json()
    assert body["errors"] and any("email" in e["field"] for e in body["errors"])


async def test_unknown_enum_value_is_4xx(client, admin_headers):
    resp = await client.post("/api/v1/users", json={"email": "a@b.cd", "role": "god"}, headers=admin_headers)
    assert 400 <= resp.status_code < 500
    assert any("role" in e["field"] for e in resp.json()["errors"])


async def test_openapi_schema_served(client):
    resp = await client.get("/schema/openapi.json")
    assert resp.status_code == 200
    assert "/api/v1/users" in resp.json()["paths"]
    # Placement answers 201 for a new order and 200 for an idempotent replay: both are documented.
    placed = resp.json()["paths"]["/api/v1/accounts/{account_id}/orders"]["post"]["responses"]
    for status in ("200", "201"):
        assert placed[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderOut"}


async def test_job_runs_on_a_real_worker(settings, database_url):
    from app.lib.jobs import enqueue, make_queue
    from app.lib.state import build_worker

    s = make_settings(queue_name=f"{settings.queue_name}-w1")
    queue = make_queue(s)
    await queue.connect()
    worker = build_worker(queue, s, concurrency=2)
    worker.SIGNALS = []
    task = asyncio.create_task(worker.start())
    try:
        job = await enqueue(queue, "system.echo", {"message": "hello"})
        await job.refresh(until_complete=10)
        assert job.status == "complete", job.error
        assert job.result == {"message": "hello", "db": 1}
    finally:
        await worker.stop()
        task.cancel()
        await queue.disconnect()
