"""Input that could not be read, as problem details naming the failing field: msgspec's messages,
Litestar's own HTTP exceptions (validation, 404, 405, ...) and bodies the decoder cannot read."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsException

from app.lib.errors.problems import TITLES, ApiError

T = TypeVar("T")

_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
# A message about one field of the object at the path: a __post_init__ check of a nested struct
# ("`stop_price` must be greater than 0 - at `$.stop_loss`") or msgspec's missing or unknown field.
_FIELD_OF_PATH = re.compile(
    r"^(?:Object (?:missing required|contains unknown) field )?`([A-Za-z_][A-Za-z0-9_]*)`"
)


def field_from_message(message: str, default: str = "body") -> str:
    """msgspec names the failing field as "... - at `$.candles[3].open`" or, from __post_init__
    checks, as "`tick_size` must be ..."; prefer the path (with the field of it the message names:
    `stop_loss.stop_price`), then the first named field."""
    if m := _PATH.search(message):
        path = m.group(1)
        named = _FIELD_OF_PATH.match(message)
        if path and named:
            return f"{path}.{named.group(1)}"
        return path or (named.group(1) if named else default)
    if message.startswith("Expected "):  # the body itself is of the wrong type: "Expected `object`, got ..."
        return default
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
            elif (named := _FIELD_OF_PATH.match(message)) and named.group(1) != str(key).rsplit(".", 1)[-1]:
                # Litestar splits msgspec's "`limit_price` must be ... - at `$.take_profit`" into the key
                # (the nested object) and the message (naming its field): the field is the two together.
                key = f"{key}.{named.group(1)}"
            out.append({"field": str(key), "message": message})
    return out or None


def from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own HTTP exceptions as problem details (ours already are)."""
    if isinstance(exc, ProblemDetailsException):
        return exc
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra)
        # Litestar reports malformed JSON as a 400 ValidationException without field errors.
        detail = exc.detail if errors else (str(exc.detail) or "Malformed request body")
        return ApiError(status, detail, errors=errors, headers=exc.headers)
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return ApiError(status, str(exc.detail or TITLES.get(status, "Error")), headers=exc.headers, **extra)


def body_decode_error(exc: RecursionError | UnicodeDecodeError) -> ApiError:
    """A JSON body the decoder cannot read for a reason msgspec does not report as a DecodeError: nesting
    deeper than its recursion limit, or bytes that are not UTF-8. Malformed input, so a 400."""
    if isinstance(exc, RecursionError):
        message = "JSON body is nested too deeply"
    else:
        message = f"Request body is not valid UTF-8 (byte {exc.start})"
    return ApiError(400, message, errors=[{"field": "body", "message": message}])
