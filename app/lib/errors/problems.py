"""The RFC 9457 problem body every error of the API answers with, and the exception that carries one.

`type` is TYPE_BASE + a slug, `title` the status's title; validation failures add
`errors: [{field, message}]`, and an error may add members of its own (e.g. `limit_id` on a risk breach).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.plugins.problem_details import ProblemDetailsException

from app.lib.decimals import plain_in_text

TYPE_BASE = "https://tradedesk.dev/problems/"

TITLES = {
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
SLUGS = {
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


class ApiError(ProblemDetailsException):
    """An error with a stable problem `type` slug and optional field errors / extra members.

    Raised directly by the HTTP layer (middleware, controllers: a body too large, an unsupported media
    type); domain code raises the named errors of app/lib/errors/domain.py, which are ApiErrors too."""

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
            # Messages quote the Decimals they check, as the client may have written them ("1E+1"); they
            # read in plain notation like every number in an answer.
            body["errors"] = [
                {**e, "message": plain_in_text(e["message"])} if isinstance(e.get("message"), str) else e
                for e in errors
            ]
        super().__init__(
            detail=plain_in_text(detail),
            status_code=status,
            type_=TYPE_BASE + (slug or SLUGS.get(status, "error")),
            title=title or TITLES.get(status, "Error"),
            headers=headers,
            extra=body or None,
        )


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
