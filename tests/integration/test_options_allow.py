"""`OPTIONS` on every path answers 204 with an `Allow` header that lists every method the path serves.

Litestar 2 built a path's OPTIONS answer from the first handler registered for it, so a path served by a
GET and a POST answered `Allow: OPTIONS, POST` (app.lib.litestar_private.complete_options_allow). The OpenAPI
document is the contract: each of its paths must allow exactly its documented methods (HEAD besides GET
is HTTP's own), and every other route the app serves (desk, schema UI, metrics) exactly its handlers'.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SAMPLE_ID = "00000000-0000-0000-0000-000000000001"


def allowed(resp) -> set[str]:
    return {m.strip() for m in resp.headers.get("allow", "").split(",") if m.strip()}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", SAMPLE_ID, path)


async def test_every_documented_path_allows_exactly_its_documented_methods(client, admin_headers):
    schema = (await client.get("/schema/openapi.json")).json()
    wrong = []
    for path, item in schema["paths"].items():
        documented = {m.upper() for m in item if m in METHODS}
        resp = await client.options(concrete(path), headers=admin_headers)
        allow = allowed(resp)
        expected = documented | {"OPTIONS"} | ({"HEAD"} if "GET" in documented and "HEAD" in allow else set())
        if resp.status_code != 204 or allow != expected:
            wrong.append(f"{path}: {resp.status_code} Allow {sorted(allow)}, documented {sorted(documented)}")
    assert len(schema["paths"]) > 50
    assert not wrong, "\n".join(wrong)


async def test_paths_with_several_handlers_list_them_all(client, admin_headers):
    """The shape that was broken: one path, handlers for several methods (list + create, read + update)."""
    for path, methods in {
        "/api/v1/accounts": {"GET", "POST", "OPTIONS"},
        f"/api/v1/accounts/{SAMPLE_ID}/orders": {"GET", "POST", "DELETE", "OPTIONS"},
        f"/api/v1/accounts/{SAMPLE_ID}/orders/{SAMPLE_ID}": {"GET", "PATCH", "DELETE", "OPTIONS"},
        f"/api/v1/accounts/{SAMPLE_ID}/risk/limits/{SAMPLE_ID}": {"GET", "PATCH", "DELETE", "OPTIONS"},
        "/api/v1/desk/session": {"GET", "POST", "DELETE", "OPTIONS"},
        "/health": {"GET", "HEAD", "OPTIONS"},
    }.items():
        resp = await client.options(path, headers=admin_headers)
        assert (resp.status_code, allowed(resp)) == (204, methods), path


async def test_every_http_route_allows_its_handlers_methods(client, admin_headers):
    """Routes outside the OpenAPI document too (the desk, the schema UI, /metrics)."""
    from litestar.routes import HTTPRoute

    wrong, checked = [], 0
    for route in client.app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.methods:
            continue
        path = re.sub(r"\{[^}]+\}", lambda m: "x.js" if ":path" in m.group(0) else SAMPLE_ID, route.path)
        resp = await client.options(path, headers=admin_headers)
        checked += resp.status_code == 204
        if resp.status_code == 204 and allowed(resp) != set(route.methods):
            wrong.append(f"{route.path}: Allow {sorted(allowed(resp))}, serves {sorted(route.methods)}")
    assert checked > 60
    assert not wrong, "\n".join(wrong)
