"""RFC 9457 problem details for every error the API can return.

Litestar's ProblemDetailsPlugin renders `ProblemDetailsException`; the mapping below turns Litestar's own
HTTP exceptions (validation, 404, 405, ...) and our domain errors into it, so every 4xx/5xx body has
`type`, `title`, `status`, `detail` and, for validation failures, `errors: [{field, message}]`.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
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


def _field_errors(extra: Any) -> list[dict[str, str]] | None:
    if not isinstance(extra, list):
        return None
    out = []
    for item in extra:
        if isinstance(item, dict):
            message = str(item.get("message"))
            key = item.get("key")
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


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Unknown errors: log with the request id, answer a generic body (never leak internals)."""
    from app.lib.dependency_errors import classify_dependency_error

    status, detail = classify_dependency_error(exc)
    if status == 503:
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


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(exception_to_problem_detail_map={HTTPException: _from_http_exception})
    )


EXCEPTION_HANDLERS = {HTTP_500_INTERNAL_SERVER_ERROR: internal_error_handler, Exception: internal_error_handler}
