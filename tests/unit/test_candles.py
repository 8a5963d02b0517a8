from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.markets.candle_csv import CandleCsvParser, parse_csv_stream
from app.domain.markets.candles import (
    CSV_HEADER,
    MAX_LINE_BYTES,
    TIMEFRAMES,
    CandleRow,
    CandleValidationError,
    to_copy_records,
    validate_batch,
    validate_row,
)

DAY = 86_400
JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN1_EPOCH = 1_767_225_600
GOOD = ("2026-01-01T00:00:00Z", "100", "110", "90", "105", "1000")


def day(n: int) -> str:
    return (JAN1 + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def good_line(n: int, o: str = "100", h: str = "110", lo: str = "90", c: str = "105", v: str = "1000") -> str:
    return f"{day(n)},{o},{h},{lo},{c},{v}"


def csv_bytes(*lines: str, header: str = CSV_HEADER, newline: str = "\n") -> bytes:
    return newline.join([header, *lines, ""]).encode()


def chunked(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def run_parse(chunks: list[bytes], timeframe: str = "1d", batch_size: int = 50_000) -> list[list[CandleRow]]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[list[CandleRow]]:
        return [batch async for batch in parse_csv_stream(source(), timeframe, batch_size)]

    # A private loop: the suite's session loop (pytest-asyncio) must stay untouched.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(collect())
    finally:
        loop.close()


def parse_rows(data: bytes, timeframe: str = "1d", chunk: int | None = None) -> list[CandleRow]:
    return [row for batch in run_parse(chunked(data, chunk), timeframe) for row in batch]


def parse_error(data: bytes, timeframe: str = "1d", chunk: int | None = None) -> CandleValidationError:
    with pytest.raises(CandleValidationError) as info:
        run_parse(chunked(data, chunk), timeframe)
    return info.value


def outcome(data: bytes, chunk: int | None, batch_size: int = 50_000) -> object:
    try:
        return run_parse(chunked(data, chunk), "1d", batch_size)
    except CandleValidationError as exc:
        return ("error", exc.row, exc.field, exc.reason)


def row_error(values: tuple[object, ...], timeframe: str = "1d") -> CandleValidationError:
    """Validate a batch whose third row is ``values`` (two good rows before it)."""
    rows = [(day(1), *GOOD[1:]), (day(2), *GOOD[1:]), values]
    with pytest.raises(CandleValidationError) as info:
        validate_batch(rows, timeframe)
    return info.value


# --- timeframes and rows ---------------------------------------------------------------------------


def test_timeframes_are_the_documented_set_in_seconds() -> None:
    assert TIMEFRAMES == {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


def test_validate_row_returns_decimals_and_utc_datetime() -> None:
    row = validate_row(1, *GOOD, DAY)
    assert row == CandleRow(JAN1, Decimal(100), Decimal(110), Decimal(90), Decimal(105), Decimal(1000))
    assert row.ts.tzinfo is UTC
    assert all(type(v) is Decimal for v in (row.open, row.high, row.low, row.close, row.volume))


def test_decimal_strings_keep_their_exact_value_and_scale() -> None:
    row = validate_row(1, GOOD[0], "101.250", "101.25", "0.000000000000000001", "+101.1", "0.5", DAY)
    assert str(row.open) == "101.250"
    assert row.low == Decimal("1E-18")
    assert row.close == Decimal("101.1")


def test_integers_are_accepted_as_json_numbers() -> None:
    row = validate_row(1, JAN1_EPOCH, 100, 110, 90, 105, 0, DAY)
    assert row == CandleRow(JAN1, Decimal(100), Decimal(110), Decimal(90), Decimal(105), Decimal(0))


def test_candle_row_is_frozen() -> None:
    row = validate_row(1, *GOOD, DAY)
    with pytest.raises(AttributeError):
        row.open = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ((GOOD[0], "100", "80", "90", "95", "1"), "high", "high < low"),
        ((GOOD[0], "100", "99", "90", "95", "1"), "high", "high < open"),
        ((GOOD[0], "95", "99", "90", "100", "1"), "high", "high < close"),
        ((GOOD[0], "91", "110", "92", "105", "1"), "low", "low > open"),
        ((GOOD[0], "100", "110", "92", "91", "1"), "low", "low > close"),
        ((GOOD[0], "0", "110", "90", "105", "1"), "open", "open must be > 0"),
        ((GOOD[0], "100", "-110", "90", "105", "1"), "high", "high must be > 0"),
        ((GOOD[0], "100", "110", "-1", "105", "1"), "low", "low must be > 0"),
        ((GOOD[0], "100", "110", "90", "0.0", "1"), "close", "close must be > 0"),
        ((GOOD[0], "100", "110", "90", "105", "-5"), "volume", "volume must be >= 0"),
        ((GOOD[0], "100", "110", "90", "105", -5), "volume", "volume must be >= 0"),
        ((GOOD[0], "NaN", "110", "90", "105", "1"), "open", "open is not a decimal number"),
        ((GOOD[0], "100", "Infinity", "90", "105", "1"), "high", "high is not a decimal number"),
        ((GOOD[0], "100", "110", "90", "105", Decimal("NaN")), "volume", "volume is not a finite number"),
        ((GOOD[0], "100", "110", "-inf", "105", "1"), "low", "low is not a decimal number"),
        ((GOOD[0], "1e2", "110", "90", "105", "1"), "open", "open is not a decimal number"),
        ((GOOD[0], "100", "1_10", "90", "105", "1"), "high", "high is not a decimal number"),
        ((GOOD[0], "100", "110", "9O", "105", "1"), "low", "low is not a decimal number"),
        ((GOOD[0], "100", "110", "90", "1.0.5", "1"), "close", "close is not a decimal number"),
        ((GOOD[0], "100", "110", "90", "105", "."), "volume", "volume is not a decimal number"),
        ((GOOD[0], "\u0661\u0660\u0660", "110", "90", "105", "1"), "open", "open is not a decimal number"),
        ((GOOD[0], "", "110", "90", "105", "1"), "open", "open is empty"),
        ((GOOD[0], "100", 110.0, "90", "105", "1"), "high", "not a float"),
        ((GOOD[0], "100", "110", True, "105", "1"), "low", "low is not a decimal number"),
        ((GOOD[0], "100", "110", "90", None, "1"), "close", "close is missing"),
        ((GOOD[0], "100", "110", "90", "105", [1]), "volume", "not list"),
        ((GOOD[0], "1.0000000000000000001", "110", "90", "105", "1"), "open", "more than 18 digits"),
        ((GOOD[0], "100", "1" + "0" * 20, "90", "105", "1"), "high", "too large"),
        ((GOOD[0], "100", 10**20, "90", "105", "1"), "high", "too large"),
        ((GOOD[0], "100", Decimal("1E+20"), "90", "105", "1"), "high", "too large"),
        ((GOOD[0], "100", "110", Decimal("9E-19"), "105", "1"), "low", "more than 18 digits"),
        (("2026-13-01T00:00:00Z", *GOOD[1:]), "ts", "ts is not a valid timestamp"),
        (("2026-02-30T00:00:00Z", *GOOD[1:]), "ts", "ts is not a valid timestamp"),
        (("2026-01-01T23:59:60Z", *GOOD[1:]), "ts", "ts is not a valid timestamp"),
        (("2026-02-30", *GOOD[1:]), "ts", "ts is not a valid timestamp"),  # a date is midnight UTC
        (("20260101T000000Z", *GOOD[1:]), "ts", "ts is not an RFC 3339 timestamp"),
        (("yesterday", *GOOD[1:]), "ts", "ts is not an RFC 3339 timestamp"),
        (("2026-01-01T00:00:00+24:00", *GOOD[1:]), "ts", "invalid UTC offset"),
        ((1.7672256e9, *GOOD[1:]), "ts", "ts must be an RFC 3339 string or integer epoch seconds"),
        ((True, *GOOD[1:]), "ts", "ts must be an RFC 3339 string or integer epoch seconds"),
        ((None, *GOOD[1:]), "ts", "ts is missing"),
        ((10**12, *GOOD[1:]), "ts", "ts is out of range"),
        (("2026-01-01T01:00:00Z", *GOOD[1:]), "ts", "not aligned to the 1d timeframe"),
        (("2026-01-01T00:00:00.5Z", *GOOD[1:]), "ts", "not aligned to the 1d timeframe"),
        (("2026-01-01T00:00:00.0000001Z", *GOOD[1:]), "ts", "not aligned to the 1d timeframe"),
        ((JAN1_EPOCH + 3600, *GOOD[1:]), "ts", "not aligned to the 1d timeframe"),
        ((str(JAN1_EPOCH + 1), *GOOD[1:]), "ts", "not aligned to the 1d timeframe"),
    ],
)
def test_each_bad_value_names_its_row_field_and_reason(
    values: tuple[object, ...], field: str, reason: str
) -> None:
    exc = row_error(values)
    assert (exc.row, exc.field) == (3, field)
    assert reason in exc.reason
    assert str(exc) == f"row 3: {exc.reason}"


def test_high_below_low_message_matches_the_documented_form() -> None:
    exc = row_error((GOOD[0], "100", "80", "90", "95", "1"))
    assert str(exc) == "row 3: high < low"


def test_zero_volume_and_equal_prices_are_valid() -> None:
    row = validate_row(1, GOOD[0], "5", "5", "5", "5", "0", DAY)
    assert row.volume == 0 and row.high == row.low == Decimal(5)


def test_negative_zero_volume_is_stored_unsigned() -> None:
    row = validate_row(1, GOOD[0], "5", "5", "5", "5", "-0.0", DAY)
    assert str(row.volume) == "0.0"


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-01T05:30:00+05:30",
        "2025-12-31T19:00:00-05:00",
        "2026-01-01T00:00:00Z",
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00",  # no offset: UTC
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00-00:00",
        JAN1_EPOCH,
        str(JAN1_EPOCH),
        f"  {JAN1_EPOCH}\t",
        datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 1, 1),  # naive: UTC
    ],
)
def test_timestamps_are_normalised_to_utc(ts: object) -> None:
    row = validate_row(1, ts, *GOOD[1:], DAY)
    assert row.ts == JAN1
    assert row.ts.utcoffset() == timedelta(0)
    assert row.ts.tzinfo is UTC


