"""The ASGI application, assembled in one place from settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.compression import CompressionConfig  # noqa: F401  (kept off: JSON is small, CPU is scarce)
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusController

from app import __version__
from app.domain.identity.middleware import AuthMiddleware
from app.domain.streams.runtime import stream_runtime
from app.domain.system.controllers import document_liveness
from app.lib.errors import EXCEPTION_HANDLERS, problem_details_plugin
from app.lib.gc_tuning import freeze_startup_objects
from app.lib.idempotency import IdempotencyMiddleware
from app.lib.log import configure_logging, get_logger
from app.lib.middleware import RequestContextMiddleware, add_request_id_header
from app.lib.openapi_schema import openapi_schema_plugins
from app.lib.ratelimit import RateLimitMiddleware
from app.lib.settings import Settings, get_settings
from app.lib.state import open_resources
from app.lib.tracing import configure_tracing, litestar_plugin
from app.server.routes import route_handlers

log = get_logger("app.server")


class MetricsController(PrometheusController):
    path = "/metrics"
    openmetrics_format = False
    include_in_schema = False  # Prometheus text exposition, not part of the JSON API


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing()
    otel = litestar_plugin()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = await open_resources(settings)
        # Streams (app/domain/streams): the channels plugin is started here, after the engine it reads
        # from, and stopped before it.
        streams = stream_runtime(settings, resources.engine)
        app.state.streams = await streams.__aenter__()
        app.state.resources = resources
        app.state.settings = settings
        app.state.engine = resources.engine
        app.state.order_pool = resources.order_pool
        app.state.kv = resources.kv
        app.state.queue = resources.queue
        app.state.cache = resources.cache
        if settings.admin_api_key:
            from app.domain.identity.services import ensure_admin_key

            try:
                await ensure_admin_key(resources.engine, settings.admin_api_key)
            except Exception as exc:  # database not migrated yet: /ready will say so
                log.warning("admin_bootstrap_failed", error=repr(exc)[:300])
        freeze_startup_objects()
        log.info("app_started", version=__version__, embedded=settings.embedded)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await streams.__aexit__(None, None, None)
            await resources.close()
            log.info("app_stopped")

    limits = {
        "read": settings.rate_limit_read,
        "write": settings.rate_limit_write,
        "orders": settings.rate_limit_orders,
        "anonymous": settings.rate_limit_anonymous,
    }
    app = Litestar(
        route_handlers=[*route_handlers(), MetricsController],
        lifespan=[lifespan],
        middleware=[
            RequestContextMiddleware(settings.access_log),
            AuthMiddleware(),
            RateLimitMiddleware(limits, settings.rate_limit_window_seconds),
            IdempotencyMiddleware(settings.idempotency_ttl_seconds),
        ],
        plugins=[problem_details_plugin(), *openapi_schema_plugins(), *([otel] if otel is not None else [])],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_request_id_header],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Tradedesk API",
            version=__version__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            description="Accounts, instruments, paper exchange, risk, backtests and jobs.",
        ),
        debug=False,
    )
    # The liveness probe is a raw ASGI route handler (see HealthController.health), which Litestar leaves
    # out of the OpenAPI document; this plugin subclass adds it back when the document is first built.
    app.plugins.get(OpenAPIPlugin).__class__ = _OpenAPIWithLiveness
    return app


class _OpenAPIWithLiveness(OpenAPIPlugin):
    __slots__ = ()  # same layout as OpenAPIPlugin, so an instance can be switched to this class

    def _build_openapi(self) -> OpenAPI:
        openapi = super()._build_openapi()
        document_liveness(openapi)
        return openapi
