"""HTTP side of the desk: sign-in/out for the cookie session, and the built front-end at /desk."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.params import JSONBody
from litestar.static_files import create_static_files_router

from app.domain.desk import sessions
from app.domain.identity.bruteforce import BruteForcePolicy, reject_failed_authentication
from app.domain.identity.services import KEY_PREFIX, authenticate
from app.lib.errors import NotSignedIn, Unavailable

DESK_DIR = Path(__file__).resolve().parents[2] / "static" / "desk"

# The page loads nothing from elsewhere: scripts, styles, fonts and API calls are all same-origin.
DESK_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class DeskUser(msgspec.Struct):
    id: uuid.UUID
    email: str
    role: str


class DeskSessionOut(msgspec.Struct):
    user: DeskUser
    csrf_token: str
    expires_at: datetime


def _out(request: Request, session: sessions.DeskSession) -> DeskSessionOut:
    principal = request.user
    return DeskSessionOut(
        user=DeskUser(id=principal.user_id, email=principal.email, role=principal.role),
        csrf_token=session.csrf_token,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
    )


def _cookie(request: Request, value: str, max_age: int) -> Cookie:
    settings = request.app.state.settings
    return Cookie(
        key=sessions.COOKIE,
        value=value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or settings.desk_cookie_secure,
    )


class DeskSessionController(Controller):
    path = "/api/v1/desk/session"
    tags = ["desk"]

    @post("/", status_code=201, summary="Sign in to the desk: exchange an API key for a session cookie")
    async def sign_in(self, request: Request, data: JSONBody[SignIn]) -> Response[DeskSessionOut]:
        principal = await authenticate(request.app.state.engine, data.api_key)
        if principal is None:
            shown = data.api_key[:10] if data.api_key.startswith(KEY_PREFIX) else None
            policy = request.scope.get("brute_force") or BruteForcePolicy.from_settings(request.app.state.settings)
            raise await reject_failed_authentication(request.scope, policy, shown)
        ttl = request.app.state.settings.desk_session_seconds
        session_id, session = await sessions.create(request.app.state.kv, principal, data.api_key, ttl)
        request.scope["user"] = principal
        return Response(_out(request, session), status_code=201, cookies=[_cookie(request, session_id, ttl)],
                        headers={"Cache-Control": "no-store"})

    @get("/", summary="The signed-in desk session (user and CSRF token)")
    async def current(self, request: Request) -> Response[DeskSessionOut]:
        found = request.scope.get("desk_session")
        if found is None:
            raise NotSignedIn("Not signed in to the desk (no session cookie)")
        return Response(_out(request, found[1]), headers={"Cache-Control": "no-store"})

    @delete("/", status_code=204, summary="Sign out: the session ends at once")
    async def sign_out(self, request: Request) -> Response[None]:
        found = request.scope.get("desk_session")
        if found is None:
            raise NotSignedIn("Not signed in to the desk (no session cookie)")
        await sessions.end(request.app.state.kv, found[0])
        return Response(None, status_code=204, cookies=[_cookie(request, "", 0)])


@get(["/desk", "/desk/"], include_in_schema=False, media_type="text/html")
async def desk_page() -> Response[bytes]:
    index = DESK_DIR / "index.html"
    if not index.is_file():
        raise Unavailable("The desk front-end is not built: run `make desk` (needs Node.js and npm)",
                       slug="desk-not-built")
    return Response(index.read_bytes(), media_type="text/html", headers=DESK_HEADERS)


desk_assets = create_static_files_router(
    path="/desk/assets",
    directories=[DESK_DIR / "assets"],
    include_in_schema=False,
    name="desk-assets",
    # Built file names carry a content hash, so they can be cached for good.
    cache_control=CacheControlHeader(public=True, max_age=31_536_000, immutable=True),
)
