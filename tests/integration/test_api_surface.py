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
