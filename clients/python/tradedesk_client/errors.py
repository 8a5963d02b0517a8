"""Typed exceptions carrying the server's problem-details body (RFC 9457)."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any


class TradedeskError(Exception):
    """Base of every error the client raises."""


class TransportError(TradedeskError):
    """The server could not be reached (after the retries the policy allows)."""


class ApiError(TradedeskError):
    """The server answered with a 4xx/5xx problem-details body.

    `problem` is the whole body; `type`, `title`, `detail` and `errors` (field errors: `{"field",
    "message"}`) are its usual members, and the risk fields (`limit_id`, `limit_type`, `limit_value`,
    `would_be`) are there for a risk rejection.
    """

    status: int = 0

    def __init__(
        self,
        status: int,
        problem: dict[str, Any],
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.problem = problem
        self.type: str = str(problem.get("type") or "about:blank")
        self.title: str = str(problem.get("title") or "")
        self.detail: str = str(problem.get("detail") or self.title)
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.request_id = request_id or problem.get("request_id")
        self.retry_after = retry_after
        super().__init__(
            f"{status} {self.title}: {self.detail}" if self.title else f"{status}: {self.detail}"
        )

    @property
    def slug(self) -> str:
        """The last path segment of `type` (e.g. `risk-limit-breached`), stable across deployments."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    def field_errors(self) -> dict[str, str]:
        return {str(e.get("field")): str(e.get("message")) for e in self.errors}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unprocessable(ApiError):
    status = 422


class RiskLimitBreached(Unprocessable):
    """A pre-trade risk check refused the order; the limit that blocked it is in the attributes."""

    def __init__(self, status: int, problem: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(status, problem, **kwargs)
        # A UUID, like the `id` of the limit models (a risk limit's or a group limit's), so the two compare.
        self.limit_id = _uuid(problem.get("limit_id"))
        self.limit_type = problem.get("limit_type")
        # Decimals, as everywhere in the client ("decimals stay Decimal"); None when absent, and
        # `would_be` is None too for a figure without a finite value (a ratio over zero equity).
        self.limit_value = _decimal(problem.get("limit_value"))
        self.would_be = _decimal(problem.get("would_be"))


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


class RateLimited(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    status = 503


class ServerError(ApiError):
    status = 500


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(
    status: int, problem: dict[str, Any], *, request_id: str | None = None, retry_after: float | None = None
) -> ApiError:
    if status == 422 and str(problem.get("type", "")).endswith("/risk-limit-breached"):
        cls: type[ApiError] = RiskLimitBreached
    else:
        cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, problem, request_id=request_id, retry_after=retry_after)
