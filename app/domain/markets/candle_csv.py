"""Streaming CSV parsing of candle uploads: bytes in, validated `CandleRow` batches out (pure).

The rules are those of candles.py (`validate_row`); this module only makes applying them to a large
upload fast: a loose regular expression takes the common line shape, everything else (and every error)
goes through `validate_row`, and repeated price strings share one `Decimal`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal

from app.domain.markets.candles import (
    COPY_COLUMNS,
    MAX_LINE_BYTES,
    WHITESPACE,
    CandleRow,
    CandleValidationError,
    check_header_line,
    epoch_of,
    format_ts,
    timeframe_seconds,
    validate_row,
)

_ZERO = Decimal(0)
# Price strings repeat heavily in real data (prices move tick by tick, open is often the previous
# close), and a dict hit costs a third of building a Decimal, which is immutable and can be shared.
# When they do not repeat (fine ticks, wild moves), the misses cost more than they save and fill
# memory, so a stream that misses too often stops interning. The cache is trimmed between slices.
_SLICE_LINES = 8_192
_INTERN_MAX_ENTRIES = 50_000
_INTERN_MAX_MISS_RATE = 0.5
_INTERN_PROBE_LOOKUPS = 20_000
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
        check_header_line(line)


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
    text = line.strip(WHITESPACE)
    if not text:
        return
    fields = text.split(",")
    if len(fields) != 6:
        raise CandleValidationError(row, f"expected 6 columns, got {len(fields)}")
    candle = validate_row(row, *fields, tf)
    epoch = epoch_of(candle.ts)[0]
    if epoch in seen:
        raise CandleValidationError(row, f"duplicate ts {format_ts(candle.ts)}", "ts")
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