@pytest.mark.parametrize(
    ("timeframe", "aligned", "misaligned"),
    [
        ("1m", "2026-01-01T00:07:00Z", "2026-01-01T00:07:30Z"),
        ("5m", "2026-01-01T00:05:00Z", "2026-01-01T00:07:00Z"),
        ("15m", "2026-01-01T00:45:00Z", "2026-01-01T00:50:00Z"),
        ("1h", "2026-01-01T13:00:00Z", "2026-01-01T13:30:00Z"),
        ("4h", "2026-01-01T08:00:00Z", "2026-01-01T06:00:00Z"),
        ("4h", "2026-01-01T09:30:00+05:30", "2026-01-01T08:00:00+05:30"),
        ("1d", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00+01:00"),
    ],
)
def test_timestamps_must_sit_on_the_timeframe_grid(timeframe: str, aligned: str, misaligned: str) -> None:
    tf = TIMEFRAMES[timeframe]
    assert validate_row(1, aligned, *GOOD[1:], tf).ts.tzinfo is UTC
    with pytest.raises(CandleValidationError) as info:
        validate_row(7, misaligned, *GOOD[1:], tf)
    assert (info.value.row, info.value.field) == (7, "ts")
    assert f"not aligned to the {timeframe} timeframe" in info.value.reason


def test_negative_epochs_before_1970_are_allowed() -> None:
    assert validate_row(1, -DAY, *GOOD[1:], DAY).ts == datetime(1969, 12, 31, tzinfo=UTC)


def test_validate_row_rejects_a_bad_timeframe() -> None:
    with pytest.raises(ValueError, match="timeframe_seconds"):
        validate_row(1, *GOOD, 0)


# --- batches ---------------------------------------------------------------------------------------


def test_validate_batch_accepts_objects_arrays_and_rows_and_sorts_by_ts() -> None:
    rows = [
        {"ts": day(2), "open": "1", "high": "2", "low": "1", "close": "2", "volume": "3", "note": "x"},
        (day(0), "1", "2", "1", "1", "3"),
        validate_row(1, day(1), "1", "2", "1", "1", "3", DAY),
    ]
    out = validate_batch(rows, "1d")
    assert [r.ts for r in out] == [JAN1, JAN1 + timedelta(days=1), JAN1 + timedelta(days=2)]
    assert out[2].close == Decimal(2)


def test_validate_batch_rejects_missing_keys_and_wrong_arity() -> None:
    with pytest.raises(CandleValidationError) as info:
        validate_batch([dict(zip(("ts", "open", "high", "low", "close"), GOOD, strict=False))], "1d")
    assert (info.value.row, info.value.field, info.value.reason) == (1, "volume", "volume is missing")
    with pytest.raises(CandleValidationError) as info:
        validate_batch([GOOD, GOOD[:5]], "1d")
    assert info.value.row == 2 and info.value.field is None and "got 5" in info.value.reason
    with pytest.raises(CandleValidationError) as info:
        validate_batch([(*GOOD, "1")], "1d")
    assert info.value.row == 1 and "got 7" in info.value.reason
    with pytest.raises(CandleValidationError) as info:
        validate_batch([GOOD, "ts,open"], "1d")
    assert info.value.row == 2


def test_duplicate_ts_names_the_second_row_whatever_its_spelling() -> None:
    rows = [
        (day(0), *GOOD[1:]),
        (day(1), *GOOD[1:]),
        (day(2), *GOOD[1:]),
        (day(3), *GOOD[1:]),
        ("2026-01-02T05:30:00+05:30", *GOOD[1:]),  # = day(1)
    ]
    with pytest.raises(CandleValidationError) as info:
        validate_batch(rows, "1d")
    assert (info.value.row, info.value.field) == (5, "ts")
    assert info.value.reason == "duplicate ts 2026-01-02T00:00:00Z (same as row 2)"


def test_validate_batch_stops_at_the_first_bad_row() -> None:
    rows = [(day(0), *GOOD[1:]), (day(1), "1", "0.5", "1", "1", "1"), (day(2), "-1", *GOOD[2:])]
    with pytest.raises(CandleValidationError) as info:
        validate_batch(rows, "1d")
    assert info.value.row == 2


def test_validate_batch_rejects_unknown_timeframes() -> None:
    with pytest.raises(ValueError, match="unknown timeframe '2d'"):
        validate_batch([GOOD], "2d")


def test_validate_batch_of_nothing_is_empty() -> None:
    assert validate_batch([], "1h") == []


def test_to_copy_records_orders_columns_for_copy() -> None:
    row = validate_row(1, *GOOD, DAY)
    assert to_copy_records([row]) == [
        (JAN1, Decimal(100), Decimal(110), Decimal(90), Decimal(105), Decimal(1000))
    ]
    assert to_copy_records([row, row], prefix=("BTC-USD", "1d"))[1] == (
        "BTC-USD",
        "1d",
        JAN1,
        Decimal(100),
        Decimal(110),
        Decimal(90),
        Decimal(105),
        Decimal(1000),
    )


def test_validation_error_survives_pickling() -> None:
    exc = CandleValidationError(17, "high < low", "high")
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.row, copy.reason, copy.field, str(copy)) == (17, "high < low", "high", "row 17: high < low")


