"""Local calendar days of a charter (SPEC section 9): midnights in its time zone, working days of its calendar.

Days are proleptic Gregorian ordinals (``date.toordinal()``): plain ints, cheap to store and to step (+1 is the
next calendar day). Every answer is cached per local day, so the time-zone and holiday look-ups run once per day
of the stream, not once per event.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from streams.core.timeutil import EPOCH, to_us


class Holidays(Protocol):
    def __contains__(self, day: object) -> bool: ...


class LocalDays:
    """Local midnights (microseconds) and working days of one time zone and holiday calendar."""

    def __init__(self, tz: ZoneInfo, holidays: Holidays | None = None) -> None:
        self._tz = tz
        self._holidays = holidays
        self._midnight: dict[int, int] = {}  # day -> the instant it starts
        self._day_at: dict[int, int] = {}  # that instant -> day (deadlines are midnights: their day in one look-up)
        self._working: dict[int, bool] = {}
        self._after_working: dict[tuple[int, int], int] = {}
        # the local day containing the last instant asked about: [lo, hi) -> day
        self._lo = self._hi = 0
        self._day = 0

    def midnight(self, day: int) -> int:
        """The instant local ``day`` starts: its 00:00, or the first instant after it when a daylight-saving
        change skips midnight (zoneinfo's fold=0 maps a skipped wall time to the transition itself)."""
        m = self._midnight.get(day)
        if m is None:
            d = date.fromordinal(day)
            m = to_us(datetime(d.year, d.month, d.day, tzinfo=self._tz))
            self._midnight[day] = m
            self._day_at[m] = day
        return m

    def day_of(self, us: int) -> int:
        """The local day containing instant ``us``."""
        if self._lo <= us < self._hi:
            return self._day
        day = self._day_at.get(us)
        if day is None:
            day = (EPOCH + timedelta(microseconds=us)).astimezone(self._tz).date().toordinal()
        self._lo, self._hi, self._day = self.midnight(day), self.midnight(day + 1), day
        return day

    def next_midnight(self, midnight: int) -> int:
        """The midnight after ``midnight`` (one this object returned): a per-day deadline re-arming itself, without
        moving the cached current day away from the events'."""
        day = self._day_at.get(midnight)
        if day is None:
            day = (EPOCH + timedelta(microseconds=midnight)).astimezone(self._tz).date().toordinal()
        return self.midnight(day + 1)

    def is_working(self, day: int) -> bool:
        """Monday to Friday and not a public holiday of the calendar."""
        w = self._working.get(day)
        if w is None:
            d = date.fromordinal(day)
            w = self._working[day] = d.weekday() < 5 and (self._holidays is None or d not in self._holidays)
        return w

    def after_working_days(self, day: int, n: int) -> int:
        """The day after the ``n``-th working day that follows ``day`` (``day`` itself never counts): the day
        whose midnight ends them. With ``n`` = 0, the day after ``day``."""
        key = (day, n)
        end = self._after_working.get(key)
        if end is None:
            d, found = day, 0
            while found < n:
                d += 1
                if self.is_working(d):
                    found += 1
            end = self._after_working[key] = d + 1
        return end
