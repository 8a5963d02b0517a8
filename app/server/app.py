"""The ASGI application, assembled in one place from settings."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response, get
from litestar.config.compression import CompressionConfig  # noqa: F401  (kept off: JSON is small, CPU is scarce)
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import OpenAPI
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from app import __version__
from app.domain.identity.bruteforce import BruteForcePolicy
from app.domain.identity.middleware import AuthMiddleware
from app.domain.markets.controllers import document_candle_upload, document_feed_symbols
from app.domain.risk.post_trade import stop_group_checks
from app.domain.streams.runtime import stream_runtime
from app.domain.system import ops_metrics
from app.domain.system.controllers import document_liveness
from app.domain.trading.kept import PlacementCaches
from app.lib.errors import EXCEPTION_HANDLERS, ApiError, problem_details_plugin
from app.lib.gc_tuning import freeze_startup_objects
from app.lib.http import ApiResponse
from app.lib.idempotency import IdempotencyMiddleware
from app.lib.litestar_private import complete_options_allow, finish_openapi_document
from app.lib.log import configure_logging, get_logger
from app.lib.middleware import RequestContextMiddleware, add_request_id_header
from app.lib.openapi_schema import (
    mark_anonymous_operations,
    openapi_schema_plugins,
    openapi_security,
    swagger_assets_router,
    swagger_render_plugin,
)
from app.lib.query_params import reject_unknown_query_parameters
from app.lib.ratelimit import RateLimitMiddleware
from app.lib.request import ApiRequest
from app.lib.settings import Settings, get_settings
from app.lib.state import open_resources
from app.lib.tracing import configure_tracing, litestar_plugin
from app.server.routes import route_handlers
from app.server.wiring import wire

log = get_logger("app.server")


def require_metrics_token(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """`METRICS_TOKEN` set: /metrics answers only `Authorization: Bearer <token>` (compared in constant
    time). Unset: open, for a private network where Prometheus scrapes without credentials."""
    token = connection.app.state.settings.metrics_token
    if token is None:
        return
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise ApiError(401, "/metrics needs the metrics bearer token", headers={"WWW-Authenticate": "Bearer"})


class MetricsController(PrometheusController):
    path = "/metrics"
    openmetrics_format = False
    include_in_schema = False  # Prometheus text exposition, not part of the JSON API
    guards = [require_metrics_token]

    @get()
    async def get(self, request: Request) -> Response:
        """Litestar's exposition, after refreshing the operational gauges (dependency health, pools,
        queue, trading states, schedule lag) that no request path counts."""
        state = request.app.state
        await ops_metrics.refresh(state, state.settings.metrics_refresh_seconds)
        return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings | None = None) -> Litestar:
    wire()
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing()
    otel = litestar_plugin()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = await open_resources(settings)
        # Streams (app/domain/streams): the channels plugin is started here, after the engine it reads
        # from, and stopped before it.
        streams = stream_runtime(settings, resources.engine, resources.kv)
        app.state.streams = await streams.__aenter__()
        app.state.resources = resources
        app.state.settings = settings
        app.state.engine = resources.engine
        app.state.order_pool = resources.order_pool
        app.state.kv = resources.kv
        app.state.queue = resources.queue
        app.state.cache = resources.cache
        # Placement's kept state and hints (one round trip for an account's next order), this app's own.
        app.state.placement_caches = PlacementCaches()
        if settings.admin_api_key:
            from app.domain.identity.services import ensure_admin_key

            try:
                action = await ensure_admin_key(resources.engine, settings.admin_api_key)
            except Exception as exc:  # database not migrated yet: /ready will say so
                log.warning("admin_bootstrap_failed", error=repr(exc)[:300])
            else:
                # "restored": the key had been revoked or had expired (or its user demoted) through the API.
                log_admin = log.warning if action == "restored" else log.info
                log_admin("admin_key_ensured", action=action)
        freeze_startup_objects()
        log.info("app_started", version=__version__, embedded=settings.embedded)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await streams.__aexit__(None, None, None)
            await stop_group_checks()  # (a group check after a price, on the engine closed next)
            await resources.close()
            log.info("app_stopped")

    limits = {
        "read": settings.rate_limit_read,
        "write": settings.rate_limit_write,
        "orders": settings.rate_limit_orders,
        "anonymous": settings.rate_limit_anonymous,
    }
    security_components, security = openapi_security()
    app = Litestar(
        route_handlers=[*route_handlers(), MetricsController, swagger_assets_router()],
        lifespan=[lifespan],
        middleware=[
            RequestContextMiddleware(settings.access_log),
            AuthMiddleware(BruteForcePolicy.from_settings(settings)),
            RateLimitMiddleware(limits, settings.rate_limit_window_seconds),
            IdempotencyMiddleware(settings.idempotency_ttl_seconds),
        ],
        plugins=[problem_details_plugin(), *openapi_schema_plugins(), *([otel] if otel is not None else [])],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_request_id_header],
        before_request=reject_unknown_query_parameters,
        request_max_body_size=settings.max_body_bytes,
        request_class=ApiRequest,
        response_class=ApiResponse,
        openapi_config=OpenAPIConfig(
            title="Tradedesk API",
            version=__version__,
            path="/schema",
            render_plugins=[swagger_render_plugin()],
            description="Accounts, instruments, paper exchange, risk, backtests and jobs.",
            components=security_components,
            security=security,
        ),
        debug=False,
    )
    finish_openapi_document(app, finish_openapi)
    complete_options_allow(app)
    return app


def finish_openapi(openapi: OpenAPI) -> None:
    """What Litestar leaves out of the document: the liveness probe (a raw ASGI route handler, see
    HealthController.health), two hand-described bodies, and which operations need no key."""
    document_liveness(openapi)
    document_candle_upload(openapi)
    document_feed_symbols(openapi)
    mark_anonymous_operations(openapi)
