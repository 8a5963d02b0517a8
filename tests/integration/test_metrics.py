from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.lib.jobs import enqueue, make_queue
from app.lib.state import build_worker
from tests.conftest import make_settings
from tests.integration.helpers import make_account, make_market, place

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOMAIN = (
    "tradedesk_orders",
    "tradedesk_fills",
    "tradedesk_risk_rejections",
    "tradedesk_job_runs",
    "tradedesk_cache_events",
)


async def scrape(client) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(resp.text)
    }


def value(families, family: str, sample: str, **labels: str) -> float:
    return sum(
        v
        for name, lbls, v in families.get(family, [])
        if name == sample and all(lbls.get(k) == x for k, x in labels.items())
    )


async def test_http_metrics_are_labelled_by_route_template(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)).status_code == 200
    assert (await client.get("/api/v1/instruments/NOPE", headers=admin_headers)).status_code == 404
    after = await scrape(client)
    template = "/api/v1/instruments/{symbol}"
    family, sample = "tradedesk_http_requests", "tradedesk_http_requests_total"
    ok = dict(method="GET", path=template, status_code="200")
    assert value(after, family, sample, **ok) - value(before, family, sample, **ok) == 3
    missing = dict(method="GET", path=template, status_code="404")
    assert value(after, family, sample, **missing) - value(before, family, sample, **missing) == 1
    # one series per route, not per symbol
    assert not any(symbol in lbls.get("path", "") for _, lbls, _ in after[family])
    duration = "tradedesk_http_request_duration_seconds"
    assert value(after, duration, f"{duration}_count", path=template) >= 4


async def test_domain_counters_are_exported(client):
    families = await scrape(client)
    for name in DOMAIN:
        assert name in families, name
    assert "tradedesk_queue_depth" in families


async def test_orders_and_fills_counters_move_when_an_order_fills(client, admin_headers, make_user):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers, price="100")
    account = await make_account(client, trader["headers"])
    before = await scrape(client)
    order = await place(
        client, trader["headers"], account, symbol=symbol, side="buy", type="market", quantity=2
    )
    assert order["status"] == "filled"
    after = await scrape(client)
    filled = dict(type="market", status="filled")
    assert (
        value(after, "tradedesk_orders", "tradedesk_orders_total", **filled)
        == value(before, "tradedesk_orders", "tradedesk_orders_total", **filled) + 1
    )
    assert value(after, "tradedesk_fills", "tradedesk_fills_total") > value(
        before, "tradedesk_fills", "tradedesk_fills_total"
    )


async def test_cache_events_counter_moves_on_reads(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    before = await scrape(client)
    await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)
    await client.get(f"/api/v1/instruments/{symbol}", headers=admin_headers)
    after = await scrape(client)
    name, sample = "tradedesk_cache_events", "tradedesk_cache_events_total"
    assert value(after, name, sample, event="misses") >= value(before, name, sample, event="misses") + 1
    assert value(after, name, sample, event="hits") >= value(before, name, sample, event="hits") + 1


async def test_job_runs_counter_and_queue_depth_gauge(client, admin_headers, settings):
    before = await scrape(client)
    # An in-process worker shares this process's Prometheus registry with the app under test.
    s = make_settings(queue_name=f"{settings.queue_name}-metrics")
    queue = make_queue(s)
    await queue.connect()
    worker = build_worker(queue, s, concurrency=2)
    worker.SIGNALS = []
    worker._shutdown_grace_period_s = 1
    task = asyncio.create_task(worker.start())
    try:
        job = await enqueue(queue, "system.echo", {"message": "metrics"})
        await job.refresh(until_complete=10)
        assert job.status == "complete", job.error
    finally:
        await worker.stop()
        task.cancel()
        await queue.disconnect()
    after = await scrape(client)
    labels = dict(function="system.echo", status="complete")
    assert (
        value(after, "tradedesk_job_runs", "tradedesk_job_runs_total", **labels)
        == value(before, "tradedesk_job_runs", "tradedesk_job_runs_total", **labels) + 1
    )
    assert (
        value(
            after,
            "tradedesk_job_duration_seconds",
            "tradedesk_job_duration_seconds_count",
            function="system.echo",
        )
        >= 1
    )

    # GET /api/v1/jobs refreshes the queue-depth gauge from SAQ's count
    stats = (await client.get("/api/v1/jobs", headers=admin_headers)).json()
    gauge = value(await scrape(client), "tradedesk_queue_depth", "tradedesk_queue_depth")
    assert gauge == stats["queued"]


async def test_metrics_token_guards_the_scrape_when_set():
    """`METRICS_TOKEN` set: /metrics needs it as a bearer token; unset (the session client): open."""
    from litestar.testing import AsyncTestClient

    from app.server.app import create_app

    async with AsyncTestClient(app=create_app(make_settings(metrics_token="scrape-secret")), timeout=30) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-secret"}):
            resp = await c.get("/metrics", headers=headers)
            assert resp.status_code == 401, (headers, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert resp.headers["www-authenticate"] == "Bearer"
        resp = await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert resp.status_code == 200 and "tradedesk_http_requests_total" in resp.text


async def test_metrics_are_open_without_a_token(client):
    assert (await client.get("/metrics")).status_code == 200
