"""The wiring list (app/server/wiring.py) is complete and nothing registers itself on import.

Read from the source (ast): every module of `app/` that declares a `@job` is in `JOB_MODULES`, and no
module registers a price hook with a decorator or a module-level call (registration belongs to `wire()`).
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

from app.lib import jobs
from app.server import wiring

APP = Path(__file__).resolve().parents[2] / "app"
_HOOK_REGISTRARS = {"on_price", "on_price_committed", "on_prices_committed", "quiet_band_of"}


def _module(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _name(node: ast.AST) -> str | None:
    node = node.func if isinstance(node, ast.Call) else node
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _scan() -> tuple[set[str], list[str]]:
    declaring: set[str] = set()
    registering: list[str] = []
    for path in sorted(APP.rglob("*.py")):
        module = _module(path)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for deco in node.decorator_list:
                    if _name(deco) == "job" and isinstance(deco, ast.Call):
                        declaring.add(module)
                    if _name(deco) in _HOOK_REGISTRARS:
                        registering.append(f"{module}:{node.lineno} @{_name(deco)}")
        for stmt in tree.body:  # module level: runs on import
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(call, ast.Call) and _name(call) in _HOOK_REGISTRARS:
                registering.append(f"{module}:{stmt.lineno} {_name(call)}(...)")
    return declaring, registering


def test_every_job_module_is_wired_and_nothing_registers_on_import():
    declaring, registering = _scan()
    listed = {m.__name__ for m in wiring.JOB_MODULES}
    assert declaring == listed, (
        f"modules declaring @job, not in wiring.JOB_MODULES: {sorted(declaring - listed)}; "
        f"listed but declaring none: {sorted(listed - declaring)}"
    )
    assert not registering, f"price hooks are registered by wire() only, not on import: {registering}"


def test_register_jobs_refuses_a_module_without_jobs_and_a_name_declared_twice(monkeypatch):
    monkeypatch.setattr(jobs, "REGISTRY", {})
    empty = types.ModuleType("app.domain.nothing")
    with pytest.raises(ValueError, match="declares no @job"):
        jobs.register_jobs(empty)

    def make(module_name: str) -> types.ModuleType:
        module = types.ModuleType(module_name)

        async def fn(ctx):
            return None

        fn.__module__ = module_name
        module.fn = jobs.job("dup.name")(fn)
        return module

    jobs.register_jobs(make("app.domain.first"))
    with pytest.raises(ValueError, match="declared twice"):
        jobs.register_jobs(make("app.domain.second"))
