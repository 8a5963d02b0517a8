"""The request class of the app: Litestar's, with JSON body decoding that never ends in a 500.

msgspec reports malformed JSON as a DecodeError (Litestar answers 400), but a body nested deeper than its
recursion limit raises RecursionError and bytes that are not UTF-8 raise UnicodeDecodeError; both would
reach the generic handler as 500s. Every route that reads a JSON body (`data: ...`) decodes it here, and
every undecodable body is the same 400 problem naming the field `body`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from app.lib.errors import ApiError, body_decode_error


class ApiRequest(Request):
    __slots__ = ()

    async def json(self) -> Any:
        try:
            return await super().json()
        except (RecursionError, UnicodeDecodeError) as exc:
            raise body_decode_error(exc) from None
        except SerializationException as exc:  # Litestar's own 400 would carry no `errors` member
            message = f"Malformed JSON: {exc.detail or exc}"
            raise ApiError(400, message, errors=[{"field": "body", "message": message}]) from None