# --- CSV stream ------------------------------------------------------------------------------------


def test_csv_rows_parse_to_candles_in_file_order() -> None:
    data = csv_bytes(good_line(2), good_line(0, c="95"), f"{JAN1_EPOCH + DAY},1.5,2,1,1.75,0")
    rows = parse_rows(data)
    assert [r.ts for r in rows] == [JAN1 + timedelta(days=2), JAN1, JAN1 + timedelta(days=1)]
    assert rows[1].close == Decimal(95)
    assert rows[2] == CandleRow(
        JAN1 + timedelta(days=1), Decimal("1.5"), Decimal(2), Decimal(1), Decimal("1.75"), Decimal(0)
    )


def test_csv_and_batch_validation_agree() -> None:
    lines = [
        good_line(n, o=f"{100 + n}.5", h=f"{120 + n}", lo=f"{90 + n}.25", c=f"{100 + n}") for n in range(20)
    ]
    rows = parse_rows(csv_bytes(*lines))
    assert rows == validate_batch([line.split(",") for line in lines], "1d")


def test_csv_batches_have_the_requested_size() -> None:
    data = csv_bytes(*(good_line(n) for n in range(5)))
    batches = run_parse([data], batch_size=2)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [r.ts for b in batches for r in b] == [JAN1 + timedelta(days=n) for n in range(5)]


