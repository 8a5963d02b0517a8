from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, get

from app import __version__
from app.domain.system.services import queue_workers, readiness


class Liveness(msgspec.Struct):
    status: str


class ComponentHealth(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    latency_ms: float | None = None
    detail: str | None = None


class HealthReport(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    version: str
    components: dict[str, ComponentHealth]


_LIVE = Liveness(status="ok")


class HealthController(Controller):
    tags = ["health"]

    @get("/health", summary="Liveness (no dependency calls)", cache=False)
    async def health(self) -> Liveness:
        return _LIVE

    @get("/ready", summary="Readiness: PostgreSQL at migration head, Redis/KV and queue reachable")
    async def ready(self, request: Request) -> Response[dict[str, Any]]:
        checks = await readiness(request.app.state)
        failing = [name for name, c in checks.items() if not c["ok"]]
        body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "checks": checks}
        if failing:
            body["failing"] = failing
        return Response(body, status_code=200 if not failing else 503)

    @get("/api/v1/health", summary="Component report with latencies and version")
    async def report(self, request: Request) -> HealthReport:
        state = request.app.state
        checks = await readiness(state)
        components = {
            name: ComponentHealth(status="ok" if c["ok"] else "down", latency_ms=c["latency_ms"], detail=c["error"])
            for name, c in checks.items()
        }
        try:
            workers, _queued = await queue_workers(state.queue)
            components["workers"] = ComponentHealth(
                status="ok" if workers else "down", detail=f"{workers} worker(s) alive"
            )
        except Exception as exc:
            components["workers"] = ComponentHealth(status="down", detail=type(exc).__name__)
        statuses = [c.status for c in components.values()]
        if components["database"].status == "down":
            overall = "down"
        elif "down" in statuses:
            overall = "degraded"
        else:
            overall = "ok"
        return HealthReport(status=overall, version=__version__, components=components)
