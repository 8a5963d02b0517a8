"""Constraints msgspec cannot express on Decimal fields (its Meta bounds accept only int/float types).

Call from a Struct's `__post_init__`: a ValueError there becomes a 400 with the field named. The one rule
the OpenAPI document cannot state at all, at most 18 decimal places (a JSON number's precision has no
exact `multipleOf`, and the string pattern accepts any number of digits), is a 422 naming the field: the
request matches the document and breaks a rule (docs/DECISIONS.md, "400 or 422"). It is raised as an
ApiError, which msgspec lets through `__post_init__` unchanged (only ValueError/TypeError become its 400).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from app.lib.errors import ApiError


def _absent(value: Any) -> bool:
    """An optional field left out, or a patch's field not sent (by identity: a signalling NaN cannot be
    compared with ==)."""
    return value is None or value is msgspec.UNSET


def _finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise ValueError(f"`{name}` must be a finite decimal")
    if value.as_tuple().exponent < -18:  # type: ignore[operator]
        message = f"`{name}` has more than 18 decimal places"
        raise ApiError(422, message, errors=[{"field": name, "message": message}])
    # By exponent, not by arithmetic: `abs()` of a decoded ".5E+31402557204" overflows the decimal context
    # (a 500 found by schemathesis); adjusted() is the exponent of the leading digit, no arithmetic.
    if value and value.adjusted() >= 20:
        raise ValueError(f"`{name}` is too large")


def check_decimal(name: str, value: Decimal) -> None:
    """The rules of `_finite` for a value outside a Struct (a query parameter): every failure an ApiError
    naming `name` (400 for a value no decimal field takes, 422 for more than 18 places)."""
    try:
        _finite(name, value)
    except ValueError as exc:
        raise ApiError(400, str(exc), errors=[{"field": name, "message": str(exc)}]) from None


def positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if _absent(value):
            continue
        _finite(name, value)
        if value <= 0:
            raise ValueError(f"`{name}` must be greater than 0")


def non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if _absent(value):
            continue
        _finite(name, value)
        if value < 0:
            raise ValueError(f"`{name}` must be 0 or greater")


def at_most(obj: Any, name: str, bound: Decimal) -> None:
    value = getattr(obj, name)
    if not _absent(value) and value > bound:
        raise ValueError(f"`{name}` must be at most {bound}")
