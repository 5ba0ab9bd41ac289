"""Settlement-period calendar of GB local dates (Europe/London).

A local date ``d`` has ``N(d)`` half-hour settlement periods: 48, or 46 on the
spring clock change and 50 on the autumn one. Period ``p`` starts at local
midnight of ``d`` (expressed in UTC) plus 30 minutes x (p - 1).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
HALF_HOUR = dt.timedelta(minutes=30)


@lru_cache(maxsize=8192)
def local_midnight_utc(day: dt.date) -> dt.datetime:
    """Local midnight of ``day`` in Europe/London, as an aware UTC datetime."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=LONDON).astimezone(UTC)


@lru_cache(maxsize=8192)
def periods_in_day(day: dt.date) -> int:
    """N(d): the number of settlement periods of local date ``day``."""
    span = local_midnight_utc(day + dt.timedelta(days=1)) - local_midnight_utc(day)
    return int(span / HALF_HOUR)


def period_start_utc(day: dt.date, period: int) -> dt.datetime:
    """UTC start of settlement period ``period`` (1-based) of local date ``day``."""
    return local_midnight_utc(day) + HALF_HOUR * (period - 1)


def period_local_start(day: dt.date, period: int) -> dt.time:
    """Local wall-clock start time of a period (used for time-banded charges)."""
    return period_start_utc(day, period).astimezone(LONDON).time()


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every date from ``first`` to ``last`` inclusive."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
