"""The settlement-period calendar as Spark column expressions (Europe/London, session time zone UTC).

Mirrors :mod:`margin_pipeline.contracts.calendar`; tests check the two agree on
both clock-change days.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

LONDON = "Europe/London"
HALF_HOUR_SECONDS = 1800


def local_midnight_utc(day: Column) -> Column:
    """Local midnight of a local date, as a UTC timestamp."""
    return F.to_utc_timestamp(F.to_timestamp(day), LONDON)


def periods_in_day(day: Column) -> Column:
    """N(d): 48, or 46 / 50 on the clock-change days."""
    span = F.unix_seconds(local_midnight_utc(F.date_add(day, 1))) - F.unix_seconds(local_midnight_utc(day))
    return (span / HALF_HOUR_SECONDS).cast("int")


def period_start_utc(day: Column, period: Column) -> Column:
    """UTC start of settlement period ``period`` of local date ``day``."""
    seconds = F.unix_seconds(local_midnight_utc(day)) + (period.cast("long") - 1) * HALF_HOUR_SECONDS
    return F.timestamp_seconds(seconds)


def local_time_hhmm(instant: Column) -> Column:
    """Local wall-clock time of a UTC instant, as ``HH:mm`` (compares correctly as text)."""
    return F.date_format(F.from_utc_timestamp(instant, LONDON), "HH:mm")


def local_date(instant: Column) -> Column:
    return F.to_date(F.from_utc_timestamp(instant, LONDON))


def month_start(day: Column) -> Column:
    """First day of the calendar month of a local date."""
    return F.trunc(day, "month")
