"""The request class of the app: Litestar's, with JSON body decoding that never ends in a 500.

msgspec reports malformed JSON as a DecodeError (Litestar answers 400), but a body nested deeper than its
recursion limit raises RecursionError and bytes that are not UTF-8 raise UnicodeDecodeError; both would
reach the generic handler as 500s. Every route that reads a JSON body (`data: ...`) decodes it here, and
every undecodable body is the same 400 problem naming the field `body`. Decimal strings are checked
against the documented pattern here too, before msgspec hands them to a lenient `Decimal()`.

Litestar parses a body into plain Python values first and converts them to the handler's type after, so
a JSON number would reach a Decimal field as a float (`1e2` as "100.0", the 17th digit gone). A body
whose type holds a Decimal is parsed with msgspec's `float_hook=Decimal` instead (every non-integer number
as the exact Decimal of its digits), and every number that does not sit at a Decimal position is turned
back into the float the handler has always seen (`exact_numbers`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException
from litestar.types import Empty

from app.lib.errors import ApiError, body_decode_error
from app.lib.openapi_schema import DECIMAL_PATTERN
from app.lib.validation import check_decimal


class ApiRequest(Request):
    __slots__ = ()

    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        paths = decimal_paths(field.annotation) if field is not None else None
        try:
            if paths is None:
                return await super().json()
            # Litestar's Request.json with the exact parse, cached where it caches its own.
            if self._json is Empty:
                if (cached := self._connection_state.json) is not Empty:
                    self._json = cached
                else:
                    data = exact_numbers(_exact_decode(await self.body() or b"null"), paths)
                    self._json = self._connection_state.json = data
            return self._json
        except (RecursionError, UnicodeDecodeError) as exc:
            raise body_decode_error(exc) from None
        except (SerializationException, msgspec.DecodeError) as exc:  # Litestar's 400 has no `errors` member
            message = f"Malformed JSON: {getattr(exc, 'detail', None) or exc}"
            raise ApiError(400, message, errors=[{"field": "body", "message": message}]) from None


_exact_decode = msgspec.json.Decoder(float_hook=Decimal).decode


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


def _child(where: str, key: Any) -> str:
    return f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)


def exact_numbers(value: Any, paths: Any, where: str = "") -> Any:
    """`value` (parsed with numbers as Decimals) as the handler reads it: at a Decimal position of the body
    type (`paths`, decimal_paths) a number stays the exact Decimal and a string must be the documented
    pattern (else a 422 naming the field); everywhere else a number is a float again."""
    if paths is True:
        check_decimal_strings(value, True, where)
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        fields = paths if isinstance(paths, dict) else {}
        for key, item in value.items():
            sub = paths[1] if isinstance(paths, tuple) else fields.get(key)
            if sub is not None or isinstance(item, (dict, list, Decimal)):
                value[key] = exact_numbers(item, sub, _child(where, key))  # (same keys: no resize)
    elif isinstance(value, list):
        sub = paths[1] if isinstance(paths, tuple) else None
        for i, item in enumerate(value):
            if sub is not None or isinstance(item, (dict, list, Decimal)):
                value[i] = exact_numbers(item, sub, _child(where, i))
    return value


def decimal_query(request: Request, name: str, value: Decimal | None) -> Decimal | None:
    """A Decimal query parameter as a body field is checked: its text the documented pattern (Litestar's
    conversion is Python's lenient `Decimal()`, which takes "1_0" and " 5"), its value finite, under 1e20
    and with at most 18 places."""
    if value is not None:
        check_decimal_strings(request.query_params.get(name), True, name)
        check_decimal(name, value)
    return value


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
