"""The request class of the app: Litestar's, with JSON body decoding that never ends in a 500.

msgspec reports malformed JSON as a DecodeError (Litestar answers 400), but a body nested deeper than its
recursion limit raises RecursionError and bytes that are not UTF-8 raise UnicodeDecodeError; both would
reach the generic handler as 500s. Every route that reads a JSON body (`data: ...`) decodes it here, and
every undecodable body is the same 400 problem naming the field `body`. Decimal strings are checked
against the documented pattern here too, before msgspec hands them to a lenient `Decimal()`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException

from app.lib.errors import ApiError, body_decode_error
from app.lib.openapi_schema import DECIMAL_PATTERN


class ApiRequest(Request):
    __slots__ = ()

    async def json(self) -> Any:
        try:
            data = await super().json()
        except (RecursionError, UnicodeDecodeError) as exc:
            raise body_decode_error(exc) from None
        except SerializationException as exc:  # Litestar's own 400 would carry no `errors` member
            message = f"Malformed JSON: {exc.detail or exc}"
            raise ApiError(400, message, errors=[{"field": "body", "message": message}]) from None
        field = self.route_handler.parsed_data_field
        if field is not None:
            check_decimal_strings(data, decimal_paths(field.annotation))
        return data


# ----------------------------------------------------------------------------- decimal strings, exactly

# The documented pattern of a decimal string (app/lib/openapi_schema.py), in ASCII: Python's Decimal()
# (what msgspec calls) also takes "1_000", Arabic-Indic or full-width digits and surrounding spaces.
_DECIMAL_TEXT = re.compile(DECIMAL_PATTERN, re.ASCII)


def _decimal_paths(info: msgspec.inspect.Type, seen: set[int]) -> Any:
    """A tree of where Decimals sit in a body type: True (here), {field: subtree}, ("*", subtree) for
    every item of an array or value of an object, or None (nowhere)."""
    if isinstance(info, msgspec.inspect.DecimalType):
        return True
    if isinstance(info, msgspec.inspect.StructType):
        if id(info.cls) in seen:  # recursive types: not in this API, and never descended twice
            return None
        seen = seen | {id(info.cls)}
        fields = {
            f.encode_name: sub for f in info.fields if (sub := _decimal_paths(f.type, seen)) is not None
        }
        return fields or None
    if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.FrozenSetType)):
        sub = _decimal_paths(info.item_type, seen)
        return ("*", sub) if sub is not None else None
    if isinstance(info, msgspec.inspect.DictType):
        sub = _decimal_paths(info.value_type, seen)
        return ("*", sub) if sub is not None else None
    if isinstance(info, msgspec.inspect.UnionType):
        subs = [s for t in info.types if (s := _decimal_paths(t, seen)) is not None]
        if not subs:
            return None
        if len(subs) == 1 or all(s is True for s in subs):
            return subs[0]
        merged: dict[str, Any] = {}
        for s in subs:  # a union of several structs: any of their fields may hold a decimal
            if isinstance(s, dict):
                merged.update(s)
        return merged or subs[0]
    return None


@lru_cache(maxsize=256)
def decimal_paths(body_type: Any) -> Any:
    try:
        return _decimal_paths(msgspec.inspect.type_info(body_type), set())
    except (TypeError, ValueError):  # a type msgspec cannot describe reads no Decimals
        return None


def check_decimal_strings(value: Any, paths: Any, where: str = "") -> None:
    """Raise a 422 naming the field when a string at a Decimal position is not the documented pattern."""
    if paths is None or value is None:
        return
    if paths is True:
        if isinstance(value, str) and not _DECIMAL_TEXT.match(value):
            message = f'`{where or "body"}` must be a decimal string like "100.25" (ASCII digits, no spaces)'
            raise ApiError(422, message, errors=[{"field": where or "body", "message": message}])
        return
    if isinstance(paths, tuple):
        items = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        for key, item in items:
            check_decimal_strings(
                item, paths[1], f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
            )
        return
    if isinstance(value, dict):
        for name, sub in paths.items():
            if name in value:
                check_decimal_strings(value[name], sub, f"{where}.{name}" if where else name)
