"""Query parameters as the OpenAPI document states them.

Integer bounds are ones a client can check exactly: a JSON number is a float to most validators, and near
2**62 one past the bound rounds down onto it (schema-valid for the client, a 400 from the server);
`after_seq` is bounded at 2**52, where every integer around the bound is exact. A query parameter naming
a resource documents the 404 it can answer."""

from __future__ import annotations

import pytest

from tests.integration.helpers import make_account

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_after_seq_bound_is_exact_as_a_float_and_enforced(client, make_user):
    schema = (await client.get("/schema/openapi.json")).json()
    params = schema["paths"]["/api/v1/accounts/{account_id}/activities"]["get"]["parameters"]
    bound = next(p for p in params if p["name"] == "after_seq")["schema"]["maximum"]
    assert bound == 2**52 and float(bound + 1) != float(bound)

    trader = await make_user("trader")
    account = await make_account(client, trader["headers"])
    path = f"/api/v1/accounts/{account}/activities"
    at_bound = await client.get(path, params={"after_seq": 2**52}, headers=trader["headers"])
    assert at_bound.status_code == 200, at_bound.text
    assert at_bound.json()["items"] == []
    past = await client.get(path, params={"after_seq": 2**52 + 1}, headers=trader["headers"])
    assert past.status_code == 400, past.text


async def test_var_of_an_unknown_group_is_a_documented_404(client, admin_headers):
    schema = (await client.get("/schema/openapi.json")).json()
    assert "404" in schema["paths"]["/api/v1/risk/var"]["get"]["responses"]
    resp = await client.get(
        "/api/v1/risk/var", params={"group_id": "3060b587-a8d5-1467-b884-244c932141b0"}, headers=admin_headers
    )
    assert resp.status_code == 404, resp.text
