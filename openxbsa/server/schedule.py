"""When schedules are due and windows are open (NetBackup's nbpem rules), as pure functions.

Times are the server's local wall-clock time (a timezone-aware datetime): a window
"22:00 for 8 hours" ends at 06:00 on the wall clock, across midnight and across a DST
change alike. Windows are seven (start, duration) pairs in seconds, Sunday first, as
bpplsched's SCHEDWIN line prints them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
ALWAYS: list[tuple[int, int]] = [(0, 86400)] * 7
Windows = Sequence[tuple[int, int]]


def parse_windows(text: str) -> list[tuple[int, int]]:
    pairs = json.loads(text) if text else ALWAYS
    if len(pairs) != 7 or any(len(p) != 2 for p in pairs):
        raise ValueError("windows are seven [start, duration] pairs, Sunday first")
    return [(int(s), int(d)) for s, d in pairs]


def dump_windows(windows: Windows) -> str:
    return json.dumps([list(p) for p in windows])


def _day(now: dt.datetime) -> int:
    return (now.weekday() + 1) % 7      # Python's Monday=0 -> Sunday=0


def _seconds(now: dt.datetime) -> int:
    return now.hour * 3600 + now.minute * 60 + now.second


def window_open(windows: Windows, now: dt.datetime) -> bool:
    """Is a window of the schedule open at ``now`` (local wall-clock time)?"""
    day, secs = _day(now), _seconds(now)
    start, length = windows[day]
    if length > 0 and start <= secs < start + length:
        return True
    pstart, plength = windows[(day - 1) % 7]          # yesterday's window past midnight
    return plength > 0 and pstart + plength > 86400 and secs < pstart + plength - 86400


def is_due(windows: Windows, frequency: int, calendar: str, last_success: dt.datetime | None,
           now: dt.datetime) -> bool:
    """Should an automatic schedule start a run now? Frequency-based: the last successful
    run is at least ``frequency`` seconds old; calendar-based: today is a run day and no
    run succeeded today. Either way only while a window is open."""
    if not window_open(windows, now):
        return False
    if frequency > 0:
        return last_success is None or (now - last_success).total_seconds() >= frequency
    days = {d.strip().upper() for d in calendar.split(",") if d.strip()}
    if DAYS[_day(now)] not in days:
        return False
    return last_success is None or last_success.astimezone(now.tzinfo).date() < now.date()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'90', '30m', '12h', '1d', '2w' -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise ValueError(f"{text!r} is not a duration such as 3600, 30m, 12h or 1d")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_clock(text: str) -> int:
    """'22:00' or '07:30:15' -> seconds after midnight."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a time of day such as 22:00")
    h, m, s = (int(p) for p in parts + ["0"] * (3 - len(parts)))
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return h * 3600 + m * 60 + s


def windows_from_specs(specs: Sequence[tuple[str, str, str]]) -> list[tuple[int, int]]:
    """[('all'|'mon'|..., '22:00', '8h'), ...] -> seven pairs; days not named are closed."""
    windows = [(0, 0)] * 7
    for day, start, length in specs:
        names = DAYS if day.lower() == "all" else (day.upper()[:3],)
        for name in names:
            if name not in DAYS:
                raise ValueError(f"{day!r} is not a day (sun..sat or all)")
            duration = parse_duration(length)
            if duration > 7 * 86400:
                raise ValueError("a window lasts at most a week")
            windows[DAYS.index(name)] = (parse_clock(start), duration)
    return windows
