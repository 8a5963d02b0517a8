"""The market clock's session rule (app/domain/markets/clock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from app.domain.markets.clock import session_state

WEEKDAYS = [1, 2, 3, 4, 5]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_new_york_weekday_session_in_winter_and_summer_time():
    # Friday 2026-12-04 15:00 New York (EST, UTC-5) = 20:00 UTC: open, closes at 21:00 UTC, next opens Monday.
    state = session_state(utc(2026, 12, 4, 20, 0), "America/New_York", time(9, 30), time(16, 0), WEEKDAYS)
    assert state.is_open
    assert state.next_close == utc(2026, 12, 4, 21, 0)
    assert state.next_open == utc(2026, 12, 7, 14, 30)
    # Saturday: closed, opens Monday 09:30 EST.
    state = session_state(utc(2026, 12, 5, 12, 0), "America/New_York", time(9, 30), time(16, 0), WEEKDAYS)
    assert not state.is_open
    assert (state.next_open, state.next_close) == (utc(2026, 12, 7, 14, 30), utc(2026, 12, 7, 21, 0))
    # July (EDT, UTC-4): the same local hours are an hour earlier in UTC.
    state = session_state(utc(2026, 7, 1, 13, 0), "America/New_York", time(9, 30), time(16, 0), WEEKDAYS)
    assert not state.is_open and state.next_open == utc(2026, 7, 1, 13, 30)


def test_before_and_at_the_boundaries():
    open_at = utc(2026, 12, 7, 9, 0)
    assert session_state(open_at, "UTC", time(9), time(17), WEEKDAYS).is_open  # opening instant is inside
    assert not session_state(
        utc(2026, 12, 7, 17, 0), "UTC", time(9), time(17), WEEKDAYS
    ).is_open  # close is not
    state = session_state(utc(2026, 12, 7, 8, 59), "UTC", time(9), time(17), WEEKDAYS)
    assert (state.is_open, state.next_open, state.next_close) == (False, open_at, utc(2026, 12, 7, 17))


def test_overnight_session_closes_the_next_day():
    # Opens 18:00 Sunday..Thursday, closes 17:00 the next day (a futures-style week).
    days = [7, 1, 2, 3, 4]
    state = session_state(utc(2026, 12, 8, 3, 0), "UTC", time(18), time(17), days)  # Tuesday 03:00
    assert (
        state.is_open and state.next_close == utc(2026, 12, 8, 17) and state.next_open == utc(2026, 12, 8, 18)
    )
    state = session_state(utc(2026, 12, 5, 12, 0), "UTC", time(18), time(17), days)  # Saturday
    assert not state.is_open and state.next_open == utc(2026, 12, 6, 18)


def test_around_the_clock_is_always_open_and_closed_status_never_is():
    every_day = [1, 2, 3, 4, 5, 6, 7]
    state = session_state(utc(2026, 12, 6, 16, 0), "UTC", time(16), time(16), every_day)
    assert state.is_open and state.next_open is None and state.next_close is None
    # Rolling 24 h sessions on weekdays only: open through the week, closing at the Friday/Saturday roll.
    state = session_state(utc(2026, 12, 8, 10, 0), "UTC", time(16), time(16), WEEKDAYS)
    assert (
        state.is_open
        and state.next_close == utc(2026, 12, 12, 16)
        and state.next_open == utc(2026, 12, 14, 16)
    )
    assert session_state(utc(2026, 12, 8, 10), "UTC", time(9), time(17), WEEKDAYS, "closed") == (
        session_state(utc(2026, 12, 8, 10), "UTC", time(9), time(17), [], "open")
    )
    assert not session_state(utc(2026, 12, 8, 10), "UTC", time(9), time(17), WEEKDAYS, "closed").is_open
