"""The market clock: whether an exchange's session is open at an instant, and when it next opens and closes.

Pure (no I/O). The rule, per exchange, in its own time zone (`exchanges.timezone`):

* a session starts at `session_open` on each ISO weekday listed in `session_days` (1 = Monday);
* it ends at the next `session_close` after its start: the same day when `session_close` is later than
  `session_open`, the next day when it is earlier (an overnight session), 24 hours later when the two
  are equal (a session that rolls over at that time);
* sessions that touch or overlap form one session: an exchange trading 24 hours on all seven days is
  always open and has neither a next open nor a next close;
* an exchange whose `status` is `closed` is never open.

Local times are converted with zoneinfo, so daylight-saving changes move the UTC instants. Holidays are
not modelled: a listed weekday is a trading day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Sessions are built for the days around `now`; two weeks covers any weekly pattern twice over.
_DAYS_BEFORE, _DAYS_AFTER = 2, 15


@dataclass(frozen=True, slots=True)
class SessionState:
    is_open: bool
    next_open: datetime | None  # None: open now and never closing, or never opening
    next_close: datetime | None  # None: not open, or open with no close ahead


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def sessions(
    now: datetime, tz_name: str, session_open: time, session_close: time, days: list[int]
) -> list[tuple[datetime, datetime]]:
    """Merged (start, end) UTC intervals of the sessions from two days before `now` to two weeks after."""
    tz = ZoneInfo(tz_name)
    today = now.astimezone(tz).date()
    raw: list[tuple[datetime, datetime]] = []
    for offset in range(-_DAYS_BEFORE, _DAYS_AFTER):
        day = today + timedelta(days=offset)
        if day.isoweekday() not in days:
            continue
        start = _local(day, session_open, tz)
        close_day = day if session_close > session_open else day + timedelta(days=1)
        raw.append((start, _local(close_day, session_close, tz)))
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(raw):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def session_state(
    now: datetime,
    tz_name: str,
    session_open: time,
    session_close: time,
    days: list[int],
    status: str = "open",
) -> SessionState:
    if status != "open" or not days:
        return SessionState(False, None, None)
    spans = sessions(now, tz_name, session_open, session_close, days)
    horizon = now + timedelta(days=_DAYS_AFTER - 2)  # an end beyond this is the window's edge, not a close
    for start, end in spans:
        if start <= now < end:
            if end >= horizon:
                return SessionState(True, None, None)
            following = next((s for s, _ in spans if s > end), None)
            return SessionState(True, following, end)
        if start > now:
            return SessionState(False, start, end)
    return SessionState(False, None, None)
