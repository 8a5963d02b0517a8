"""Tradedesk's reliance on Litestar internals (app/lib/litestar_private.py) is pinned to one version.

When Litestar is upgraded this fails first, with the list of what to re-check; once every item is checked
(and tests/integration/test_openapi_schema.py, test_options_allow.py and test_streams.py pass), move
`PINNED_LITESTAR` to the new version.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest
from litestar import Litestar, get, post
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.openapi.spec import OpenAPI

from app.lib import litestar_private

APP = Path(__file__).resolve().parents[2] / "app"

RECHECK = """\
Litestar is {installed}; app/lib/litestar_private.py was checked against {pinned}. Re-check:
  1. OpenAPIPlugin (litestar._openapi.plugin) still builds the document in `_build_openapi` and keeps
     its `__slots__` layout (finish_openapi_document switches the instance's class);
  2. the default OPTIONS handler still reads its route from a closure variable named `self`, or
     litestar-org/litestar#4169 is fixed (then delete complete_options_allow);
  3. litestar._openapi.schema_generation still has SchemaCreator and plugins.struct.StructSchemaPlugin;
  4. ChannelsPlugin still keeps `_channels` (channel -> subscribers), `_backend` and `_sub_worker`, and
     RedisChannelsPubSubBackend `_redis` (app/domain/streams/hub.py and runtime.py use them);
then set PINNED_LITESTAR to {installed}."""


def test_litestar_is_the_pinned_version():
    installed = importlib.metadata.version("litestar")
    pinned = litestar_private.PINNED_LITESTAR
    assert installed == pinned, RECHECK.format(installed=installed, pinned=pinned)


def test_only_the_compat_module_imports_litestar_internals():
    found = []
    for path in sorted(APP.rglob("*.py")):
        if path == APP / "lib" / "litestar_private.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            )
            where = f"{path.relative_to(APP.parent)}:{getattr(node, 'lineno', 0)}"
            found += [f"{where} {n}" for n in names if n.startswith("litestar._")]
    assert not found, f"import Litestar internals through app/lib/litestar_private.py only: {found}"


def test_the_openapi_document_is_finished_once_by_our_step():
    @get("/thing", sync_to_thread=False)
    def thing() -> dict[str, int]:
        return {}

    calls: list[OpenAPI] = []
    app = Litestar([thing])
    plugin = app.plugins.get(litestar_private.OpenAPIPlugin)
    litestar_private.finish_openapi_document(app, calls.append)
    assert type(plugin).__slots__ == ()  # the swap added no state
    document = plugin.provide_openapi()
    plugin.provide_openapi()
    assert calls == [document] and "/thing" in (document.paths or {})


def test_options_lists_every_method_of_a_path_registered_in_two_steps():
    from litestar.testing import TestClient

    @get("/both", sync_to_thread=False)
    def read() -> None:
        return None

    @post("/both", sync_to_thread=False)
    def write() -> None:
        return None

    app = Litestar([read])
    app.register(write)
    litestar_private.complete_options_allow(app)
    with TestClient(app) as client:
        allow = client.options("/both").headers["allow"]
    assert {m.strip() for m in allow.split(",")} == {"GET", "POST", "OPTIONS"}


@pytest.mark.parametrize("name", ["_channels", "_backend"])
def test_the_channels_internals_streams_uses_are_there(name):
    plugin = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    assert hasattr(plugin, name), RECHECK.format(installed="this", pinned=litestar_private.PINNED_LITESTAR)
    assert callable(getattr(ChannelsPlugin, "_sub_worker", None))
    assert "_redis" in RedisChannelsPubSubBackend.__init__.__code__.co_names
