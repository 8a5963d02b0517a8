"""Which module of `app/` may import which, read from the source (ast, nothing is imported).

The rules the code base keeps:

1. A module takes only public names from another module: no `from app.x import _name` and no
   `module._name` on an imported `app` module (dunders such as `__version__` are public).
2. `app/lib` is plumbing: it imports no `app.domain` or `app.server` module.
3. `app/domain` imports no `app.server` module and no `app.cli`.
4. A `controllers` module is imported only by `app.server` (the routes and the app factory): services,
   jobs and other controllers never reach into one.
5. `app/tools` (operator tools such as the load generator) is reached only from `app.cli`.
6. No import cycle between modules, counting imports inside functions (a deferred import hides a cycle
   from the interpreter, not from the reader) and not counting `if TYPE_CHECKING:` blocks.

What breaks a rule today is listed below with the reason it is still there; an entry that no longer
matches anything fails the test too, so the lists only shrink.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

PRIVATE_ALLOWED: dict[tuple[str, str, str], str] = {}

LIB_TO_DOMAIN_ALLOWED: dict[tuple[str, str], str] = {
    # The one list of every table for Alembic's autogenerate and the migration test: it has to name
    # every area's models module.
    **{
        ("app.lib.models", f"app.domain.{area}.models"): "the metadata of every table, for Alembic"
        for area in ("accounts", "audit", "backtesting", "identity", "jobs", "markets", "risk", "trading")
    },
}

CYCLES_ALLOWED: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the imported module (for `from a.b import c`: a.b.c when that is a module, else a.b)
    name: str | None  # the imported name for `from a import name` when it is not a module
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(APP.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under `if TYPE_CHECKING:` (annotations only, never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _resolve(importer: str, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = importer.split(".")
    package = base if MODULES[importer].name == "__init__.py" else base[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    out: list[Import] = []
    for node in _nodes(tree):
        if isinstance(node, ast.Import):
            out.extend(Import(module, a.name, None, node.lineno) for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if source is None or not source.startswith("app"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    out.append(Import(module, full, None, node.lineno))
                else:
                    out.append(Import(module, source, alias.name, node.lineno))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str) -> set[tuple[str, str, str]]:
    """(importer, module, name) for each private name taken from another module of `app`."""
    found: set[tuple[str, str, str]] = set()
    for imp in imports_of(module):
        if imp.name is not None and imp.module != module and _private(imp.name):
            found.add((module, imp.module, imp.name))
    tree = ast.parse(MODULES[module].read_text())
    aliases: dict[str, str] = {}  # local name -> the app module it is bound to
    for node in _nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            source = _resolve(module, node) if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                full = f"{source}.{alias.name}" if source else alias.name
                if full in MODULES:
                    aliases[alias.asname or alias.name.rsplit(".", 1)[-1]] = full
    for node in _nodes(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and _private(node.attr)
            and aliases.get(node.value.id, module) != module
        ):
            found.add((module, aliases[node.value.id], node.attr))
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set()
        for imp in imports_of(module):
            if imp.module in MODULES and imp.module != module and not module.startswith(imp.module + "."):
                targets.add(imp.module)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


# -------------------------------------------------------------------------------------------------- rules


def test_no_private_name_crosses_a_module():
    found = set().union(*(private_uses(m) for m in MODULES))
    unexpected = sorted(found - set(PRIVATE_ALLOWED))
    assert not unexpected, "private names imported from another module (make them public where shared):\n" + (
        "\n".join(f"  {a} takes {c} from {b}" for a, b, c in unexpected)
    )
    stale = sorted(set(PRIVATE_ALLOWED) - found)
    assert not stale, f"allow-list entries that no longer occur (remove them): {stale}"


def test_lib_imports_no_domain_or_server_module():
    found = {
        (imp.importer, imp.module)
        for module in MODULES
        if module.startswith("app.lib.")
        for imp in imports_of(module)
        if imp.module.startswith(("app.domain", "app.server"))
    }
    unexpected = sorted(found - set(LIB_TO_DOMAIN_ALLOWED))
    assert not unexpected, f"app/lib must not depend on the domain or the server: {unexpected}"
    stale = sorted(set(LIB_TO_DOMAIN_ALLOWED) - found)
    assert not stale, f"allow-list entries that no longer occur (remove them): {stale}"


def test_domain_imports_no_server_or_cli_module():
    found = sorted(
        (imp.importer, imp.module, imp.line)
        for module in MODULES
        if module.startswith("app.domain.")
        for imp in imports_of(module)
        if imp.module.startswith("app.server") or imp.module == "app.cli"
    )
    assert not found, f"app/domain must not depend on the server or the top-level CLI: {found}"


def test_only_the_server_imports_controllers():
    found = sorted(
        (imp.importer, imp.module, imp.line)
        for module in MODULES
        if not module.startswith("app.server")
        for imp in imports_of(module)
        if imp.module.rsplit(".", 1)[-1] == "controllers" and imp.module != module
    )
    assert not found, f"controllers are wired by app.server only: {found}"


def test_only_the_cli_imports_tools():
    found = sorted(
        (imp.importer, imp.module, imp.line)
        for module in MODULES
        if module != "app.cli" and not module.startswith("app.tools")
        for imp in imports_of(module)
        if imp.module.startswith("app.tools")
    )
    assert not found, f"app/tools is reached from the CLI only: {found}"


def test_no_import_cycle():
    found = set(cycles(import_graph()))
    unexpected = [sorted(c) for c in found - set(CYCLES_ALLOWED)]
    assert not unexpected, f"import cycles (deferred imports included): {unexpected}"
    stale = [sorted(c) for c in set(CYCLES_ALLOWED) - found]
    assert not stale, f"allow-list entries that no longer occur (remove them): {stale}"


# ----------------------------------------------------------------------- the checker finds what it should


@pytest.fixture
def fake_app(tmp_path, monkeypatch):
    """A tiny package tree in place of `app/`, to prove each rule fails when broken."""

    def build(files: dict[str, str]) -> None:
        root = tmp_path / "app"
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        this = sys.modules[__name__]
        monkeypatch.setattr(this, "APP", root)
        monkeypatch.setattr(this, "MODULES", {_module_name(p): p for p in sorted(root.rglob("*.py"))})

    return build


def test_the_checker_sees_private_names_cycles_and_layering(fake_app):
    fake_app(
        {
            "__init__.py": "",
            "lib/__init__.py": "",
            "lib/db.py": "def tx():\n    from app.domain.a.services import run\n",
            "domain/__init__.py": "",
            "domain/a/__init__.py": "",
            "domain/a/services.py": (
                "from typing import TYPE_CHECKING\n"
                "from app.domain.b import services as other\n"
                "if TYPE_CHECKING:\n    from app.domain.b.services import _hidden\n"
                "def run():\n    return other._helper()\n"
            ),
            "domain/b/__init__.py": "",
            "domain/b/services.py": "def go():\n    from app.domain.a.services import run\n",
            "domain/b/controllers.py": "from app.domain.b.services import go\n",
            "domain/b/tasks.py": "from app.domain.b.controllers import go\n",
        }
    )
    assert private_uses("app.domain.a.services") == {
        ("app.domain.a.services", "app.domain.b.services", "_helper")
    }  # the TYPE_CHECKING import is not counted
    assert ("app.lib.db", "app.domain.a.services") in {
        (i.importer, i.module) for i in imports_of("app.lib.db")
    }
    assert cycles(import_graph()) == [frozenset({"app.domain.a.services", "app.domain.b.services"})]
    with pytest.raises(AssertionError, match="controllers are wired"):
        test_only_the_server_imports_controllers()
