from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from app.lib.cache import Cache
from app.lib.kv import RedisKV, make_redis
from app.server.app import create_app
from tests.conftest import REDIS_URL, RUN_ID, make_settings
from tests.integration.helpers import make_market

pytestmark = pytest.mark.asyncio(loop_scope="session")


def fresh_cache(ttl: int = 30) -> Cache:
    """A cache in its own namespace, so counters start at zero whatever else the session did."""
    return Cache(RedisKV(make_redis(REDIS_URL), f"tdtest-{RUN_ID}-c{uuid.uuid4().hex[:6]}:app"), ttl)


async def test_stats_and_health_endpoints(client, admin_headers, make_user):
    trader = await make_user("trader")
    await client.get("/api/v1/exchanges", headers=trader["headers"])
    await client.get("/api/v1/exchanges", headers=trader["headers"])
    resp = await client.get("/api/v1/cache/stats", headers=trader["headers"])
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    assert stats["hits"] >= 1 and stats["misses"] >= 1 and stats["keys"] >= 1 and stats["memory_bytes"] > 0
    assert stats["hit_ratio"] == pytest.approx(stats["hits"] / (stats["hits"] + stats["misses"]))
    resp = await client.get("/api/v1/cache/health", headers=trader["headers"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["backend"] == "redis" and 0 <= body["latency_ms"] < 1000
    assert (await client.delete("/api/v1/cache", headers=trader["headers"])).status_code == 403
    assert (await client.get("/api/v1/cache/stats")).status_code == 401


async def test_clear_drops_only_this_apps_cache_entries(client, admin_headers, settings):
    symbol = await make_market(client, admin_headers)
    assert (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).status_code == 200
    r = aioredis.from_url(REDIS_URL)
    ns = f"{settings.redis_prefix}:app"
    foreign = f"foreign-tdtest-{RUN_ID}:app:c:instruments:0:one:{symbol}"
    idempotency_like = f"{ns}:idem:keep-{uuid.uuid4().hex[:6]}"
    try:
        await r.set(foreign, b"not ours")
        await r.set(idempotency_like, b"a stored response")
        assert [k async for k in r.scan_iter(match=f"{ns}:c:*")]
        resp = await client.delete("/api/v1/cache", headers=admin_headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["removed"] >= 1
        assert [k async for k in r.scan_iter(match=f"{ns}:c:*")] == []
        assert await r.get(foreign) == b"not ours"
        assert await r.get(idempotency_like) == b"a stored response"
        assert (await client.get("/api/v1/cache/stats", headers=admin_headers)).json()["keys"] == 0
        # and reads repopulate it
        assert (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).status_code == 200
    finally:
        await r.delete(foreign, idempotency_like)
        await r.aclose()


async def test_concurrent_misses_load_once_and_counters_are_exact():
    cache = fresh_cache()
    calls = 0

    async def loader() -> dict:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # slow enough that every request arrives while the load is in flight
        return {"value": 42}

    results = await asyncio.gather(*(cache.get_json("g", "k", loader) for _ in range(50)))
    assert calls == 1
    assert set(results) == {b'{"value":42}'}
    stats = await cache.stats()
    assert (stats["hits"], stats["misses"]) == (0, 50)

    await asyncio.gather(*(cache.get_json("g", "k", loader) for _ in range(150)))
    assert calls == 1
    stats = await cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (150, 50, 0)
    assert stats["hit_ratio"] == pytest.approx(0.75) and stats["keys"] == 1
    await cache.kv.close()


async def test_counters_are_exact_across_processes_sharing_the_namespace():
    # Two Cache objects on separate connections stand in for two API processes: the INCRs are atomic in
    # Redis, so the fleet-wide counters add up exactly.
    a = fresh_cache()
    b = Cache(RedisKV(make_redis(REDIS_URL), a.kv.namespace), 30)

    async def load() -> list[int]:
        return [1, 2, 3]

    # (at most 100 in flight per client: make_redis caps a process at 200 connections)
    await asyncio.gather(*(c.get_json("g", f"k{i}", load) for i in range(100) for c in (a, b)))
    for _ in range(3):
        await asyncio.gather(*(c.get_json("g", f"k{i}", load) for i in range(100) for c in (a, b)))
    stats = await a.stats()
    assert stats["hits"] + stats["misses"] == 800
    assert stats["misses"] >= 100 and stats["hits"] >= 600  # a key may miss once per process, never more
    assert stats["keys"] == 100
    await a.kv.close()
    await b.kv.close()


async def test_invalidate_makes_old_entries_unreachable():
    cache = fresh_cache()
    version = 1

    async def load() -> dict:
        return {"v": version}

    assert await cache.get_json("grp", "x", load) == b'{"v":1}'
    version = 2
    assert await cache.get_json("grp", "x", load) == b'{"v":1}'  # cached
    await cache.invalidate("grp")
    assert await cache.get_json("grp", "x", load) == b'{"v":2}'
    await cache.kv.close()


async def test_writes_invalidate_cached_reads(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    first = (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).json()
    again = (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).json()
    assert first == again and first["min_quantity"] == "1"
    resp = await client.patch(
        f"/api/v1/instruments/{symbol}", json={"min_quantity": "5"}, headers=admin_headers
    )
    assert resp.status_code == 200, resp.text
    after = (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).json()
    assert after["min_quantity"] == "5"
    listed = (await client.get("/api/v1/instruments", params={"limit": 500}, headers=admin_headers)).json()[
        "items"
    ]
    mine = [i for i in listed if i["symbol"] == symbol]
    assert not mine or mine[0]["min_quantity"] == "5"


async def test_reads_are_served_from_the_database_when_redis_is_down(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    headers = {"Authorization": f"Bearer {settings.admin_api_key}"}
    async with AsyncTestClient(app=create_app(settings), timeout=30) as c:
        for path in ("/api/v1/exchanges", "/api/v1/instruments", f"/api/v1/instruments/{symbol}"):
            resp = await c.get(path, headers=headers)
            assert resp.status_code == 200, (path, resp.text)
        assert (await c.get(f"/api/v1/instruments/{symbol}", headers=headers)).json()["symbol"] == symbol
        resp = await c.get("/api/v1/cache/health", headers=headers)
        assert resp.status_code == 503 and resp.json()["status"] == "down"
        resp = await c.get("/api/v1/cache/stats", headers=headers)
        assert resp.status_code == 503
