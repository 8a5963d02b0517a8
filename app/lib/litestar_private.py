"""Every use of Litestar's private API by Tradedesk's app and OpenAPI plumbing, in one module, pinned to
the Litestar version it was checked against (`PINNED_LITESTAR`).

Litestar 2 has no public way to do these, and each is small:

1. `finish_openapi_document`: run our own step on the OpenAPI document right after Litestar builds it
   (the raw ASGI liveness probe and two hand-described bodies are added, anonymous operations marked).
   The app's OpenAPIPlugin instance (`litestar._openapi.plugin`) is switched to a subclass of the same
   slot layout that overrides `_build_openapi`.
2. `complete_options_allow`: Litestar 2's default OPTIONS handler keeps, in its closure, the route that
   existed when a path's first handler was registered (litestar-org/litestar#4169, fixed only in 3);
   each handler's closure cell is pointed at the route that serves it.
3. `StructSchemaPlugin` (`litestar._openapi.schema_generation`): our strict-struct schema plugin extends
   Litestar's msgspec one (app/lib/openapi_schema.py).

Outside this module, the streams runtime (app/domain/streams/hub.py, runtime.py) reads ChannelsPlugin's
`_channels` and `_backend` and overrides `_sub_worker`; tests/unit/test_litestar_private.py checks those
too. That test fails, naming what to re-check, as soon as the installed Litestar is not the pinned one;
no other module of `app/` may import from `litestar._`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.routes import HTTPRoute

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.openapi.spec import OpenAPI

PINNED_LITESTAR = "2.25.0"

__all__ = [
    "PINNED_LITESTAR",
    "OpenAPIPlugin",
    "SchemaCreator",
    "StructSchemaPlugin",
    "complete_options_allow",
    "finish_openapi_document",
]


def finish_openapi_document(app: Litestar, finish: Callable[[OpenAPI], None]) -> None:
    """Have `finish(document)` run on the app's OpenAPI document when Litestar first builds it."""

    class FinishedOpenAPIPlugin(OpenAPIPlugin):
        __slots__ = ()  # same layout as OpenAPIPlugin, so the instance can be switched to this class

        def _build_openapi(self) -> OpenAPI:
            openapi = super()._build_openapi()
            finish(openapi)
            return openapi

    app.plugins.get(OpenAPIPlugin).__class__ = FinishedOpenAPIPlugin


def complete_options_allow(app: Litestar) -> None:
    """Make every path's `OPTIONS` answer list all of its methods in `Allow` (item 2 above): each default
    OPTIONS handler is pointed at the route that serves it."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = getattr(handler.fn, "__wrapped__", handler.fn)  # ensure_async_callable may wrap it
            code = getattr(fn, "__code__", None)
            if handler.handler_name != "options_handler" or code is None or "self" not in code.co_freevars:
                continue
            cell = fn.__closure__[code.co_freevars.index("self")]
            if isinstance(cell.cell_contents, HTTPRoute):
                cell.cell_contents = route
