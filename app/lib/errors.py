"""RFC 9457 problem details for every error the API can return.

Litestar's ProblemDetailsPlugin renders `ProblemDetailsException`; the mapping below turns Litestar's own
HTTP exceptions (validation, 404, 405, ...) and our domain errors into it, so every 4xx/5xx body has
`type`, `title`, `status`, `detail` and, for validation failures, `errors: [{field, message}]`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.routes import BaseRoute, HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.lib.log import get_logger

TYPE_BASE = "https://tradedesk.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "service-unavailable",
}

log = get_logger("app.errors")


T = TypeVar("T")


class ApiError(ProblemDetailsException):
    """A domain error with a stable problem `type` slug and optional field errors / extra members."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        body: dict[str, Any] = dict(extra)
        if errors:
            body["errors"] = errors
        super().__init__(
            detail=detail,
            status_code=status,
            type_=TYPE_BASE + (slug or _SLUGS.get(status, "error")),
            title=title or _TITLES.get(status, "Error"),
            headers=headers,
            extra=body or None,
        )


def not_found(what: str = "Resource") -> ApiError:
    return ApiError(404, f"{what} not found")


def conflict(detail: str, **extra: Any) -> ApiError:
    return ApiError(409, detail, **extra)


def invalid(detail: str, field: str | None = None, *, slug: str | None = None, **extra: Any) -> ApiError:
    errors = [{"field": field, "message": detail}] if field else None
    return ApiError(422, detail, slug=slug, errors=errors, **extra)


_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def field_from_message(message: str, default: str = "body") -> str:
    """msgspec names the failing field as "... - at `$.candles[3].open`" or, from __post_init__
    checks, as "`tick_size` must be ..."; prefer the path, then the first named field."""
    if m := _PATH.search(message):
        return m.group(1) or default
    if m := _NAMED.search(message):
        return m.group(1)
    return default


def decode_body(body: Any, type_: type[T]) -> T:
    """``body`` (already parsed JSON) as ``type_``, or the 400 with field errors that Litestar gives
    for a body it decodes itself (for handlers that pick the type after looking at the body)."""
    try:
        return msgspec.convert(body, type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise ApiError(
            400, message, errors=[{"field": field_from_message(message), "message": message}]
        ) from exc


def _field_errors(extra: Any) -> list[dict[str, str]] | None:
    if not isinstance(extra, list):
        return None
    out = []
    for item in extra:
        if isinstance(item, dict):
            message = str(item.get("message"))
            key = item.get("key")
            if message == "'data'":  # Litestar's signature model on a missing body: the KeyError's text
                message = "A request body is required"
            if not key or key == "data":
                key = field_from_message(message, str(item.get("source") or "body"))
            out.append({"field": str(key), "message": message})
    return out or None


def _from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ProblemDetailsException):
        return exc
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra)
        # Litestar reports malformed JSON as a 400 ValidationException without field errors.
        detail = exc.detail if errors else (str(exc.detail) or "Malformed request body")
        return ApiError(status, detail, errors=errors, headers=exc.headers)
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return ApiError(status, str(exc.detail or _TITLES.get(status, "Error")), headers=exc.headers, **extra)


# PostgreSQL refuses to store some text: NUL (U+0000) in any text column (22021), or characters the
# database encoding lacks (22P05). Only client input puts them there, so that is a 422 (well-formed
# input breaking a rule of the store), not a 500; catching it here covers every text field, query
# filter and cursor at once.
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


def _is_unstorable_text(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) in _UNSTORABLE_TEXT:
            return True
        current = current.__cause__ or current.__context__
    return False


_UNSTORABLE_DETAIL = "Text input contains a character that cannot be stored (such as U+0000 NUL)"


def classify_unhandled(exc: BaseException) -> tuple[int, str]:
    """The status and detail `internal_error_handler` answers for an exception no other handler took."""
    from app.lib.dependency_errors import classify_dependency_error

    if _is_unstorable_text(exc):
        # Well-formed JSON text that breaks a storage rule: 422, like any other rule (API.md).
        return 422, _UNSTORABLE_DETAIL
    return classify_dependency_error(exc)


def status_of(exc: BaseException) -> int:
    """The status the app's exception handlers will send for `exc`, for code that sees the exception
    before they do (the access log and HTTP metrics, recorded by the outermost middleware)."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    return classify_unhandled(exc)[0]


def body_decode_error(exc: RecursionError | UnicodeDecodeError) -> ApiError:
    """A JSON body the decoder cannot read for a reason msgspec does not report as a DecodeError: nesting
    deeper than its recursion limit, or bytes that are not UTF-8. Malformed input, so a 400."""
    if isinstance(exc, RecursionError):
        message = "JSON body is nested too deeply"
    else:
        message = f"Request body is not valid UTF-8 (byte {exc.start})"
    return ApiError(400, message, errors=[{"field": "body", "message": message}])


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Unknown errors: log with the request id, answer a generic body (never leak internals)."""
    status, detail = classify_unhandled(exc)
    if status == 422:
        log.info("unstorable_text_rejected", path=request.url.path, error=repr(exc)[:200])
    elif status == 503:
        log.warning("dependency_unavailable", path=request.url.path, error=repr(exc)[:300])
    else:
        log.exception("unhandled_error", path=request.url.path, method=request.method)
    body = {
        "type": TYPE_BASE + _SLUGS[status],
        "title": _TITLES[status],
        "status": status,
        "detail": detail,
    }
    rid = request.scope.get("state", {}).get("request_id")
    if rid:
        body["request_id"] = rid
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


class ProblemFieldError(msgspec.Struct):
    field: str
    message: str


class ProblemDetails(msgspec.Struct):
    """RFC 9457 body of every error. Domain errors add members (e.g. `limit_id` on a risk breach)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemFieldError] | None = None
    request_id: str | None = None


# Probes answer with their own bodies and are neither authenticated nor rate limited.
_PROBES = frozenset({"/health", "/ready", "/metrics"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemDetails,
        media_type="application/problem+json",
        description=description,
        generate_examples=False,
    )


def problem_response(description: str) -> ResponseSpec:
    """A handler's own documented error status (for one the conventions of documented_errors miss)."""
    return _problem(description)


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
        ProblemDetailsConfig(exception_to_problem_detail_map={HTTPException: _from_http_exception})
    )


EXCEPTION_HANDLERS = {
    HTTP_500_INTERNAL_SERVER_ERROR: internal_error_handler,
    Exception: internal_error_handler,
}
