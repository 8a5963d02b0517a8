"""Exceptions no handler took: storage rules of PostgreSQL (SQLSTATE) that only client input breaks are
a 422, a dependency outage a 503, anything else a logged 500 with a generic body."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from app.lib.dependency_errors import classify_dependency_error
from app.lib.errors.problems import SLUGS, TITLES, TYPE_BASE
from app.lib.log import get_logger

log = get_logger("app.errors")

# PostgreSQL refuses to store some text: NUL (U+0000) in any text column (22021), or characters the
# database encoding lacks (22P05). Only client input puts them there, so that is a 422 (well-formed
# input breaking a rule of the store), not a 500; catching it here covers every text field, query
# filter and cursor at once.
UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
UNSTORABLE_DETAIL = "Text input contains a character that cannot be stored (such as U+0000 NUL)"


def _is_unstorable_text(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) in UNSTORABLE_TEXT:
            return True
        current = current.__cause__ or current.__context__
    return False


def _unstorable_paths(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            out.append(path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                out.append(name)
            _unstorable_paths(item, name, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _unstorable_paths(item, f"{path}[{i}]", out)


def unstorable_fields(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    """The inputs of a request refused for unstorable text that hold a NUL, named as validation errors
    name fields (`stop_loss.stop_price`, `legs[0].symbol`; query and path parameters by name). Worked out
    only once PostgreSQL has refused the text, from the body the handler already read: nothing on the
    path of a good request. (Characters the database encoding lacks (22P05) are not looked for: with
    UTF-8 there are none.)"""
    found: list[str] = []
    for key, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            found.append(key)
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            found.append(key)
    body = ScopeState.from_scope(request.scope).body
    if body is not Empty and body:
        try:
            _unstorable_paths(msgspec.json.decode(body), "", found)
        except msgspec.DecodeError:
            pass
    return [{"field": name, "message": "contains U+0000 (NUL), which cannot be stored"} for name in found]


def classify_unhandled(exc: BaseException) -> tuple[int, str]:
    """The status and detail `internal_error_handler` answers for an exception no other handler took."""
    if _is_unstorable_text(exc):
        # Well-formed JSON text that breaks a storage rule: 422, like any other rule (API.md).
        return 422, UNSTORABLE_DETAIL
    return classify_dependency_error(exc)


def status_of(exc: BaseException) -> int:
    """The status the app's exception handlers will send for `exc`, for code that sees the exception
    before they do (the access log and HTTP metrics, recorded by the outermost middleware)."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    return classify_unhandled(exc)[0]


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Unknown errors: log with the request id, answer a generic body (never leak internals)."""
    status, detail = classify_unhandled(exc)
    if status == 422:
        log.info("unstorable_text_rejected", path=request.url.path, error=repr(exc)[:200])
    elif status == 503:
        log.warning("dependency_unavailable", path=request.url.path, error=repr(exc)[:300])
    else:
        log.exception("unhandled_error", path=request.url.path, method=request.method)
    body: dict[str, Any] = {
        "type": TYPE_BASE + SLUGS[status],
        "title": TITLES[status],
        "status": status,
        "detail": detail,
    }
    if status == 422:
        errors = unstorable_fields(request)
        if errors:
            body["errors"] = errors
    rid = request.scope.get("state", {}).get("request_id")
    if rid:
        body["request_id"] = rid
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)
