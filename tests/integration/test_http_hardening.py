"""Hostile request bodies and the status that logs and metrics record (issue 21: server errors and wrong
status reporting)."""

from __future__ import annotations

import uuid

import pytest
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from app.server.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROBLEM = "application/problem+json"
DEEP_JSON = b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}"
NOT_UTF8 = (b'{"name": "\xff\xfe", "initial_cash": "5"}', b'{"name": "a\xc3", "initial_cash": "5"}')


def _routes_with_a_body(app) -> list[tuple[str, str]]:
    """(method, path) of every operation that reads a JSON body, with made-up path parameters."""
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = route.path
        for name, param in route.path_parameters.items():
            value = str(uuid.uuid4()) if param.type is uuid.UUID else "X"
            path = path.replace("{" + name + ":" + param.type.__name__.lower() + "}", value)
            path = path.replace("{" + name + "}", value)
        for handler in route.route_handlers:
            if handler.parsed_data_field is None and not handler.handler_name == "load_candles":
                continue
            for method in handler.http_methods & {"POST", "PUT", "PATCH"}:
                out.append((method, path))
    return out


async def test_deep_or_non_utf8_json_is_a_400_on_every_route_with_a_body(client, admin_headers):
    routes = _routes_with_a_body(client.app)
    assert len(routes) >= 20, routes
    headers = {**admin_headers, "Content-Type": "application/json"}
    for method, path in routes:
        for body in (DEEP_JSON, *NOT_UTF8):
            resp = await client.request(method, path, content=body, headers=headers)
            # 404/403 before decoding (an unknown resource id, a guard) are fine, and so is a 422 from a
            # typed decoder that stops at the first level where the shape is wrong; a 500 never is.
            assert resp.status_code in (400, 403, 404, 422), (
                method,
                path,
                body[:20],
                resp.status_code,
                resp.text,
            )
            assert resp.headers["content-type"].startswith(PROBLEM), (method, path, resp.text)
            if resp.status_code == 400:
                problem = resp.json()
                assert problem["status"] == 400 and problem["errors"][0]["field"] == "body", problem
                assert "nested" in problem["detail"] or "UTF-8" in problem["detail"], problem


async def test_candle_upload_with_non_utf8_text_is_a_400(client, admin_headers):
    """The JSON candle upload decodes its body itself (typed, in one pass), not through the request."""
    headers = {**admin_headers, "Content-Type": "application/json"}
    resp = await client.post(
        "/api/v1/instruments/X/candles", content=b'{"timeframe": "1d\xff"}', headers=headers
    )
    assert resp.status_code == 400, resp.text
    assert "UTF-8" in resp.json()["detail"], resp.text


async def test_malformed_or_missing_json_body_names_the_body(client, admin_headers):
    headers = {**admin_headers, "Content-Type": "application/json"}
    resp = await client.post("/api/v1/exchanges", content=b'{"code": ', headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errors"][0]["field"] == "body", resp.text
    resp = await client.post("/api/v1/exchanges", content=b"", headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errors"] == [{"field": "body", "message": "A request body is required"}], resp.text


def _requests_seen(path: str, status: int) -> float:
    labels = {"method": "GET", "path": path, "status_code": str(status)}
    return REGISTRY.get_sample_value("tradedesk_http_requests_total", labels) or 0.0


class _RecordingLog:
    def __init__(self) -> None:
        self.lines: list[dict] = []

    def info(self, event: str, **fields) -> None:
        self.lines.append({"event": event, **fields})


async def test_metrics_and_access_log_record_the_503_the_client_saw(monkeypatch):
    """PostgreSQL down: authentication's key lookup fails outside the route's own exception handler, and
    the status recorded must be the 503 that the outer handler sends, not a guessed 500."""
    import app.lib.middleware as middleware

    recorder = _RecordingLog()
    monkeypatch.setattr(middleware, "access_log", recorder)
    settings = make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none", access_log=True)
    path = "/api/v1/accounts"
    before_503, before_500 = _requests_seen(path, 503), _requests_seen(path, 500)
    async with AsyncTestClient(app=create_app(settings), timeout=30) as c:
        resp = await c.get(path, headers={"Authorization": f"Bearer td_{uuid.uuid4().hex}"})
    assert resp.status_code == 503, resp.text
    assert _requests_seen(path, 503) - before_503 == 1
    assert _requests_seen(path, 500) == before_500
    assert [line["status"] for line in recorder.lines if line["path"] == path] == [503]
