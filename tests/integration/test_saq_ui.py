"""SAQ's web UI is mounted at /saq for admins only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_saq_ui_requires_admin(client, admin_headers, make_user):
    trader = await make_user("trader")
    assert (await client.get("/saq/")).status_code == 401
    assert (await client.get("/saq/", headers=trader["headers"])).status_code == 403
    page = await client.get("/saq/", headers=admin_headers)
    assert page.status_code == 200 and "<html" in page.text.lower()
    queues = await client.get("/saq/api/queues", headers=admin_headers)
    assert queues.status_code == 200
    assert any(q["name"] for q in queues.json()["queues"])
