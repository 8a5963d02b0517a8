"""SAQ's own web UI (queues, jobs, retry/abort buttons) mounted at /saq behind the admin guard.

SAQ ships it as a small Starlette app; we mount that app instead of writing another one. Requests reach
it only through our middleware stack, so the API key (header) and the admin role are enforced before
any of its routes run.
"""

from __future__ import annotations

from typing import Any

from litestar import asgi
from litestar.types import Receive, Scope, Send

from app.domain.identity.guards import requires_admin

_apps: dict[int, Any] = {}


@asgi("/saq", is_mount=True, copy_scope=True, guards=[requires_admin], include_in_schema=False)
async def saq_ui(scope: Scope, receive: Receive, send: Send) -> None:
    queue = scope["app"].state.queue
    ui = _apps.get(id(queue))
    if ui is None:
        from saq.web.starlette import saq_web

        ui = _apps[id(queue)] = saq_web("/saq", queues=[queue]) if queue is not None else None
    if ui is None:
        from litestar.exceptions import HTTPException

        raise HTTPException(status_code=503, detail="The job queue is not available")
    # Litestar strips the mount path (SAQ's routes expect that) but hands sub-paths over with a trailing
    # slash, which SAQ's routes do not have.
    path = scope["path"]
    if len(path) > 1 and path.endswith("/"):
        scope = {**scope, "path": path.rstrip("/")}
    await ui(scope, receive, send)
