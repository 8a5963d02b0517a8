"""The API surface and its documentation (issue 21, "API surface and documentation"): the docs page works
offline and can authorise, the schema carries no invented examples and lists what the server enforces,
and every response says `nosniff`."""

from __future__ import annotations

import pytest

from app.domain.risk.checks import LIMIT_TYPES

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_docs_page_loads_swagger_ui_from_the_app_itself(client):
    page = await client.get("/schema/swagger")
    assert page.status_code == 200, page.text
    assert "https://" not in page.text and "//cdn" not in page.text, page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        url = f"/static/swagger-ui/{asset}"
        assert url in page.text
        resp = await client.get(url)  # anonymous, like the page
        assert resp.status_code == 200 and len(resp.content) > 10_000, (url, resp.status_code)
    bundle = (await client.get("/static/swagger-ui/swagger-ui-bundle.js")).text
    assert 'version:"5.' in bundle or '"5.' in bundle  # Swagger UI 5 renders OpenAPI 3.1 documents


async def test_schema_declares_both_key_schemes_and_anonymous_operations(client):
    doc = (await client.get("/schema/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <api-key>`",
    }
    assert schemes["ApiKeyAuth"]["in"] == "header" and schemes["ApiKeyAuth"]["name"] == "X-API-Key"
    assert doc["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}]
    for path in ("/health", "/ready", "/api/v1/health"):
        assert doc["paths"][path]["get"]["security"] == [], path
    assert "security" not in doc["paths"]["/api/v1/accounts"]["get"]  # the document-wide requirement


def _keys(value, key: str):
    if isinstance(value, dict):
        for k, item in value.items():
            if k == key:
                yield item
            yield from _keys(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item, key)


async def test_schema_has_no_generated_examples_and_lists_limit_types(client):
    doc = (await client.get("/schema/openapi.json")).json()
    assert list(_keys(doc, "examples")) == [] and list(_keys(doc, "example")) == []
    schemas = doc["components"]["schemas"]
    for name in ("LimitCreate", "LimitOut", "ViolationOut", "AlertOut"):
        assert schemas[name]["properties"]["limit_type"]["enum"] == list(LIMIT_TYPES), name


async def test_every_response_says_nosniff(client, admin_headers):
    for path, headers in (
        ("/health", {}),
        ("/api/v1/instruments", admin_headers),
        ("/api/v1/nope", admin_headers),
        ("/api/v1/accounts", {}),
        ("/schema/openapi.json", {}),
    ):
        resp = await client.get(path, headers=headers)
        assert resp.headers.get("x-content-type-options") == "nosniff", (path, resp.status_code, resp.headers)


async def test_candle_upload_documents_both_body_forms(client):
    doc = (await client.get("/schema/openapi.json")).json()
    body = doc["paths"]["/api/v1/instruments/{symbol}/candles"]["post"]["requestBody"]
    assert body["required"] is True
    upload = body["content"]["application/json"]["schema"]
    assert (
        upload["required"] == ["timeframe", "candles"] and "1d" in upload["properties"]["timeframe"]["enum"]
    )
    ts = upload["properties"]["candles"]["items"]["properties"]["ts"]["oneOf"]
    assert {"type": "string", "format": "date"} in ts
    assert "ts,open,high,low,close,volume" in body["content"]["text/csv"]["schema"]["description"]


async def test_daily_candles_accept_a_date_only_ts(client, admin_headers):
    from tests.integration.helpers import make_market

    symbol = await make_market(client, admin_headers)
    url = f"/api/v1/instruments/{symbol}/candles"
    candle = {"ts": "2026-01-01", "open": "10", "high": "11", "low": "9", "close": "10.5", "volume": "3"}
    resp = await client.post(url, json={"timeframe": "1d", "candles": [candle]}, headers=admin_headers)
    assert resp.status_code == 201, resp.text
    csv = "ts,open,high,low,close,volume\n2026-01-02,10,11,9,10.5,3\n2026-01-03,10.5,12,10,11,4\n"
    resp = await client.post(
        f"{url}?timeframe=1d", content=csv.encode(), headers={**admin_headers, "Content-Type": "text/csv"}
    )
    assert resp.status_code == 201, resp.text
    items = (await client.get(f"{url}?timeframe=1d", headers=admin_headers)).json()["items"]
    assert [c["ts"] for c in items] == [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
    ]
    # an impossible date is still a 422 naming the field
    bad = {**candle, "ts": "2026-02-30"}
    resp = await client.post(url, json={"timeframe": "1d", "candles": [bad]}, headers=admin_headers)
    assert resp.status_code == 422 and "ts" in resp.text, resp.text


async def test_schema_states_the_bounds_the_server_enforces(client):
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert schemas["PerformanceIn"]["oneOf"] == [{"required": ["equity"]}, {"required": ["returns"]}]
    assert schemas["SweepCreate"]["properties"]["grid"]["minProperties"] == 1
    number = schemas["AccountCreate"]["properties"]["initial_cash"]["oneOf"][1]
    assert number["minimum"] == 0 and number["exclusiveMaximum"] == 1e20
    doc = (await client.get("/schema/openapi.json")).json()
    params = doc["paths"]["/api/v1/backtests/sweeps/{sweep_id}"]["get"]["parameters"]
    rank_by = next(p for p in params if p["name"] == "rank_by")
    assert "sharpe" in rank_by["schema"]["enum"] and "heartbeat" not in rank_by["schema"]["enum"]
    cursor = next(
        p
        for p in doc["paths"]["/api/v1/accounts/{account_id}/orders"]["get"]["parameters"]
        if p["name"] == "cursor"
    )
    assert "^[A-Za-z0-9_-]{1,200}$" in str(cursor["schema"])


async def test_async_csv_upload_refuses_a_body_without_the_header_at_once(client, admin_headers):
    from tests.integration.helpers import make_market

    symbol = await make_market(client, admin_headers)
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles?async=true&timeframe=1h",
        content=b"2.225073858507e-311",
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 422 and "header" in resp.text, resp.text


async def test_a_number_is_not_a_date_and_options_and_405_say_allow(client, admin_headers):
    from tests.integration.helpers import make_market

    symbol = await make_market(client, admin_headers)
    for value in ("0.5", "1", "1e3"):
        resp = await client.get(f"/api/v1/instruments/{symbol}/candles?start={value}", headers=admin_headers)
        assert resp.status_code == 400 and "start" in resp.text, (value, resp.status_code, resp.text)
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?start=2026-01-01", headers=admin_headers)
    assert resp.status_code == 200, resp.text
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?end=2026-02-30", headers=admin_headers)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "end", resp.text
    resp = await client.request("DELETE", "/api/v1/exchanges", headers=admin_headers)
    allowed = set(resp.headers["allow"].replace(" ", "").split(","))
    assert resp.status_code == 405 and allowed >= {"GET", "POST"}, resp.headers
    resp = await client.request("OPTIONS", f"/api/v1/instruments/{symbol}/candles", headers=admin_headers)
    assert resp.status_code == 204 and "OPTIONS" in resp.headers["allow"], (resp.status_code, resp.headers)