def test_header_only_yields_nothing() -> None:
    assert run_parse([CSV_HEADER.encode()]) == []
    assert run_parse([csv_bytes()]) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n" + csv_bytes(good_line(0)),
        csv_bytes(good_line(0), header="ts,open,high,low,close"),
        csv_bytes(good_line(0), header="ts,open,high,low,close,volume,extra"),
        csv_bytes(good_line(0), header="TS,OPEN,HIGH,LOW,CLOSE,VOLUME"),
        csv_bytes(good_line(0), header="time,open,high,low,close,volume"),
        csv_bytes(good_line(0), header="ts, open, high, low, close, volume"),
        csv_bytes(good_line(0), header="ts;open;high;low;close;volume"),
        csv_bytes(good_line(1), header=good_line(0)),  # no header at all
    ],
)
def test_bad_header_is_row_zero(data: bytes) -> None:
    exc = parse_error(data)
    assert exc.row == 0 and exc.field is None
    assert exc.reason.startswith("bad header")
    assert CSV_HEADER in exc.reason


@pytest.mark.parametrize(
    "header", ["\ufeffts,open,high,low,close,volume", "  ts,open,high,low,close,volume\t "]
)
def test_header_may_have_a_bom_and_surrounding_whitespace(header: str) -> None:
    assert parse_rows(csv_bytes(good_line(0), header=header)) == [validate_row(1, day(0), *GOOD[1:], DAY)]


