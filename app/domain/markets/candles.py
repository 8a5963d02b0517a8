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
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
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
_WS = " \t\r\n\x0b\x0c"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)
_INT_LIMIT = 10**MAX_INTEGER_DIGITS
# Price strings repeat heavily in real data (prices move tick by tick, open is often the previous
# close), and a dict hit costs a third of building a Decimal, which is immutable and can be shared.
# When they do not repeat (fine ticks, wild moves), the misses cost more than they save and fill
# memory, so a stream that misses too often stops interning. The cache is trimmed between slices.
_SLICE_LINES = 8_192
_INTERN_MAX_ENTRIES = 50_000
_INTERN_MAX_MISS_RATE = 0.5
_INTERN_PROBE_LOOKUPS = 20_000
_TF_NAMES = {seconds: name for name, seconds in TIMEFRAMES.items()}

_DECIMAL_RE = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?", re.ASCII)
_EPOCH_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
# RFC 3339 date-time, or a bare date ("2026-01-01": midnight UTC, what a daily candle's ts means).
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|([+-])([0-9]{2}):([0-9]{2}))?)?",
    re.ASCII,
)

# The common shape of a CSV line, accepted without the general parser. It must accept only lines that
# `validate_row` accepts as well (a property test checks this); anything else takes the slow path,
# which alone produces errors. A number field is any run of digits and dots: `Decimal` rejects the
# malformed ones, and at most 19 characters keeps it within MAX_SCALE and MAX_INTEGER_DIGITS. Capture
# groups dominate the cost of the match, hence the loose classes; possessive repeats avoid backtracking.
_FAST_LINE_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z|[0-9]{1,11}+)"
    + r",([0-9.]{1,19}+)" * 5
    + r"\r?",
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


def _format_ts(dt: datetime) -> str:
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
        text = value.strip(_WS)
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


def _check_header_line(line: str) -> None:
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise CandleValidationError(0, f"line longer than {MAX_LINE_BYTES} bytes")
    got = line.removeprefix("\ufeff").strip(_WS)
    if got != CSV_HEADER:
        raise CandleValidationError(0, f"bad header: expected {CSV_HEADER!r}, got {_short(got)}")


def check_csv_header(first_line: bytes) -> None:
    """`CandleValidationError` (row 0) unless `first_line` is the CSV header (BOM and spaces allowed)."""
    try:
        text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        raise CandleValidationError(0, "invalid UTF-8") from None
    _check_header_line(text)


