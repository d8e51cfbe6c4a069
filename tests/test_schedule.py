"""Schedule evaluation on a controllable clock: frequency, calendar, windows across midnight
and DST, retention dates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from openxbsa.catalog.store import INFINITY, expiration_for
from openxbsa.server import schedule as S

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc


def at(y, mo, d, h=0, mi=0, tz=UTC):
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz)


NIGHTS = S.windows_from_specs([("all", "22:00", "8h")])      # 22:00 -> 06:00 every day


@pytest.mark.parametrize("when,open_", [
    (at(2026, 11, 24, 21, 59), False), (at(2026, 11, 24, 22, 0), True),
    (at(2026, 11, 24, 23, 59), True), (at(2026, 11, 25, 0, 0), True),
    (at(2026, 11, 25, 5, 59), True), (at(2026, 11, 25, 6, 0), False),
    (at(2026, 11, 25, 12, 0), False),
])
def test_window_across_midnight(when, open_):
    assert S.window_open(NIGHTS, when) is open_


def test_window_of_one_day_spills_into_the_next_only():
    tuesday_night = S.windows_from_specs([("tue", "23:00", "2h")])
    assert S.window_open(tuesday_night, at(2026, 11, 24, 23, 30))      # Tuesday
    assert S.window_open(tuesday_night, at(2026, 11, 25, 0, 30))       # Wednesday 00:30
    assert not S.window_open(tuesday_night, at(2026, 11, 25, 1, 0))
    assert not S.window_open(tuesday_night, at(2026, 11, 25, 23, 30))  # Wednesday night


def test_windows_follow_the_wall_clock_across_dst():
    # 2026-03-08 02:00 New York springs forward; 2026-11-01 02:00 falls back
    assert S.window_open(NIGHTS, at(2026, 3, 8, 5, 30, NY))
    assert not S.window_open(NIGHTS, at(2026, 3, 8, 6, 30, NY))
    assert S.window_open(NIGHTS, at(2026, 11, 1, 5, 59, NY))
    assert not S.window_open(NIGHTS, at(2026, 11, 1, 6, 0, NY))


def test_frequency_schedule():
    always = S.ALWAYS
    now = at(2026, 11, 24, 12)
    assert S.is_due(always, 86400, "", None, now)
    assert not S.is_due(always, 86400, "", now - dt.timedelta(hours=23), now)
    assert S.is_due(always, 86400, "", now - dt.timedelta(hours=24), now)
    assert not S.is_due(NIGHTS, 86400, "", None, now)                 # window closed
    assert S.is_due(NIGHTS, 86400, "", None, at(2026, 11, 24, 23))


def test_frequency_across_a_dst_change_counts_real_time():
    last = at(2026, 3, 7, 23, 0, NY)                 # the day before spring forward
    assert not S.is_due(S.ALWAYS, 86400, "", last, at(2026, 3, 8, 23, 0, NY) - dt.timedelta(hours=1))
    assert S.is_due(S.ALWAYS, 86400, "", last, at(2026, 3, 8, 23, 0, NY))


def test_calendar_schedule():
    mwf = "MON,WED,FRI"
    monday, tuesday = at(2026, 11, 23, 9), at(2026, 11, 24, 9)
    assert S.is_due(S.ALWAYS, 0, mwf, None, monday)
    assert not S.is_due(S.ALWAYS, 0, mwf, None, tuesday)
    assert not S.is_due(S.ALWAYS, 0, mwf, monday.replace(hour=1), monday)   # ran today
    assert S.is_due(S.ALWAYS, 0, mwf, monday - dt.timedelta(days=2), monday)


@pytest.mark.parametrize("spec", [[("xyz", "22:00", "1h")], [("mon", "25:00", "1h")],
                                  [("mon", "22:00", "eight")], [("mon", "22:00", "9w")]])
def test_bad_window_specs_are_refused(spec):
    with pytest.raises(ValueError):
        S.windows_from_specs(spec)


def test_durations_and_clock():
    assert [S.parse_duration(x) for x in ("90", "30m", "12h", "1d", "2w")] == \
        [90, 1800, 43200, 86400, 1209600]
    assert S.parse_clock("07:30") == 27000 and S.parse_clock("23:59:59") == 86399


@pytest.mark.parametrize("level,days", [(0, 7), (1, 14), (2, 21), (3, 31), (8, 366)])
def test_retention_levels(level, days):
    ctime = 1_800_000_000
    assert expiration_for(level, ctime) == ctime + days * 86400


def test_infinite_and_immediate_retention():
    assert expiration_for(9, 1_800_000_000) == INFINITY
    assert expiration_for(50, 1_800_000_000) == INFINITY
    assert expiration_for(25, 1_800_000_000) == 1_800_000_000