def test_a_bom_anywhere_but_the_start_is_an_error() -> None:
    exc = parse_error(csv_bytes("\ufeff" + good_line(0)))
    assert (exc.row, exc.field) == (1, "ts")


def test_crlf_and_lf_files_parse_identically() -> None:
    lines = [good_line(n) for n in range(3)]
    assert parse_rows(csv_bytes(*lines, newline="\r\n")) == parse_rows(csv_bytes(*lines))
    assert len(parse_rows(csv_bytes(*lines, newline="\r\n"))) == 3


def test_last_line_without_newline_is_parsed() -> None:
    data = csv_bytes(good_line(0), good_line(1)).rstrip(b"\n")
    assert [r.ts for r in parse_rows(data)] == [JAN1, JAN1 + timedelta(days=1)]


def test_blank_lines_are_skipped_but_keep_row_numbers_equal_to_line_numbers_minus_one() -> None:
    data = csv_bytes(good_line(0), "", "   ", good_line(1, h="1"))
    exc = parse_error(data)
    assert (exc.row, exc.reason) == (4, "high < low")


def test_whitespace_around_fields_takes_the_general_path_and_is_accepted() -> None:
    data = csv_bytes(f" {day(0)} , 100 ,110,\t90,105,1000 ")
    assert parse_rows(data) == [validate_row(1, *GOOD, DAY)]


@pytest.mark.parametrize(
    ("line", "columns"),
    [("2026-01-01T00:00:00Z,1,2,1", 4), (good_line(0) + ",", 7), (good_line(0) + ",1", 7), ("x", 1)],
)
def test_wrong_column_count_names_the_row(line: str, columns: int) -> None:
    exc = parse_error(csv_bytes(good_line(0), good_line(1), line))
    assert (exc.row, exc.field) == (3, None)
    assert exc.reason == f"expected 6 columns, got {columns}"


def test_quoted_fields_are_not_numbers() -> None:
    exc = parse_error(csv_bytes(f'{day(0)},"100",110,90,105,1'))
    assert (exc.row, exc.field) == (1, "open")


def test_csv_errors_name_row_and_field() -> None:
    data = csv_bytes(*(good_line(n) for n in range(16)), good_line(16, h="80", lo="85"))
    exc = parse_error(data)
    assert str(exc) == "row 17: high < low"
    assert exc.field == "high"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (good_line(0, v="-1"), "volume", "volume must be >= 0"),
        (good_line(0, o="0"), "open", "open must be > 0"),
        (good_line(0, lo="0.00"), "low", "low must be > 0"),
        (good_line(0, c="1.2.3"), "close", "close is not a decimal number"),
        (good_line(0, o="."), "open", "open is not a decimal number"),
        (good_line(0, h="1e3"), "high", "high is not a decimal number"),
        (good_line(0, h="nan"), "high", "high is not a decimal number"),
        ("2026-02-30T00:00:00Z,1,1,1,1,1", "ts", "ts is not a valid timestamp"),
        ("2026-01-01T00:00:01Z,1,1,1,1,1", "ts", "not aligned to the 1d timeframe"),
        (f"{JAN1_EPOCH + 60},1,1,1,1,1", "ts", "not aligned to the 1d timeframe"),
        (good_line(0, o="1.0000000000000000001"), "open", "more than 18 digits"),
        (good_line(0, v="100000000000000000000"), "volume", "too large"),
        (good_line(0, v=".0000000000000000001"), "volume", "more than 18 digits"),
        (good_line(0, v="1.000000000000000000"), None, None),
        (good_line(0, v="00000000000000000001"), None, None),
    ],
)
def test_csv_value_errors_are_those_of_validate_row(line: str, field: str | None, reason: str | None) -> None:
    data = csv_bytes(good_line(1), line)
    if reason is None:  # edge cases of the fast path that are valid
        assert parse_rows(data)[1] == validate_row(2, *line.split(","), DAY)
        return
    exc = parse_error(data)
    assert (exc.row, exc.field) == (2, field)
    assert reason in exc.reason


