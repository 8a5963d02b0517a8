"""Unknown query parameters are a 400 on every GET, POST, PUT, PATCH and DELETE of the API, never
silently ignored (API.md); a one-value parameter given twice is a 400 on every method.

A misspelt filter (`?statuss=open`, `?symbol=` sent as `?sym=`) would otherwise answer an unfiltered
page, which a bot takes for the filtered one; on an action it is worse: a cancel-all with `?symbl=`
would cancel the orders of every symbol, a position close with `?qty=` would close all of it. Litestar
has no switch for this: it parses the parameters a handler declares and ignores the rest. Hand-written,
then, from Litestar's own model of the handler: the `KwargsModel` it builds from the signature and the
dependencies (the same source that parses the declared parameters, so nothing is listed twice), read once
per handler and kept.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.lib.errors import ApiError

# Per route handler: the query parameter names it declares (its own and its dependencies'), and those of
# them that take one value.
_DECLARED: dict[Any, tuple[frozenset[str], frozenset[str]]] = {}
# HEAD and OPTIONS (CORS preflights) are answered by Litestar's own handlers and act on nothing.
_CHECKED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _declared(request: Request[Any, Any, Any]) -> tuple[frozenset[str], frozenset[str]]:
    handler = request.route_handler
    names = _DECLARED.get(handler)
    if names is None:
        path_parameters = {name: None for name in request.path_params}
        model = handler.create_kwargs_model(path_parameters=path_parameters)  # type: ignore[attr-defined,arg-type]
        names = (
            frozenset(p.field_alias for p in model.expected_query_params),
            frozenset(p.field_alias for p in model.expected_query_params if not p.is_sequence),
        )
        _DECLARED[handler] = names
    return names


async def reject_unknown_query_parameters(request: Request[Any, Any, Any]) -> None:
    """Litestar `before_request` hook: 400 naming every query parameter the handler does not take, and
    (any method) every one-value parameter given more than once, which Litestar would silently reduce to
    one of its values (`?symbol=A&symbol=B` on a cancel-all would cancel the orders of one symbol only)."""
    if not request.scope.get("query_string") or not request.url.path.startswith("/api/"):
        return
    declared, single = _declared(request)
    repeated = sorted(name for name in single if len(request.query_params.getall(name, [])) > 1)
    if repeated:
        raise ApiError(
            400,
            f"query parameter{'s' if len(repeated) > 1 else ''} given more than once: {', '.join(repeated)}",
            slug="repeated-query-parameter",
            errors=[{"field": name, "message": "takes one value"} for name in repeated],
        )
    if request.method not in _CHECKED_METHODS:
        return
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise ApiError(
            400,
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            slug="unknown-query-parameter",
            errors=[{"field": name, "message": "unknown query parameter"} for name in unknown],
        )
