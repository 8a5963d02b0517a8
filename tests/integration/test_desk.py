"""The desk's sign-in: an API key exchanged for an HttpOnly cookie session, CSRF on cookie writes, the
same authorisation as the key, sign-out and key revocation ending the session, and the page itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from tests.integration.helpers import make_account

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def desk_app(settings) -> AsyncIterator[AsyncTestClient]:
    """An app of its own with its own cookie jar, like a browser that never sends the API key header (the
    shared `client` must not carry a desk cookie into other tests)."""
    from app.server.app import create_app

    async with AsyncTestClient(app=create_app(settings), timeout=30) as c:
        yield c


@pytest.fixture
def browser(desk_app) -> AsyncTestClient:
    desk_app.cookies.clear()
    return desk_app


async def _sign_in(browser: AsyncTestClient, api_key: str) -> dict:
    resp = await browser.post("/api/v1/desk/session", json={"api_key": api_key})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_sign_in_sets_a_strict_httponly_cookie_and_no_key_comes_back(client, browser, make_user):
    trader = await make_user("trader")
    resp = await browser.post("/api/v1/desk/session", json={"api_key": trader["api_key"]})
    assert resp.status_code == 201, resp.text
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("td_desk=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags  # plain HTTP here
    body = resp.json()
    assert body["user"]["email"] == trader["email"] and body["csrf_token"]
    assert trader["api_key"] not in resp.text and trader["api_key"] not in cookie
    me = await browser.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["id"] == trader["id"]
    again = await browser.get("/api/v1/desk/session")
    assert again.status_code == 200 and again.json()["csrf_token"] == body["csrf_token"]


async def test_cookie_is_secure_when_configured_behind_tls(browser, make_user):
    from dataclasses import replace

    trader = await make_user("trader")
    app_state = browser.app.state
    original = app_state.settings
    app_state.settings = replace(original, desk_cookie_secure=True)
    try:
        resp = await browser.post("/api/v1/desk/session", json={"api_key": trader["api_key"]})
        assert "secure" in {p.strip().lower() for p in resp.headers["set-cookie"].split(";")}
    finally:
        app_state.settings = original


async def test_bad_keys_and_bodies_are_refused(browser):
    bad = await browser.post("/api/v1/desk/session", json={"api_key": "td_not_a_real_key"})
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem+json")
    assert "set-cookie" not in bad.headers
    empty = await browser.post("/api/v1/desk/session", json={})
    assert empty.status_code == 400
    assert (await browser.get("/api/v1/desk/session")).status_code == 401
    assert (await browser.get("/api/v1/accounts")).status_code == 401


async def test_cookie_writes_need_the_csrf_token(client, browser, make_user):
    trader = await make_user("trader")
    session = await _sign_in(browser, trader["api_key"])
    body = {"name": "desk", "initial_cash": "1000"}
    missing = await browser.post("/api/v1/accounts", json=body)
    assert missing.status_code == 403 and missing.json()["type"].endswith("/csrf-token-required")
    wrong = await browser.post("/api/v1/accounts", json=body, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    listed = (await browser.get("/api/v1/accounts")).json()["items"]
    assert listed == []  # nothing was written by the refused requests
    ok = await browser.post("/api/v1/accounts", json=body, headers={"X-CSRF-Token": session["csrf_token"]})
    assert ok.status_code == 201, ok.text


async def test_the_session_has_exactly_the_keys_permissions(client, browser, make_user):
    owner = await make_user("trader")
    other = await make_user("trader")
    account = await make_account(client, owner["headers"])
    await _sign_in(browser, other["api_key"])
    assert (await browser.get(f"/api/v1/accounts/{account}")).status_code == 404
    assert (await browser.get(f"/api/v1/accounts/{uuid.uuid4()}")).status_code == 404
    assert (await browser.get("/api/v1/users")).status_code == 403  # admin only


async def test_sign_out_and_key_revocation_end_the_session(client, browser, make_user):
    trader = await make_user("trader")
    session = await _sign_in(browser, trader["api_key"])
    cookie = browser.cookies.get("td_desk")
    out = await browser.delete("/api/v1/desk/session", headers={"X-CSRF-Token": session["csrf_token"]})
    assert out.status_code == 204
    assert (await browser.get("/api/v1/users/me")).status_code == 401
    # The old cookie value replayed by hand is dead too: the server ended the session, not just the jar.
    browser.cookies.set("td_desk", cookie)
    replay = await browser.get("/api/v1/users/me")
    assert replay.status_code == 401

    key = (await client.post("/api/v1/auth/keys", json={"name": "desk"}, headers=trader["headers"])).json()
    await _sign_in(browser, key["api_key"])
    assert (await browser.get("/api/v1/users/me")).status_code == 200
    revoked = await client.delete(f"/api/v1/auth/keys/{key['id']}", headers=trader["headers"])
    assert revoked.status_code == 204
    await asyncio.sleep(1.1)  # API_KEY_CACHE_SECONDS: the bound on revocation delay for every key
    assert (await browser.get("/api/v1/users/me")).status_code == 401


async def test_the_page_and_its_assets_are_served_without_any_cdn(client):
    from app.domain.desk.controllers import DESK_DIR

    if not (DESK_DIR / "index.html").is_file():
        import shutil

        if shutil.which("npm"):
            pytest.fail("the desk is not built although npm is here: `make desk` failed")
        pytest.skip("the desk is not built (no npm on this machine): run `make desk`")
    page = await client.get("/desk")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    html = page.text
    assert "http://" not in html and "https://" not in html
    assets = [a for a in html.split('"') if a.startswith("/desk/assets/")]
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        resp = await client.get(asset)
        assert resp.status_code == 200, asset
        assert "immutable" in resp.headers["cache-control"]
        if asset.endswith(".css"):
            assert "url(http" not in resp.text and "@import" not in resp.text  # no font or sheet elsewhere
