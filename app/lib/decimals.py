"""Decimals as users read them: plain notation ("100000", "0", "0.0000005"), never "1.0E+5" or "0E-8".

`str(Decimal)` switches to exponent form when the exponent is positive (asyncpg's binary NUMERIC decoder
returns 100000 as Decimal("1.0E+5")) or the value is smaller than 1e-6 (a zero fee kept at the 1e-8 fee
scale is Decimal("0E-8")), and msgspec encodes a Decimal as exactly that string. Two places fix it once:

* the NUMERIC codec (`decode_numeric`, on every database connection: app/lib/db.py) reads PostgreSQL's
  text form, which is plain and keeps the stored scale, and turns the only plain texts whose Decimal
  prints in exponent form (zero or |x| < 1e-6, all starting "0.000000") into their normalised value;
* the JSON encoder (`encode_json`, used by every response and the read-through cache) renders any
  Decimal that would still print in exponent form (made by arithmetic, not read) in plain notation.

A negative zero (-1 * 0.00 is Decimal("-0.00"): the PnL of a short marked at its entry) is dropped where
it is made (`nonnegative_zero`).

msgspec encodes Decimal natively and calls no hook for it, so the encoder checks the encoded bytes for an
exponent ("E+" / "E-", which plain decimals, UUIDs, timestamps and lower-case floats never contain) and
only then re-encodes with those Decimals rendered (converted back from builtins, so a text field that
happens to contain "E+" is re-encoded unchanged); typical answers pay one scan of their bytes.
"""

from __future__ import annotations

import datetime
import re
import uuid
from decimal import Decimal
from typing import Any

import msgspec

_TINY = ("0.000000", "-0.000000")
_ZERO = Decimal(0)


def plain(value: Decimal) -> str:
    """`value` in plain notation; values that already print plainly keep their scale ("1.50"). A negative
    zero (the PnL of a flat short marked at its entry, -1 * 0.00) loses its sign: "-0.00" -> "0.00"."""
    if value.is_signed() and value.is_zero():
        value = value.copy_abs()
    text = str(value)
    if "E" not in text:
        return text
    return format(value.normalize(), "f")  # 1.0E+5 -> "100000", 0E-8 -> "0", 5.0E-7 -> "0.0000005"


# A number in exponent form standing as a word of a message ("quantity 1E-7 is not a multiple of ...", a
# Decimal formatted into an f-string), bounded by spaces, brackets or punctuation: never a part of an
# identifier (a UUID's "12e4" group is joined to its neighbours by hyphens).
_EXPONENT_WORD = re.compile(
    r"(?<![^\s(\[{:,=])([+-]?(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d+)(?=$|[\s)\]},;:%]|\.(?:\s|$))"
)


def _plain_word(match: re.Match[str]) -> str:
    value = Decimal(match.group(1))
    # (a value a plain rendering would spell out in hundreds of digits keeps its exponent)
    return plain(value) if value.is_finite() and -30 <= value.adjusted() <= 30 else match.group(1)


def plain_in_text(text: str) -> str:
    """`text` with every number written in exponent form rendered plainly ("1E-7" -> "0.0000001")."""
    return _EXPONENT_WORD.sub(_plain_word, text) if ("E" in text or "e" in text) else text


def nonnegative_zero(value: Decimal) -> Decimal:
    """`value`, a zero without its sign ("-0.00" -> "0.00", the scale kept)."""
    return value if value or not value.is_signed() else value.copy_abs()


def decode_numeric(text: str, _decimal: type[Decimal] = Decimal) -> Decimal:
    """asyncpg text-format NUMERIC decoder: exact, scale-preserving, and plain when printed where a
    Decimal can be (a zero with more than six places becomes 0; a nonzero below 1e-6 cannot print
    plainly as a Decimal and is left to `encode_json`)."""
    if text.startswith(_TINY):
        value = _decimal(text)
        return value if value else _ZERO
    return _decimal(text)


# Kept as Python objects by to_builtins so the second encoding renders them exactly as the first did.
_KEEP = (Decimal, datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID, bytes)


def _render(tree: Any) -> Any:
    kind = type(tree)
    if kind is Decimal:
        return plain(tree)
    if kind is dict:
        return {key: _render(item) for key, item in tree.items()}
    if kind is list:
        return [_render(item) for item in tree]
    return tree


# Regex rather than `b"E+" in body or b"E-" in body`: its literal-prefix scan is ~5x faster on a 100-order
# page (62 against 294 us here, with the machine loaded; the page's encoding took 458 us).
_EXPONENT = re.compile(rb"E[+-]")


def needs_rendering(body: bytes) -> bool:
    """Whether an encoded body has a Decimal `plain` would write differently (in exponent form). A
    negative zero is not looked for here: a scan for it cost ~95 us on a page of 1,000 candles, where
    every quote starts a match; the arithmetic that can make one (a flat short's PnL) drops the sign
    (`nonnegative_zero`), and `plain` drops it when a body is rendered again anyway."""
    return _EXPONENT.search(body) is not None


def plain_decimals(content: Any, enc_hook: Any = None) -> Any:
    """`content` as builtins with every Decimal rendered by `plain` (for a second, plain encoding)."""
    return _render(msgspec.to_builtins(content, builtin_types=_KEEP, enc_hook=enc_hook))


def json_builtins(content: Any) -> Any:
    """`content` as JSON types (str, int, float, bool, None, list, dict), decimals in plain notation: for
    a JSON column written through SQLAlchemy's default serializer."""
    return _render(msgspec.to_builtins(content, builtin_types=(Decimal,)))


_encoder = msgspec.json.Encoder()


def encode_json(content: Any) -> bytes:
    body = _encoder.encode(content)
    if needs_rendering(body):
        body = _encoder.encode(plain_decimals(content))
    return body