def test_csv_accepts_numbers_at_the_precision_limits() -> None:
    line = good_line(0, o="0.000000000000000001", h="99999999999999999999.999999999999999999", lo="1E-18")
    assert parse_error(csv_bytes(line)).field == "low"  # no exponents, even when the value is fine
    line = good_line(0, o="0.000000000000000001", h="99999999999999999999.999999999999999999")
    line = line.replace(",90,", ",0.000000000000000001,")
    (row,) = parse_rows(csv_bytes(line))
    assert row.high == Decimal("99999999999999999999.999999999999999999")
    assert row.open == row.low == Decimal("1E-18")


def test_csv_timestamp_offsets_are_normalised_to_utc() -> None:
    data = csv_bytes("2026-01-01T05:30:00+05:30,1,2,1,1,1", "2026-01-01T19:00:00-05:00,1,2,1,1,1")
    rows = parse_rows(data)
    assert [r.ts for r in rows] == [JAN1, JAN1 + timedelta(days=1)]
    assert all(r.ts.tzinfo is UTC for r in rows)


def test_csv_misaligned_intraday_timestamp() -> None:
    data = csv_bytes("2026-01-01T00:00:00Z,1,2,1,1,1", "2026-01-01T00:14:00Z,1,2,1,1,1")
    exc = parse_error(data, timeframe="15m")
    assert (exc.row, exc.field) == (2, "ts")
    assert exc.reason == "ts 2026-01-01T00:14:00Z is not aligned to the 15m timeframe"


def test_csv_duplicates_are_detected_across_batches_and_spellings() -> None:
    lines = [good_line(n) for n in range(4)] + [str(JAN1_EPOCH + DAY) + ",100,110,90,105,1000"]
    data = csv_bytes(*lines)
    with pytest.raises(CandleValidationError) as info:
        run_parse([data], batch_size=2)
    assert (info.value.row, info.value.field) == (5, "ts")
    assert info.value.reason == "duplicate ts 2026-01-02T00:00:00Z"


def test_csv_duplicate_of_a_slow_path_row_is_detected_on_the_fast_path() -> None:
    data = csv_bytes("2026-01-01T05:30:00+05:30,1,2,1,1,1", good_line(0))
    exc = parse_error(data)
    assert (exc.row, exc.field) == (2, "ts")


