"""API-key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Written as ASGI middleware rather than Litestar's AbstractAuthenticationMiddleware because the anonymous
operational routes (/health, /ready, /metrics, /schema, /api/v1/health) pass through unauthenticated but
still need the rate limiter to see them; the stock class can only include or exclude a path wholesale.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from app.domain.audit.admin_requests import WRITE_METHODS, is_admin_only, run_audited
from app.domain.audit.services import bind_request
from app.domain.desk.sessions import authenticate_cookie, session_cookie
from app.domain.identity.bruteforce import BruteForcePolicy, reject_failed_authentication
from app.domain.identity.services import KEY_PREFIX, authenticate
from app.lib.errors import Unauthenticated
from app.lib.middleware import LeanMiddleware

ANONYMOUS_PREFIXES = ("/health", "/ready", "/metrics", "/schema", "/api/v1/health", "/static/", "/desk")
# Signing in to the desk presents the key in the body, not in a header (app/domain/desk/sessions.py).
DESK_SIGN_IN = "/api/v1/desk/session"


def credential(scope: Scope) -> str | None:
    """The API key a request or WebSocket upgrade presents in its headers (`Authorization: Bearer` wins
    over `X-API-Key`), or None. Shared by this middleware and the stream endpoint's header auth."""
    bearer = api_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            raw = value.decode("latin-1")
            scheme, _, token = raw.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


def is_anonymous_path(path: str) -> bool:
    return path.startswith(ANONYMOUS_PREFIXES)


class AuthMiddleware(LeanMiddleware):

    def __init__(self, brute_force: BruteForcePolicy | None = None) -> None:
        self.brute_force = brute_force or BruteForcePolicy()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        bind_request(scope)
        key = credential(scope)
        if is_anonymous_path(scope["path"]):
            scope["user"] = None
            await next_app(scope, receive, send)
            return
        if key is None:
            if scope["path"] == DESK_SIGN_IN and scope["method"] == "POST":
                # The desk's sign-in checks the key in its body itself (and counts failures the same way).
                scope["user"] = None
                scope["brute_force"] = self.brute_force
                await next_app(scope, receive, send)
                return
            session_id = session_cookie(scope)
            found = await authenticate_cookie(scope, session_id) if session_id is not None else None
            if found is None:
                raise Unauthenticated("Missing API key", headers={"WWW-Authenticate": "Bearer"})
            principal, session = found
            scope["desk_session"] = (session_id, session)
        else:
            principal = await authenticate(scope["app"].state.engine, key)
            if principal is None:
                shown = key[:10] if key.startswith(KEY_PREFIX) else None  # the public display prefix
                raise await reject_failed_authentication(scope, self.brute_force, shown)
        scope["user"] = principal
        scope["auth"] = principal.key_id
        if principal.role == "admin" and scope["method"] in WRITE_METHODS and is_admin_only(scope):
            await run_audited(scope, receive, send, next_app)
            return
        await next_app(scope, receive, send)
