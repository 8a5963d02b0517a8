"""Desk sessions: an API key exchanged for an HttpOnly cookie, with a CSRF token for writes.

The browser never keeps the key: sign-in sends it once, the server checks it and stores only its digest
(the same digest the database keeps) under a random session id, in the shared KV (Redis, or memory in the
embedded default) with a TTL. Each request with the cookie resolves the digest through the same path as
a presented key, so revoking the key ends its sessions at once. The session id is stored hashed, so a
copy of the KV does not yield live cookies.

CSRF: the cookie is `SameSite=Strict`, and every unsafe request authenticated by the cookie must also
carry `X-CSRF-Token` equal to the session's token (handed to the page in the sign-in answer and by
`GET /api/v1/desk/session`, kept in page memory only). A request with an API key header is not a cookie
request and needs no token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

import msgspec
from litestar.types import Scope

from app.domain.identity.schemas import Principal
from app.domain.identity.services import authenticate_digest, hash_key
from app.lib.errors import Forbidden

COOKIE = "td_desk"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class DeskSession(msgspec.Struct, array_like=True):
    key_digest: str
    csrf_token: str
    user_id: uuid.UUID
    expires_at: float


_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(DeskSession).decode


def _store_key(session_id: str) -> str:
    return "desk:session:" + hashlib.sha256(session_id.encode()).hexdigest()


async def create(kv, principal: Principal, api_key: str, ttl: int) -> tuple[str, DeskSession]:
    session_id = secrets.token_urlsafe(32)
    session = DeskSession(hash_key(api_key), secrets.token_urlsafe(32), principal.user_id, time.time() + ttl)
    await kv.set(_store_key(session_id), _encode(session), ttl=ttl)
    return session_id, session


async def load(kv, session_id: str) -> DeskSession | None:
    raw = await kv.get(_store_key(session_id))
    return _decode(raw) if raw else None


async def end(kv, session_id: str) -> None:
    await kv.delete(_store_key(session_id))


def session_cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE and val:
                    return val
    return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return None


async def authenticate_cookie(scope: Scope, session_id: str) -> tuple[Principal, DeskSession] | None:
    """The principal behind a desk cookie, or None when the session or its key is gone. An unsafe request
    without the matching CSRF token is refused (403) before anything runs."""
    state = scope["app"].state
    session = await load(state.kv, session_id)
    if session is None or session.expires_at < time.time():
        return None
    principal = await authenticate_digest(state.engine, session.key_digest)
    if principal is None:
        await end(state.kv, session_id)
        return None
    if scope.get("method", "GET") not in SAFE_METHODS:
        presented = _header(scope, b"x-csrf-token") or ""
        if not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
            raise Forbidden("Missing or wrong X-CSRF-Token for a cookie-authenticated write",
                           slug="csrf-token-required")
    return principal, session


async def session_alive(kv, session_id: str) -> bool:  # noqa: ANN001 (as load)
    """Whether a desk session still exists and has not expired (an open stream's check: sign-out deletes
    the session, and a session's lifetime is DESK_SESSION_SECONDS)."""
    session = await load(kv, session_id)
    return session is not None and session.expires_at >= time.time()


async def authenticate_socket(scope: Scope) -> Principal | None:
    """The principal behind a desk cookie on a WebSocket upgrade. A browser sends cookies with a
    cross-site WebSocket handshake too unless SameSite stops it, so the upgrade must also come from this
    server's own origin (cross-site WebSocket hijacking)."""
    session_id = session_cookie(scope)
    if session_id is None:
        return None
    origin = _header(scope, b"origin")
    host = _header(scope, b"host")
    if not origin or not host or origin.split("://", 1)[-1] != host:
        return None
    found = await authenticate_cookie(scope, session_id)
    return found[0] if found else None
