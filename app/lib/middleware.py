"""Request context: request id, structured access log.

Plain ASGI middleware (Litestar's ASGIMiddleware) so the hot path costs a few microseconds.
"""

from __future__ import annotations

import time

import structlog
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.lib.errors import status_of
from app.lib.ids import new_request_id
from app.lib.log import get_logger
from app.lib.metrics import HTTP_IN_PROGRESS, observe_http

access_log = get_logger("app.access")

QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


def request_id_of(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")[:128]
                if candidate and candidate.isprintable():
                    rid = candidate
                break
        rid = rid or new_request_id()
        state["request_id"] = rid
    return rid


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """before_send hook: runs for every response, also 404/405 that no route middleware sees.

    Also `X-Content-Type-Options: nosniff` on every response: a browser must not guess a type other than
    the declared one (a JSON body that contains markup must never be run as HTML)."""
    if message["type"] == "http.response.start":
        headers = message.setdefault("headers", [])
        headers.append((b"x-request-id", request_id_of(scope).encode("latin-1")))
        if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
            headers.append((b"x-content-type-options", b"nosniff"))


class LeanMiddleware(ASGIMiddleware):
    """ASGIMiddleware without the per-request bypass checks (scope set, opt keys, path patterns).

    Every request passes through four of these; Litestar's generic wrapper re-evaluates its exclusion
    rules in each layer on each request, which measured several microseconds per layer on /health.
    Ours need none of them: non-HTTP scopes pass straight through.
    """

    def __call__(self, app: ASGIApp) -> ASGIApp:
        handle = self.handle

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await handle(scope, receive, send, app)

        return middleware


class RequestContextMiddleware(LeanMiddleware):

    def __init__(self, access_log_enabled: bool = True) -> None:
        self.access_log_enabled = access_log_enabled

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        rid = request_id_of(scope)
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        HTTP_IN_PROGRESS.inc()
        try:
            await next_app(scope, receive, send_wrapper)
        except Exception as exc:
            # Raised by inner middleware (401 from auth, 429 from the limiter, a database outage during the
            # key lookup): Litestar's outer exception handler writes the response after we return, so
            # record the status it is going to send (a dependency outage is its 503, not a 500).
            status_holder[0] = status_of(exc)
            raise
        finally:
            HTTP_IN_PROGRESS.dec()
            elapsed = time.perf_counter() - started
            if scope["path"] != "/metrics":
                observe_http(scope["method"], scope.get("path_template") or "unmatched", status_holder[0], elapsed)
            if self.access_log_enabled and scope["path"] not in QUIET_PATHS:
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_holder[0],
                    duration_ms=round(elapsed * 1000, 3),
                    user_id=str(p.user_id) if (p := scope.get("user")) is not None else None,
                )
            structlog.contextvars.unbind_contextvars("request_id")
