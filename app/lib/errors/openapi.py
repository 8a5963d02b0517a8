"""The problem-details plugin (every error rendered as RFC 9457) and the OpenAPI document saying so for
every operation; the app's exception handlers."""

from __future__ import annotations

from dataclasses import replace

from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.lib.errors.messages import from_http_exception
from app.lib.errors.problems import ProblemDetails
from app.lib.errors.sqlstate import internal_error_handler

# Probes answer with their own bodies and are neither authenticated nor rate limited.
_PROBES = frozenset({"/health", "/ready", "/metrics"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def problem_response(description: str) -> ResponseSpec:
    """A handler's own documented error status (for one the conventions of documented_errors miss)."""
    return ResponseSpec(
        data_container=ProblemDetails,
        media_type="application/problem+json",
        description=description,
        generate_examples=False,
    )


_problem = problem_response


def documented_errors(path: str, methods: set[str], has_path_params: bool) -> dict[int, ResponseSpec]:
    """The error statuses an operation can answer, per the conventions of docs (API.md), as problem details.

    Without this the schema only shows Litestar's own 400 body ({status_code, detail, extra} as JSON),
    which the API never sends, and no 401/403/404/409/422/429/503 at all."""
    if path in _PROBES:
        return {}
    out = {
        400: _problem("Malformed input (query, header or body); `errors` names the fields"),
        401: _problem("Missing, invalid, expired or revoked API key"),
        403: _problem("The key's role may not do this"),
        422: _problem("Well-formed input that breaks a rule (instrument rules, risk limits, state)"),
        429: _problem("Rate limited; see Retry-After"),
        503: _problem("A backing service (PostgreSQL, Redis, the queue) is unavailable; retry shortly"),
    }
    if has_path_params:
        out[404] = _problem("No such resource, or not yours")
    if has_path_params or methods & _WRITES:
        # Reads too: a resource can be in no state to answer yet (a backtest's trades before it completed).
        out[409] = _problem("Conflict with the resource's state, or an Idempotency-Key still in flight")
    if methods & _WRITES:
        out[413] = _problem("Request body too large")
    return out


class TradedeskProblemDetailsPlugin(ProblemDetailsPlugin, ReceiveRoutePlugin):
    """Problem details for every error, and the OpenAPI schema saying so for every operation."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            errors = documented_errors(route.path, set(handler.http_methods), bool(route.path_parameters))
            # A handler's own entries win: it knows its statuses better than the conventions do. None of
            # them carries generated examples (ResponseSpec makes random ones by default: an `equity` of
            # "yqIvHoWtVStHqUYZYuOV"); a schema shows real examples or none.
            responses = {**errors, **(handler.responses or {})}
            handler.responses = {
                status: replace(spec, generate_examples=False) if spec.generate_examples else spec
                for status, spec in responses.items()
            } or None


def problem_details_plugin() -> ProblemDetailsPlugin:
    return TradedeskProblemDetailsPlugin(
        ProblemDetailsConfig(exception_to_problem_detail_map={HTTPException: from_http_exception})
    )


EXCEPTION_HANDLERS = {
    HTTP_500_INTERNAL_SERVER_ERROR: internal_error_handler,
    Exception: internal_error_handler,
}