def _epoch_of(dt: datetime) -> tuple[int, int]:
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
        text = value.strip(_WS)
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
    seconds, micros = _epoch_of(dt)
    if micros or seconds % tf_seconds:
        raise CandleValidationError(
            row, f"ts {_format_ts(dt)} is not aligned to the {_tf_name(tf_seconds)} timeframe", "ts"
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
        epoch = _epoch_of(candle.ts)[0]
        first = seen.setdefault(epoch, index)
        if first != index:
            raise CandleValidationError(
                index, f"duplicate ts {_format_ts(candle.ts)} (same as row {first})", "ts"
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


class CandleCsvParser:
    """Incremental CSV parser behind `parse_csv_stream`, usable without an event loop.

    Feed raw bytes in chunks of any size (lines and multi-byte characters may straddle chunks), then
    call `close`. Both return iterators of full batches that must be exhausted before the next call.
    Batches hold exactly ``batch_size`` rows except the last one, whatever the chunking, and keep file
    order. Duplicate detection spans the whole stream and keeps one int per row.
    """

    def __init__(self, timeframe: str, batch_size: int = 50_000) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self._tf = timeframe_seconds(timeframe)
        self._batch_size = batch_size
        self._pending = b""
        self._next_row = 0  # row number of the first line in `_pending`
        self._seen: set[int] = set()
        self._batch: list[CandleRow] = []
        self._cache: dict[str, Decimal] | None = {}
        self._lookups = self._misses = 0
        self._closed = False

    def feed(self, chunk: bytes) -> Iterator[list[CandleRow]]:
        if self._closed:
            raise RuntimeError("parser is closed")
        if not chunk:
            return
        data = self._pending + chunk if self._pending else bytes(chunk)
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
        else:
            self._pending = data[cut + 1 :]
            yield from self._block(data[:cut])
        if len(self._pending) > MAX_LINE_BYTES:
            raise CandleValidationError(self._next_row, f"line longer than {MAX_LINE_BYTES} bytes")

    def close(self) -> Iterator[list[CandleRow]]:
        if self._closed:
            return
        self._closed = True
        if self._pending or self._next_row == 0:
            # Without a trailing newline the last line is still pending; an empty input has no header.
            yield from self._block(self._pending)
            self._pending = b""
        if self._batch:
            batch, self._batch = self._batch, []
            yield batch

    def _block(self, block: bytes) -> Iterator[list[CandleRow]]:
        """Complete lines (joined by ``\\n``, no trailing newline) starting at ``self._next_row``."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Lines before the bad one are parsed first so that the reported error is the earliest
            # bad row, as it would be had the chunks ended elsewhere.
            start = block.rfind(b"\n", 0, exc.start) + 1
            if start:
                yield from self._block(block[: start - 1])
            end = block.find(b"\n", exc.start)
            length = (len(block) if end < 0 else end) - start
            if length > MAX_LINE_BYTES:
                raise CandleValidationError(
                    self._next_row, f"line longer than {MAX_LINE_BYTES} bytes"
                ) from None
            raise CandleValidationError(self._next_row, "invalid UTF-8") from exc
        lines = text.split("\n")
        row = self._next_row
        if row == 0:
            self._header(lines[0])
            lines = lines[1:]
            row = 1
        self._next_row = row + len(lines)
        pos = 0
        size = self._batch_size
        while pos < len(lines):
            take = min(size - len(self._batch), _SLICE_LINES)
            cache = self._cache
            if cache is not None and len(cache) > _INTERN_MAX_ENTRIES:
                cache.clear()
            cached_before, rows_before = len(cache or ()), len(self._batch)
            _parse_lines(lines[pos : pos + take], row + pos, self._tf, self._seen, self._batch, cache)
            pos += take
            if cache is not None:
                self._lookups += 4 * (len(self._batch) - rows_before)
                self._misses += len(cache) - cached_before
                if self._lookups >= _INTERN_PROBE_LOOKUPS:
                    if self._misses > self._lookups * _INTERN_MAX_MISS_RATE:
                        self._cache = None
                    self._lookups = self._misses = 0
            if len(self._batch) >= size:
                batch, self._batch = self._batch, []
                yield batch

    def _header(self, line: str) -> None:
        _check_header_line(line)


# The frozen dataclass __init__ sets each field through object.__setattr__ (~0.6 us, a quarter of a
# parsed row); writing the slots through their descriptors builds the identical object in half the time.
_SLOT_SETTERS = tuple(getattr(CandleRow, name).__set__ for name in COPY_COLUMNS)


def _parse_lines(
    lines: list[str],
    first_row: int,
    tf: int,
    seen: set[int],
    out: list[CandleRow],
    cache: dict[str, Decimal] | None,
) -> None:
    # Hot loop: names are bound locally because attribute and global lookups dominate at this size.
    interning = cache is not None
    cached = cache.get if cache is not None else None
    fast_match = _FAST_LINE_RE.fullmatch
    dec = Decimal
    from_iso = datetime.fromisoformat
    from_ts = datetime.fromtimestamp
    utc = UTC
    zero = _ZERO
    new = object.__new__
    set_ts, set_open, set_high, set_low, set_close, set_volume = _SLOT_SETTERS
    seen_add = seen.add
    append = out.append
    row = first_row - 1
    for line in lines:
        row += 1
        match = fast_match(line)
        if match is not None:
            ts_text, o_text, h_text, l_text, c_text, v_text = match.groups()
            try:
                if interning:
                    o = cached(o_text)
                    if o is None:
                        o = cache[o_text] = dec(o_text)
                    h = cached(h_text)
                    if h is None:
                        h = cache[h_text] = dec(h_text)
                    lo = cached(l_text)
                    if lo is None:
                        lo = cache[l_text] = dec(l_text)
                    c = cached(c_text)
                    if c is None:
                        c = cache[c_text] = dec(c_text)
                else:
                    o = dec(o_text)
                    h = dec(h_text)
                    lo = dec(l_text)
                    c = dec(c_text)
                v = dec(v_text)
                if ts_text[-1] == "Z":
                    dt = from_iso(ts_text)
                    epoch = int(dt.timestamp())
                else:
                    epoch = int(ts_text)
                    dt = from_ts(epoch, utc)
            except (ArithmeticError, ValueError):
                pass  # "1.2.3", February 30th, ...: the slow path words the error
            else:
                if lo <= o <= h and lo <= c <= h and lo > zero:
                    if not epoch % tf and epoch not in seen:
                        seen_add(epoch)
                        candle = new(CandleRow)
                        set_ts(candle, dt)
                        set_open(candle, o)
                        set_high(candle, h)
                        set_low(candle, lo)
                        set_close(candle, c)
                        set_volume(candle, v)
                        append(candle)
                        continue
        _parse_line_slow(line, row, tf, seen, out)


def _parse_line_slow(line: str, row: int, tf: int, seen: set[int], out: list[CandleRow]) -> None:
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise CandleValidationError(row, f"line longer than {MAX_LINE_BYTES} bytes")
    text = line.strip(_WS)
    if not text:
        return
    fields = text.split(",")
    if len(fields) != 6:
        raise CandleValidationError(row, f"expected 6 columns, got {len(fields)}")
    candle = validate_row(row, *fields, tf)
    epoch = _epoch_of(candle.ts)[0]
    if epoch in seen:
        raise CandleValidationError(row, f"duplicate ts {_format_ts(candle.ts)}", "ts")
    seen.add(epoch)
    out.append(candle)


async def parse_csv_stream(
    chunks: AsyncIterator[bytes] | AsyncIterable[bytes], timeframe: str, batch_size: int = 50_000
) -> AsyncIterator[list[CandleRow]]:
    """Parse a ``text/csv`` candle upload as it arrives, yielding validated batches in file order.

    The body is strict UTF-8 (an optional BOM is dropped) with ``\\n`` or ``\\r\\n`` line ends; the
    first line must be ``ts,open,high,low,close,volume`` (surrounding whitespace allowed), else a
    `CandleValidationError` for row 0. An input with a header and no rows yields nothing.

    Errors are raised when the bad row is reached, after earlier batches were yielded: a caller that
    must reject the whole upload writes the batches inside one transaction and rolls it back on error.
    Each chunk is parsed synchronously (a few microseconds per row), so pass bounded chunks, such as
    the ASGI body stream, rather than a whole large body at once, to keep the event loop responsive.
    An unknown ``timeframe`` or a bad ``batch_size`` is a ``ValueError`` on the first iteration.
    """
    parser = CandleCsvParser(timeframe, batch_size)
    async for chunk in chunks:
        for batch in parser.feed(chunk):
            yield batch
    for batch in parser.close():
        yield batch
