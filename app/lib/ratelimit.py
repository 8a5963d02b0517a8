"""Atomic fixed-window rate limits per user (or per client IP when anonymous), per route group.

Counted per user, not per key: a user may hold several keys (up to API_KEYS_MAX_PER_USER), and a second
key must not be a second budget. The RateLimit-* headers on a response therefore report the user's
budget, shared by every key of that user, which is what a client holding one of them can still spend.

Litestar's RateLimitMiddleware reads the counter, then writes it back: two concurrent requests can both
pass the last free slot. Here each request is one atomic INCR (Redis Lua / single-threaded memory), so
60 concurrent requests against a limit of 50 admit exactly 50, across every API process sharing Redis.
"""

from __future__ import annotations

import math

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.lib.errors import ApiError
from app.lib.log import ThrottledWarning, get_logger
from app.lib.middleware import LeanMiddleware

log = get_logger("app.ratelimit")
_warn_store_unavailable = ThrottledWarning(log, "rate_limit_store_unavailable")

EXEMPT = frozenset({"/health", "/ready", "/metrics"})


def route_group(method: str, path: str, authenticated: bool) -> str:
    if not authenticated:
        return "anonymous"
    # Validation is a dry run of the whole placement path (every check, the order pool): same budget.
    order_paths = ("/orders", "/orders/validate")
    if method == "POST" and path.startswith("/api/v1/accounts/") and path.endswith(order_paths):
        return "orders"
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "write"


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimitMiddleware(LeanMiddleware):

    def __init__(self, limits: dict[str, int], window: int) -> None:
        self.limits = limits
        self.window = window

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = scope["path"]
        if path in EXEMPT:
            await next_app(scope, receive, send)
            return
        principal = scope.get("user")
        group = route_group(scope["method"], path, principal is not None)
        limit = self.limits[group]
        who = str(principal.user_id) if principal is not None else _client_ip(scope)
        kv = scope["app"].state.kv
        try:
            count, reset = await kv.incr_window(f"rl:{group}:{who}", self.window)
        except Exception as exc:  # documented safe mode: a Redis outage must not stop trading
            _warn_store_unavailable(error=repr(exc)[:200])
            await next_app(scope, receive, send)
            return
        reset_s = max(math.ceil(reset), 1)
        headers = [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-remaining", str(max(limit - count, 0)).encode()),
            (b"ratelimit-reset", str(reset_s).encode()),
        ]
        if count > limit:
            raise ApiError(
                429,
                f"Rate limit of {limit} requests per {self.window}s exceeded for '{group}' requests",
                headers={
                    "Retry-After": str(reset_s),
                    "RateLimit-Limit": str(limit),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset_s),
                },
            )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *headers]
            await send(message)

        await next_app(scope, receive, send_wrapper)