def test_invalid_utf8_names_its_row() -> None:
    data = csv_bytes(good_line(0), good_line(1)) + b"2026-01-03T00:00:00Z,1\xff,2,1,1,1\n"
    exc = parse_error(data)
    assert (exc.row, exc.field, exc.reason) == (3, None, "invalid UTF-8")
    assert isinstance(exc.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize(
    "data",
    [
        b"ts,open,high,low,close,volume\xc3\n",
        b"\xff\xfets,open,high,low,close,volume\n",
        "ts,open,high,low,close,volume\n".encode("utf-16"),
    ],
)
def test_invalid_utf8_in_the_header_is_row_zero(data: bytes) -> None:
    exc = parse_error(data)
    assert (exc.row, exc.reason) == (0, "invalid UTF-8")


@pytest.mark.parametrize(
    "bad",
    [
        b"\xc3",  # truncated two-byte sequence at end of input
        b"\xe2\x82",  # truncated three-byte sequence
        b"\xc0\xaf",  # overlong encoding of "/"
        b"\xed\xa0\x80",  # UTF-16 surrogate
    ],
)
def test_malformed_utf8_is_rejected(bad: bytes) -> None:
    data = csv_bytes(good_line(0)) + b"2026-01-02T00:00:00Z,1,1,1,1," + bad
    for chunk in (None, 1, 7):
        exc = parse_error(data, chunk=chunk)
        assert (exc.row, exc.reason) == (2, "invalid UTF-8")


def test_an_earlier_bad_value_wins_over_later_invalid_utf8() -> None:
    data = csv_bytes(good_line(0, o="-1"), good_line(1)) + b"\xff\n"
    for chunk in (None, 1, 7):
        exc = parse_error(data, chunk=chunk)
        assert (exc.row, exc.field) == (1, "open")


def test_overlong_lines_are_rejected_without_waiting_for_a_newline() -> None:
    parser = CandleCsvParser("1d")
    assert list(parser.feed(csv_bytes(good_line(0)))) == []
    with pytest.raises(CandleValidationError) as info:
        list(parser.feed(b"1" * (MAX_LINE_BYTES + 1)))
    assert info.value.row == 2 and "longer than" in info.value.reason


def test_overlong_line_error_does_not_depend_on_chunking() -> None:
    data = csv_bytes(good_line(0), "2026-01-02T00:00:00Z,1,1,1,1," + "\u00e9" * MAX_LINE_BYTES, good_line(2))
    results = {outcome(data, chunk) for chunk in (None, 1, 7, 4096)}
    assert results == {("error", 2, None, f"line longer than {MAX_LINE_BYTES} bytes")}


def test_non_ascii_characters_in_fields_are_errors_not_padding() -> None:
    data = csv_bytes(good_line(0, o="100\u00a0"))
    exc = parse_error(data)
    assert (exc.row, exc.field) == (1, "open")


def test_parser_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        CandleCsvParser("7m")
    with pytest.raises(ValueError, match="batch_size"):
        CandleCsvParser("1d", batch_size=0)
    with pytest.raises(ValueError, match="unknown timeframe"):
        run_parse([csv_bytes()], timeframe="1w")


def test_parser_is_usable_without_an_event_loop() -> None:
    parser = CandleCsvParser("1d", batch_size=2)
    data = csv_bytes(*(good_line(n) for n in range(3)))
    batches = [b for chunk in chunked(data, 10) for b in parser.feed(chunk)]
    batches += list(parser.close())
    assert [len(b) for b in batches] == [2, 1]
    with pytest.raises(RuntimeError):
        list(parser.feed(b"x"))


def test_interning_of_number_strings_never_changes_values() -> None:
    # 6,000 rows: enough lookups for the parser to judge the hit rate and stop interning unique
    # numbers midway; repeated numbers stay interned. Either way every row must equal validate_row's.
    unique = [f"{JAN1_EPOCH + n * 60},{n}.01,{n}.03,{n}.00,{n}.02,{n}" for n in range(1, 6001)]
    repeated = [f"{JAN1_EPOCH + n * 60},1.0{n % 7},1.1,1.00,1.0{n % 5},{n % 3}" for n in range(1, 6001)]
    for lines, interned in ((unique, False), (repeated, True)):
        parser = CandleCsvParser("1m", batch_size=1_000)
        data = csv_bytes(*lines)
        rows = [r for chunk in chunked(data, 65_536) for b in parser.feed(chunk) for r in b]
        rows += [r for b in parser.close() for r in b]
        expected = [validate_row(i, *line.split(","), 60) for i, line in enumerate(lines, 1)]
        assert [_exact(r) for r in rows] == [_exact(r) for r in expected]
        assert (parser._cache is not None) is interned


SAMPLE_VALID = csv_bytes(
    *(good_line(n, o=f"{100 + n}.25", c="101.5") for n in range(10)),
    "2026-01-11T05:30:00+05:30,1,2,1,1,1",
    f"{JAN1_EPOCH + 11 * DAY},1,2,1,1,1",
    "",
    good_line(12),
    header="\ufeff" + CSV_HEADER,
    newline="\r\n",
)
SAMPLE_BAD_MULTIBYTE = csv_bytes(good_line(0), good_line(1), good_line(2, v="1\u20ac"), good_line(3))
SAMPLE_BAD_UTF8 = csv_bytes(good_line(0), good_line(1)) + b"2026-01-03T00:00:00Z,\xe2\x82,1,1,1,1\n"


@pytest.mark.parametrize("data", [SAMPLE_VALID, SAMPLE_BAD_MULTIBYTE, SAMPLE_BAD_UTF8])
def test_chunk_boundaries_do_not_change_the_result(data: bytes) -> None:
    whole = outcome(data, None, batch_size=3)
    assert outcome(data, 1, batch_size=3) == whole
    assert outcome(data, 7, batch_size=3) == whole


def test_chunk_invariance_samples_have_the_expected_outcomes() -> None:
    # Guards the test above against comparing three identical mistakes.
    rows = [r for b in outcome(SAMPLE_VALID, None) for r in b]  # type: ignore[attr-defined]
    assert len(rows) == 13 and rows[10].ts == JAN1 + timedelta(days=10)
    assert outcome(SAMPLE_BAD_MULTIBYTE, None) == (
        "error",
        3,
        "volume",
        "volume is not a decimal number: '1\u20ac'",
    )
    assert outcome(SAMPLE_BAD_UTF8, None) == ("error", 3, None, "invalid UTF-8")
    assert "\ufeff".encode() == SAMPLE_VALID[:3]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_chunking_gives_the_same_result(data: st.DataObject) -> None:
    body = data.draw(st.sampled_from([SAMPLE_VALID, SAMPLE_BAD_MULTIBYTE, SAMPLE_BAD_UTF8]))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(body) - 1), max_size=30)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    size = data.draw(st.integers(1, 5))

    def result(parts: list[bytes]) -> object:
        try:
            return run_parse(parts, "1d", size)
        except CandleValidationError as exc:
            return (exc.row, exc.field, exc.reason)

    assert result(chunks) == result([body])


