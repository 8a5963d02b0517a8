"""RFC 9457 problem details for every error the API can return.

Litestar's ProblemDetailsPlugin renders `ProblemDetailsException`; every 4xx/5xx body has `type`,
`title`, `status`, `detail` and, for validation failures, `errors: [{field, message}]`. One idea per
module, re-exported here (callers import from `app.lib.errors`):

- `problems`: the body (ProblemDetails), the status titles and type slugs, and `ApiError`, the HTTP
  layer's error;
- `domain`: the errors domain code raises (`NotFound`, `Conflict`, `Invalid`, `Forbidden`, ... and
  named ones such as `QueueUnavailable`), and `PROBLEMS`, the one table from a kind of failure to a status;
- `messages`: field names from msgspec's messages, Litestar's own HTTP exceptions as problem details,
  unreadable bodies;
- `sqlstate`: what no handler took (PostgreSQL storage rules that client input breaks: 422; a dependency
  outage: 503; else a logged 500);
- `openapi`: the plugin, the documented error responses of every operation, the exception handlers.
"""

from __future__ import annotations

from app.lib.errors.domain import (
    PROBLEMS,
    AlreadyExists,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    Malformed,
    NotAccountOwner,
    NotFound,
    NotSignedIn,
    QueueUnavailable,
    RateLimited,
    RoleRequired,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    conflict,
    invalid,
    not_found,
)
from app.lib.errors.messages import body_decode_error, decode_body, field_from_message, from_http_exception
from app.lib.errors.openapi import (
    EXCEPTION_HANDLERS,
    TradedeskProblemDetailsPlugin,
    documented_errors,
    problem_details_plugin,
    problem_response,
)
from app.lib.errors.problems import TITLES, TYPE_BASE, ApiError, ProblemDetails, ProblemFieldError
from app.lib.errors.sqlstate import classify_unhandled, internal_error_handler, status_of

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEMS",
    "TITLES",
    "TYPE_BASE",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "DomainError",
    "Forbidden",
    "Invalid",
    "Malformed",
    "NotAccountOwner",
    "NotFound",
    "NotSignedIn",
    "ProblemDetails",
    "ProblemFieldError",
    "QueueUnavailable",
    "RateLimited",
    "RoleRequired",
    "TooLarge",
    "TradedeskProblemDetailsPlugin",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "body_decode_error",
    "classify_unhandled",
    "conflict",
    "decode_body",
    "documented_errors",
    "field_from_message",
    "from_http_exception",
    "internal_error_handler",
    "invalid",
    "not_found",
    "problem_details_plugin",
    "problem_response",
    "status_of",
]
