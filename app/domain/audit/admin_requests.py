"""Admin actions in the audit trail: every write request an admin makes to an admin-only route.

Recorded generically (method, route template, path parameters, status) rather than with a line in each
admin handler, so an admin route added later is audited without anybody remembering to. Reads are not
recorded, nor are writes an admin makes through routes open to other roles (placing orders, price
updates from a feed): those have their own trails (order events) or are market data.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.audit.services import record_detached
from app.domain.identity.guards import requires_admin

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_admin_only: dict[
    int, bool
] = {}  # route handler id -> guarded by requires_admin (handlers live as long as the app)


def is_admin_only(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    if handler is None:
        return False
    known = _admin_only.get(id(handler))
    if known is None:
        known = any(requires_admin in (layer.guards or ()) for layer in handler.ownership_layers)
        _admin_only[id(handler)] = known
    return known


async def run_audited(scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
    """Serve an admin's write request and record it with the status it got (after the response is sent)."""
    status = [500]

    async def send_wrapper(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        await send(message)

    try:
        await next_app(scope, receive, send_wrapper)
    except Exception as exc:  # an ApiError raised below is turned into a response by Litestar afterwards
        status[0] = getattr(exc, "status_code", 500)
        raise
    finally:
        await record_detached(
            scope["app"].state.engine,
            "admin.action",
            target=f"{scope['method']} {scope['path']}",
            details={
                "route": scope.get("path_template"),
                "path_params": {k: str(v) for k, v in (scope.get("path_params") or {}).items()},
                "status": status[0],
            },
        )