# Number spellings around the fast path's edges: leading/trailing dots and zeros, 19-20 characters,
# exponents, signs, padding.
number_text = st.one_of(
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{0,3})?", fullmatch=True),
    st.from_regex(r"[0-9.]{1,22}", fullmatch=True),
    st.from_regex(r"[+-]?[0-9]{0,21}\.?[0-9]{0,20}", fullmatch=True),
    st.sampled_from(["0", "0.0", "-0", "1e2", "NaN", "Infinity", " 5", "5\r", "1_0", "", ".", "5.", ".5"]),
    st.sampled_from(["." + "0" * 18 + "1", "0" * 19 + "1", "1" + "0" * 19, "1." + "0" * 18, "9" * 21]),
)
ts_text = st.one_of(
    st.integers(-3, 3).map(lambda n: day(n)),
    st.integers(-3, 3).map(lambda n: str(JAN1_EPOCH + n * DAY)),
    st.sampled_from(
        [
            "2026-01-01T00:00:01Z",
            "2026-02-30T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T05:30:00+05:30",
            "99999999999",
            str(JAN1_EPOCH + 60),
        ]
    ),
)


@st.composite
def candle_lines(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        # Mostly-valid rows, so that the fast path accepts often.
        prices = sorted(draw(st.lists(number_text, min_size=4, max_size=4)), key=_sort_key)
        lo, a, b, h = prices
        o, c = (a, b) if draw(st.booleans()) else (b, a)
    else:
        o, h, lo, c = draw(st.lists(number_text, min_size=4, max_size=4))
    v = draw(number_text)
    line = ",".join([draw(ts_text), o, h, lo, c, v])
    return line + draw(st.sampled_from(["", "\r"]))


def _sort_key(text: str) -> Decimal:
    try:
        value = Decimal(text)
        return value if value.is_finite() else Decimal(0)
    except ArithmeticError:
        return Decimal(0)


@settings(max_examples=400, deadline=None)
@given(line=candle_lines())
def test_csv_parser_agrees_with_validate_row(line: str) -> None:
    try:
        expected: object = [validate_row(1, *line.strip(" \t\r").split(","), DAY)]
    except CandleValidationError as exc:
        expected = (exc.row, exc.field, exc.reason)
    try:
        got: object = parse_rows(csv_bytes(line))
    except CandleValidationError as exc:
        got = (exc.row, exc.field, exc.reason)
    assert got == expected
    if isinstance(got, list):
        # Decimal equality ignores the written scale ("1.0" == "1"); the stored value must not.
        assert [_exact(r) for r in got] == [_exact(r) for r in expected]  # type: ignore[union-attr]


def _exact(row: CandleRow) -> tuple[object, ...]:
    return (row.ts, row.ts.tzinfo, *(str(v) for v in (row.open, row.high, row.low, row.close, row.volume)))
