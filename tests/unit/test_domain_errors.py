"""Domain errors (app/lib/errors/domain.py): one table gives each kind of failure its status, and the
problem body is the one `ApiError` builds for that status (type, title, status, detail, errors, members)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.lib import errors
from app.lib.errors import PROBLEMS, TITLES, TYPE_BASE, ApiError, DomainError

APP = Path(__file__).resolve().parents[2] / "app"


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def _body(exc: ApiError) -> dict:
    head = {"type": exc.type_, "title": exc.title, "status": exc.status_code, "detail": exc.detail}
    return {**head, **(exc.extra or {})}


@pytest.mark.parametrize("cls", _subclasses(DomainError), ids=lambda c: c.__name__)
def test_each_named_error_answers_the_problem_of_its_kind(cls):
    status = PROBLEMS[cls.kind]
    exc = cls("Instrument") if issubclass(cls, errors.NotFound) else cls("it broke")
    assert isinstance(exc, ApiError) and exc.status_code == status
    assert _body(exc) == _body(ApiError(status, exc.detail))
    assert exc.title == TITLES[status]


def test_fields_slugs_and_members_keep_their_shape():
    assert _body(errors.Invalid("price is off tick", "price")) == {
        "type": TYPE_BASE + "validation-error",
        "title": "Unprocessable content",
        "status": 422,
        "detail": "price is off tick",
        "errors": [{"field": "price", "message": "price is off tick"}],
    }
    rows = [{"field": "candles[3]", "message": "x"}]
    custom = errors.Invalid("bad row", slug="invalid-candles", errors=rows, row=3)
    assert _body(custom) == _body(ApiError(422, "bad row", slug="invalid-candles", errors=rows, row=3))
    assert _body(errors.NotFound("Instrument"))["detail"] == "Instrument not found"
    assert _body(errors.Conflict("revoked", successor_id="k"))["successor_id"] == "k"
    limited = errors.RateLimited("slow down", headers={"Retry-After": "3"})
    assert limited.status_code == 429 and limited.headers == {"Retry-After": "3"}
    # the helpers the other areas call build the same errors
    assert _body(errors.not_found("Job")) == _body(errors.NotFound("Job"))
    assert _body(errors.invalid("x", "f", slug="s", n=1)) == _body(errors.Invalid("x", "f", slug="s", n=1))
    assert _body(errors.conflict("c", k="v")) == _body(errors.Conflict("c", k="v"))


def test_every_kind_has_a_status_and_every_status_a_title():
    kinds = {cls.kind for cls in _subclasses(DomainError)}
    assert kinds == set(PROBLEMS)
    assert set(PROBLEMS.values()) <= set(TITLES)


def _api_error_calls(area: Path) -> list[str]:
    return [
        f"{path.relative_to(APP.parent)}:{node.lineno}"
        for path in sorted(area.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError"
    ]


def test_domain_code_raises_domain_errors_not_http_statuses():
    found = _api_error_calls(APP / "domain")
    assert not found, f"raise a named error (app/lib/errors/domain.py), not ApiError(status, ...): {found}"
