"""Errors the domain raises, named for what went wrong, and the one table that gives each its problem.

Domain code says *what* failed (`NotFound("Instrument")`, `QueueUnavailable(...)`, `RoleRequired(...)`),
never an HTTP status: `PROBLEMS` below is the only place that turns a kind of failure into a status (and
so a problem `type` and `title`). The error objects are ApiErrors (ProblemDetailsException), so the
problem-details plugin's one exception handler renders every one of them with the same body shape, and
code that catches `ApiError` (batch operations that report per-item failures, the CLIs) keeps catching
them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.lib.errors.problems import ApiError


class DomainError(ApiError):
    """Base of the named errors; `kind` picks its entry in PROBLEMS (inherited by the named subclasses)."""

    kind: ClassVar[str] = "invalid"

    def __init__(
        self,
        detail: str,
        field: str | None = None,
        *,
        slug: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        """`field` names the one failing field (its message: `detail`); `errors` lists them otherwise."""
        if errors is None and field:
            errors = [{"field": field, "message": detail}]
        super().__init__(PROBLEMS[self.kind], detail, slug=slug, errors=errors, headers=headers, **extra)


class Malformed(DomainError):
    """Input that cannot be read as what it should be (a bad query value, unparsable JSON): 400."""

    kind = "malformed"


class Invalid(DomainError):
    """Well-formed input that breaks a rule (an instrument's tick, a bound, a state): 422."""

    kind = "invalid"


class NotFound(DomainError):
    """No such resource, or not one the caller may see: 404. `NotFound("Instrument")`."""

    kind = "not_found"

    def __init__(self, what: str = "Resource", **extra: Any) -> None:
        super().__init__(f"{what} not found", **extra)


class Conflict(DomainError):
    """The resource's state does not allow it now (already exists, already finished, revoked): 409."""

    kind = "conflict"


class Forbidden(DomainError):
    """The caller is known but may not do this: 403."""

    kind = "forbidden"


class Unauthenticated(DomainError):
    """No valid credentials: 401."""

    kind = "unauthenticated"


class RateLimited(DomainError):
    """Too many attempts from one client in a window: 429 (with Retry-After)."""

    kind = "rate_limited"


class TooLarge(DomainError):
    """A body larger than this operation takes: 413."""

    kind = "too_large"


class UnsupportedMediaType(DomainError):
    """A body in a format this operation does not read: 415."""

    kind = "unsupported_media_type"


class Unavailable(DomainError):
    """A backing service this needs (the job queue, a built front-end) is not there: 503."""

    kind = "unavailable"


# ------------------------------------------------------------------------------------ named errors


class AlreadyExists(Conflict):
    """A create whose natural key (an email, a code, a symbol, a name) is taken."""


class RoleRequired(Forbidden):
    """The principal's role does not allow the operation."""


class NotAccountOwner(Forbidden):
    """Trading on an account is for its owner only (others may at most see it)."""


class QueueUnavailable(Unavailable):
    """No job queue is configured, or it cannot be reached."""


class NotSignedIn(Unauthenticated):
    """A desk request without a (valid) session cookie."""


# The one mapping from a kind of failure to its HTTP status (and so its problem type and title).
PROBLEMS: dict[str, int] = {
    "malformed": 400,
    "invalid": 422,
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unauthenticated": 401,
    "too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "unavailable": 503,
}


def not_found(what: str = "Resource") -> NotFound:
    return NotFound(what)


def conflict(detail: str, **extra: Any) -> Conflict:
    return Conflict(detail, **extra)


def invalid(detail: str, field: str | None = None, *, slug: str | None = None, **extra: Any) -> Invalid:
    return Invalid(detail, field, slug=slug, **extra)
