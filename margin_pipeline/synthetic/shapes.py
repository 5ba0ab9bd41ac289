"""Where in the local day and year a settlement period falls, and the shapes that follow from it.

Household demand and wholesale prices follow the local wall clock (evening peak, midday
solar dip), so every daily profile is indexed by the *local slot* of a period: its local
start time in half-hours since midnight (0..47). On the autumn clock change two periods
share the slots of 01:00 and 01:30; on the spring one the slots of 01:00 and 01:30 are absent.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from margin_pipeline.contracts.calendar import HALF_HOUR, period_local_start, period_start_utc, periods_in_day

SLOTS_PER_DAY = 48


@dataclass(frozen=True)
class DayGrid:
    """The settlement periods ``1..N(d)`` of one local date."""

    day: dt.date
    periods: int
    local_slot: np.ndarray
    utc_start: np.ndarray

    @property
    def utc_end(self) -> np.ndarray:
        return self.utc_start + np.timedelta64(int(HALF_HOUR.total_seconds()), "s")

    @property
    def period_numbers(self) -> np.ndarray:
        return np.arange(1, self.periods + 1, dtype=np.int32)


@lru_cache(maxsize=4096)
def day_grid(day: dt.date) -> DayGrid:
    """Local slots and UTC starts (``datetime64[us]``, naive UTC) of the periods of ``day``."""
    periods = periods_in_day(day)
    local_starts = [period_local_start(day, p) for p in range(1, periods + 1)]
    utc_starts = [period_start_utc(day, p).replace(tzinfo=None) for p in range(1, periods + 1)]
    slots = np.array([t.hour * 2 + t.minute // 30 for t in local_starts], dtype=np.int64)
    grid = DayGrid(day, periods, slots, np.array(utc_starts, dtype="datetime64[us]"))
    grid.local_slot.setflags(write=False)
    grid.utc_start.setflags(write=False)
    return grid


def hourly_profile(steps: list[tuple[float, float]], normalise: bool = False) -> np.ndarray:
    """A 48-slot daily profile from ``(until_local_hour, value)`` steps covering 0..24 h.

    With ``normalise`` the profile is scaled to a daily mean of 1.
    """
    profile = np.empty(SLOTS_PER_DAY)
    begin = 0
    for until_hour, value in steps:
        end = int(until_hour * 2)
        profile[begin:end] = value
        begin = end
    if begin != SLOTS_PER_DAY:
        raise ValueError(f"profile steps end at {begin / 2} h, not 24 h")
    if normalise:
        profile /= profile.mean()
    profile.setflags(write=False)
    return profile


def in_local_window(slots: np.ndarray, start_hour: float, end_hour: float) -> np.ndarray:
    """Which periods start in ``[start_hour, end_hour)`` local time (wrapping past midnight)."""
    start, end = int(start_hour * 2), int(end_hour * 2)
    if start <= end:
        return (slots >= start) & (slots < end)
    return (slots >= start) | (slots < end)


def winter_factor(day: dt.date) -> float:
    """Seasonal demand level with yearly mean 1: about 1.22 in mid-January, 0.78 in mid-July."""
    return 1.0 + 0.22 * math.cos(2.0 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)


def heating_need(day: dt.date) -> float:
    """How hard heat pumps work, 0 in summer to 1 in the depth of winter."""
    return min(1.0, max(0.0, (winter_factor(day) - 0.92) / 0.3))


def is_weekend(day: dt.date) -> bool:
    return day.weekday() >= 5
