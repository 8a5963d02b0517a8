"""Operational gauges refreshed by the /metrics scrape: dependency health, pools, queue, trading states,
schedule lag; /metrics keeps answering (with *_up 0) when a dependency is down."""

from __future__ import annotations

import uuid

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from app.server.app import create_app
from tests.conftest import make_settings
from tests.integration.helpers import make_account

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def samples(client) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(resp.text)
        for s in f.samples
    }


async def test_gauges_follow_the_state(admin_headers, make_user):
    app = create_app(make_settings(metrics_refresh_seconds=0))
    async with AsyncTestClient(app=app, timeout=30) as c:
        before = await samples(c)
        assert before[("tradedesk_db_up", ())] == 1 and before[("tradedesk_redis_up", ())] == 1
        assert 0 < before[("tradedesk_db_ping_seconds", ())] < 2
        assert before[("tradedesk_db_pool_max_connections", (("pool", "sqlalchemy"),))] == 8 + 8
        assert ("tradedesk_db_pool_connections", (("pool", "sqlalchemy"), ("state", "idle"))) in before
        assert ("tradedesk_workers_alive", ()) in before
        assert ("tradedesk_queue_oldest_job_age_seconds", ()) in before
        # The built-in schedules (migration 0002) are watched.
        assert ("tradedesk_schedule_overdue_seconds", (("schedule", "risk-monitor"),)) in before

        user = await make_user("trader")
        acct = await make_account(c, user["headers"])
        resp = await c.put(
            f"/api/v1/accounts/{acct}/trading-state",
            json={"state": "halted", "reason": "t"},
            headers=admin_headers,
        )
        assert resp.status_code == 200
        after = await samples(c)
        halted = ("tradedesk_accounts", (("trading_state", "halted"),))
        assert after[halted] == before[halted] + 1


async def test_metrics_answer_with_the_database_down():
    # A database nobody listens on: the scrape still answers, saying so.
    app = create_app(
        make_settings(
            database_url="postgresql+asyncpg://postgres@127.0.0.1:9/nowhere",
            redis_prefix=f"tdtest-down-{uuid.uuid4().hex[:6]}",
            metrics_refresh_seconds=0,
        )
    )
    async with AsyncTestClient(app=app, timeout=30) as c:
        got = await samples(c)
    assert got[("tradedesk_db_up", ())] == 0
    assert got[("tradedesk_redis_up", ())] == 1
