"""OHLCV candle validation and streaming CSV parsing (pure: no database, no web framework).

Rules a candle must satisfy (API.md, "Exchanges, instruments, market data"); any violation rejects the
whole upload and names the row:

- ``ts``: an RFC 3339 string (``2026-01-01T00:00:00Z``, ``...+05:30``; ``T``, ``t`` or a space between
  date and time; fractional seconds allowed but must be zero) or integer epoch seconds (an ``int`` or a
  string of digits, negative before 1970). Offsets are normalised to UTC; a string without an offset
  is taken as UTC. Leap seconds (``:60``) are rejected. ``ts`` must sit on the timeframe grid: epoch
  seconds divisible by the timeframe, so ``1d`` candles start at UTC midnight and ``4h`` candles at
  00, 04, ... UTC.
- ``open``, ``high``, ``low``, ``close`` > 0 and ``volume`` >= 0, each a decimal string
  (``"101.25"``, ``"101"``, ``"+101.25"``, ``".5"``; no exponent, no NaN/Infinity, no ``_``) or an
  ``int``; floats are refused because they already lost the exact value. They must fit the
  ``NUMERIC(38, 18)`` column: at most 18 digits after the point and an absolute value below 10**20,
  so the database never rounds silently (DOMAIN.md, "Money").
- ``high >= low``, ``high >= max(open, close)``, ``low <= min(open, close)``.
- No two candles of one upload share a ``ts``; the second one is the bad row.

ASCII whitespace (spaces, tabs) around a field is ignored; other characters never are.

The streaming CSV parser that applies these rules to uploads lives in candle_csv.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3_600,
    "4h": 14_400,
    "1d": 86_400,
}

CSV_HEADER = "ts,open,high,low,close,volume"
COPY_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")

# The `candles` columns are NUMERIC(38, 18) (app/lib/db.py): anything finer or larger would be rounded
# or overflow inside PostgreSQL instead of being rejected here with a row number.
MAX_SCALE = 18
MAX_INTEGER_DIGITS = 20

# Longer lines cannot be valid candles; the cap keeps a newline-free stream from growing the buffer
# without bound.
MAX_LINE_BYTES = 4_096

# Only ASCII whitespace: str.strip() would also drop e.g. NO-BREAK SPACE, which no CSV writer emits by
# accident and which would otherwise pass as padding.
WHITESPACE = " \t\r\n\x0b\x0c"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)
_INT_LIMIT = 10**MAX_INTEGER_DIGITS
_TF_NAMES = {seconds: name for name, seconds in TIMEFRAMES.items()}

_DECIMAL_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?", re.ASCII)
_EPOCH_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
# RFC 3339 date-time, or a bare date ("2026-01-01": midnight UTC, what a daily candle's ts means).
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|([+-])([0-9]{2}):([0-9]{2}))?)?",
    re.ASCII,
)

@dataclass(slots=True, frozen=True)
class CandleRow:
    ts: datetime  # UTC, aware
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandleValidationError(Exception):
    """An invalid candle, or an invalid CSV upload.

    ``row`` is the 1-based data row. For CSV the header is row 0 and data row ``n`` is line ``n + 1`` of
    the file (blank lines are skipped but still counted, so the number always matches the line an
    editor shows). For a JSON/list batch it is the 1-based position in the list. ``field`` names the
    offending column when there is one (``None`` for whole-line problems: header, encoding, column
    count); ``reason`` is the full human-readable message, which already names the field.
    """

    def __init__(self, row: int, reason: str, field: str | None = None) -> None:
        super().__init__(row, reason, field)
        self.row = row
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


def timeframe_seconds(timeframe: str) -> int:
    """Seconds of a named timeframe; ``ValueError`` for names outside `TIMEFRAMES`."""
    try:
        return TIMEFRAMES[timeframe]
    except (KeyError, TypeError):
        allowed = ", ".join(TIMEFRAMES)
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {allowed}") from None


def _tf_name(seconds: int) -> str:
    return _TF_NAMES.get(seconds, f"{seconds}s")


def format_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_large(row: int, field: str) -> CandleValidationError:
    return CandleValidationError(row, f"{field} is too large (must be below 1e{MAX_INTEGER_DIGITS})", field)


def _too_fine(row: int, field: str) -> CandleValidationError:
    return CandleValidationError(
        row, f"{field} has more than {MAX_SCALE} digits after the decimal point", field
    )


def _parse_decimal(row: int, field: str, value: object) -> Decimal:
    if isinstance(value, str):
        text = value.strip(WHITESPACE)
        match = _DECIMAL_RE.fullmatch(text)
        if not text or match is None or not (match[2] or match[3]):
            if not text:
                raise CandleValidationError(row, f"{field} is empty", field)
            raise CandleValidationError(row, f"{field} is not a decimal number: {_short(value)}", field)
        if match[3] and len(match[3]) > MAX_SCALE:
            raise _too_fine(row, field)
        if len(match[2].lstrip("0")) > MAX_INTEGER_DIGITS:
            raise _too_large(row, field)
        number = Decimal(text)
    elif isinstance(value, bool):
        raise CandleValidationError(row, f"{field} is not a decimal number: {value!r}", field)
    elif isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise _too_large(row, field)
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise CandleValidationError(row, f"{field} is not a finite number: {value}", field)
        if value.as_tuple().exponent < -MAX_SCALE:  # type: ignore[operator]
            raise _too_fine(row, field)
        if value and value.adjusted() >= MAX_INTEGER_DIGITS:
            raise _too_large(row, field)
        number = value
    elif value is None:
        raise CandleValidationError(row, f"{field} is missing", field)
    elif isinstance(value, float):
        raise CandleValidationError(
            row, f"{field} must be a decimal string or an integer, not a float ({value!r})", field
        )
    else:
        raise CandleValidationError(
            row, f"{field} must be a decimal string or an integer, not {type(value).__name__}", field
        )
    if not number:
        number = number.copy_abs()  # "-0" is zero; keep the sign out of the database
    if field == "volume":
        if number < _ZERO:
            raise CandleValidationError(row, f"volume must be >= 0, got {number}", field)
    elif number <= _ZERO:
        raise CandleValidationError(row, f"{field} must be > 0, got {number}", field)
    return number


def check_header_line(line: str) -> None:
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise CandleValidationError(0, f"line longer than {MAX_LINE_BYTES} bytes")
    got = line.removeprefix("\ufeff").strip(WHITESPACE)
    if got != CSV_HEADER:
        raise CandleValidationError(0, f"bad header: expected {CSV_HEADER!r}, got {_short(got)}")


def check_csv_header(first_line: bytes) -> None:
    """`CandleValidationError` (row 0) unless `first_line` is the CSV header (BOM and spaces allowed)."""
    try:
        text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        raise CandleValidationError(0, "invalid UTF-8") from None
    check_header_line(text)


def epoch_of(dt: datetime) -> tuple[int, int]:
    delta = dt - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds


def _parse_rfc3339(row: int, value: str) -> datetime:
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise CandleValidationError(
            row, f"ts is not an RFC 3339 timestamp, a date or epoch seconds: {_short(value)}", "ts"
        )
    year, month, day, hour, minute, second = (int(match[i] or 0) for i in range(1, 7))
    fraction = (match[7] or ".")[1:]
    micro = int(fraction[:6].ljust(6, "0"))
    if not micro and fraction[6:].strip("0"):
        micro = 1  # below a microsecond, yet still off every (whole-minute) grid
    tz = UTC
    if match[9]:
        off_h, off_m = int(match[10]), int(match[11])
        if off_h > 23 or off_m > 59:
            raise CandleValidationError(row, f"ts has an invalid UTC offset: {_short(value)}", "ts")
        offset = timedelta(hours=off_h, minutes=off_m)
        tz = timezone(-offset if match[9] == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):
        raise CandleValidationError(row, f"ts is not a valid timestamp: {_short(value)}", "ts") from None


def _parse_ts(row: int, value: object, tf_seconds: int) -> datetime:
    if isinstance(value, str):
        text = value.strip(WHITESPACE)
        value = int(text) if _EPOCH_RE.fullmatch(text) else _parse_rfc3339(row, text)
    if isinstance(value, datetime):
        dt = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            dt = datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            raise CandleValidationError(row, f"ts is out of range: {value}", "ts") from None
    elif value is None:
        raise CandleValidationError(row, "ts is missing", "ts")
    else:
        raise CandleValidationError(
            row, f"ts must be an RFC 3339 string or integer epoch seconds, not {_short(value)}", "ts"
        )
    seconds, micros = epoch_of(dt)
    if micros or seconds % tf_seconds:
        raise CandleValidationError(
            row, f"ts {format_ts(dt)} is not aligned to the {_tf_name(tf_seconds)} timeframe", "ts"
        )
    return dt


def validate_row(
    index: int,
    ts: object,
    open: object,
    high: object,
    low: object,
    close: object,
    volume: object,
    timeframe_seconds: int,
) -> CandleRow:
    """Validate one candle given as raw values (strings, ints, `Decimal`/`datetime`); see the module doc.

    ``index`` is only used to name the row in a `CandleValidationError`. The first failing rule wins,
    checked in column order and then ``high < low``, ``high < open/close``, ``low > open/close``.
    """
    if (
        isinstance(timeframe_seconds, bool)
        or not isinstance(timeframe_seconds, int)
        or timeframe_seconds <= 0
    ):
        raise ValueError(f"timeframe_seconds must be a positive int, got {timeframe_seconds!r}")
    dt = _parse_ts(index, ts, timeframe_seconds)
    o = _parse_decimal(index, "open", open)
    h = _parse_decimal(index, "high", high)
    lo = _parse_decimal(index, "low", low)
    c = _parse_decimal(index, "close", close)
    v = _parse_decimal(index, "volume", volume)
    if h < lo:
        raise CandleValidationError(index, "high < low", "high")
    if h < o:
        raise CandleValidationError(index, "high < open", "high")
    if h < c:
        raise CandleValidationError(index, "high < close", "high")
    if lo > o:
        raise CandleValidationError(index, "low > open", "low")
    if lo > c:
        raise CandleValidationError(index, "low > close", "low")
    return CandleRow(dt, o, h, lo, c, v)


def _row_values(index: int, raw: object) -> Sequence[object]:
    if isinstance(raw, CandleRow):
        return (raw.ts, raw.open, raw.high, raw.low, raw.close, raw.volume)
    if isinstance(raw, Mapping):
        # Unknown keys are ignored; a misspelt column still fails as "missing".
        return tuple(raw.get(name) for name in COPY_COLUMNS)
    if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        if len(raw) != 6:
            raise CandleValidationError(
                index, f"expected 6 values (ts, open, high, low, close, volume), got {len(raw)}"
            )
        return raw
    raise CandleValidationError(
        index, f"a candle must be an object or a 6-item array, not {type(raw).__name__}"
    )


def validate_batch(
    rows: Iterable[Mapping[str, Any] | Sequence[Any] | CandleRow], timeframe: str
) -> list[CandleRow]:
    """Validate a whole upload (JSON objects, 6-tuples or `CandleRow`s) and return it sorted by ``ts``.

    Raises on the first bad row (1-based position in ``rows``); a repeated ``ts`` names the later row.
    An unknown ``timeframe`` is a ``ValueError``.
    """
    tf = timeframe_seconds(timeframe)
    seen: dict[int, int] = {}
    out: list[CandleRow] = []
    for index, raw in enumerate(rows, start=1):
        candle = validate_row(index, *_row_values(index, raw), tf)
        epoch = epoch_of(candle.ts)[0]
        first = seen.setdefault(epoch, index)
        if first != index:
            raise CandleValidationError(
                index, f"duplicate ts {format_ts(candle.ts)} (same as row {first})", "ts"
            )
        out.append(candle)
    out.sort(key=lambda candle: candle.ts)
    return out


def to_copy_records(rows: Iterable[CandleRow], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Tuples in `COPY_COLUMNS` order for ``asyncpg``'s ``copy_records_to_table``.

    ``prefix`` values are prepended to every tuple, for the key columns the caller adds (e.g.
    ``("BTC-USD", "1d")`` with ``columns=("symbol", "timeframe", *COPY_COLUMNS)``).
    """
    return [(*prefix, r.ts, r.open, r.high, r.low, r.close, r.volume) for r in rows]


def to_copy_csv(rows: Iterable[CandleRow], prefix: tuple[str, ...] = ()) -> bytes:
    """The rows as CSV for ``COPY ... FROM STDIN (FORMAT csv)`` in `COPY_COLUMNS` order after ``prefix``.

    Text COPY instead of asyncpg's binary `copy_records_to_table`: encoding Decimals to binary NUMERIC
    in Python was the largest single cost of a bulk load (measured 7.7 s of 15.6 s for 1M rows), while
    ``str(Decimal)`` is exact and cheap and PostgreSQL parses the text in C. Prefix values must not
    need CSV quoting (symbols and timeframes are validated to plain tokens).
    """
    head = ",".join(prefix) + "," if prefix else ""
    return "".join(
        f"{head}{r.ts.isoformat()},{r.open},{r.high},{r.low},{r.close},{r.volume}\n" for r in rows
    ).encode()
