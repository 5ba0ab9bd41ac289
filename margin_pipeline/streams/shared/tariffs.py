"""Tariff lookups shared by the revenue streams, as pure DataFrame functions.

Rate rows have UTC validity ``[valid_from, valid_to)``. Rather than range-joining
every half hour against every rate row, rates are expanded onto the keys they
are looked up by: half-hour slot starts (``slot_rates``, for HH unit rates) and
local days (``daily_rates``, the row valid at local midnight: standing charges and
MONTHLY unit rates). Both are equi-joins afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.contracts.calendar import local_midnight_utc as local_midnight
from margin_pipeline.streams.shared.calendar import (
    HALF_HOUR_SECONDS,
    local_date,
    local_midnight_utc,
    periods_in_day,
)

VAT_DIVISOR = 1.05  # published rates include 5% VAT; revenue excludes it
OPEN_END = dt.date(9999, 12, 31)


def supplied(volumes: DataFrame, agreements: DataFrame, tariffs: DataFrame, how: str = "inner") -> DataFrame:
    """Rows (volume rows, or MPAN-days) with the ``account_id, tariff_code, billing_grain`` of the
    agreement covering them.

    Agreements of one MPAN never overlap (ingest rejects it), so a row has at most one. With the
    default ``how="inner"`` rows with no agreement, or whose tariff is not known yet, drop out;
    with ``"left"`` they stay, those three columns null.
    """
    a = agreements.select("account_id", "mpan_core", "tariff_code", "supply_start", "supply_end")
    a = a.join(tariffs.select("tariff_code", "billing_grain"), "tariff_code").alias("a")
    v = volumes.alias("v")
    covered = (
        (F.col("v.mpan_core") == F.col("a.mpan_core"))
        & (F.col("v.settlement_date") >= F.col("a.supply_start"))
        & (F.col("a.supply_end").isNull() | (F.col("v.settlement_date") <= F.col("a.supply_end")))
    )
    return v.join(a, covered, how).select("v.*", "a.account_id", "a.tariff_code", "a.billing_grain")


def slot_rates(tariff_rates: DataFrame, first_day: dt.date, last_day: dt.date) -> DataFrame:
    """Unit rate per ``(tariff_code, gsp_group, slot_start)``: the row valid at each half-hour start.

    Only slots of local dates ``first_day..last_day`` are produced.
    """
    lo = F.unix_seconds(local_midnight_utc(F.lit(first_day)))
    hi = F.unix_seconds(local_midnight_utc(F.lit(last_day + dt.timedelta(days=1))))  # exclusive
    start = F.greatest(F.ceil(F.unix_seconds("valid_from") / HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS, lo)
    end = F.least(F.unix_seconds("valid_to"), hi)  # exclusive
    return (
        tariff_rates.where(
            (F.col("valid_to") > F.timestamp_seconds(lo)) & (F.col("valid_from") < F.timestamp_seconds(hi))
        )
        .withColumn("_start", start.cast("long"))
        .withColumn("_end", end.cast("long"))
        .where(F.col("_start") < F.col("_end"))
        .withColumn(
            "slot_seconds",
            F.explode(F.sequence(F.col("_start"), F.col("_end") - 1, F.lit(HALF_HOUR_SECONDS).cast("long"))),
        )
        .select(
            "tariff_code",
            "gsp_group",
            F.timestamp_seconds("slot_seconds").alias("slot_start"),
            "unit_rate_p_per_kwh",
        )
    )


def daily_rates(tariff_rates: DataFrame, first_day: dt.date, last_day: dt.date) -> DataFrame:
    """Rates valid at local midnight per ``(tariff_code, gsp_group, settlement_date)``."""
    lo, hi = F.lit(first_day), F.lit(last_day)
    days = F.sequence(
        F.greatest(F.date_sub(local_date(F.col("valid_from")), 1), lo),
        F.least(F.date_add(local_date(F.col("valid_to")), 1), hi),
    )
    return (
        tariff_rates.where(
            (F.col("valid_to") > local_midnight_utc(lo)) & (F.col("valid_from") <= local_midnight_utc(hi))
        )
        .where(F.date_sub(local_date(F.col("valid_from")), 1) <= hi)
        .where(F.date_add(local_date(F.col("valid_to")), 1) >= lo)
        .withColumn("settlement_date", F.explode(days))
        .where(
            (local_midnight_utc(F.col("settlement_date")) >= F.col("valid_from"))
            & (local_midnight_utc(F.col("settlement_date")) < F.col("valid_to"))
        )
        .select(
            "tariff_code",
            "gsp_group",
            "settlement_date",
            "unit_rate_p_per_kwh",
            "standing_charge_p_per_day",
        )
    )


def fully_rated_days(slots: DataFrame) -> DataFrame:
    """``(tariff_code, gsp_group, settlement_date)`` whose every period has a unit rate."""
    return (
        slots.withColumn("settlement_date", local_date(F.col("slot_start")))
        .groupBy("tariff_code", "gsp_group", "settlement_date")
        .agg(F.countDistinct("slot_start").alias("_rated"))
        .where(F.col("_rated") == periods_in_day(F.col("settlement_date")))
        .select("tariff_code", "gsp_group", "settlement_date")
    )


def pence_ex_vat_to_gbp(pence):
    return pence / 100 / VAT_DIVISOR


def _date_runs(days: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Ascending ``days`` as ranges ``(first, last)`` of consecutive days."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days <= 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def validity_overlaps(days: Sequence[dt.date]) -> str:
    """SQL predicate: rate rows valid at some instant of the local dates ``days`` (ascending), one
    UTC range per run of consecutive dates, from the first date's local midnight to the local
    midnight after the last.

    Exactly the rows :func:`slot_rates` (valid at a half-hour start of the range) and
    :func:`daily_rates` (valid at a local midnight of the range) can use; usable for file pruning
    and as a filter. An incremental run gives the dates it touches, so the rates of the days between
    a restated date and the new date are not read. No days: ``false``.

    Rate timestamps are whole seconds (ingest accepts ``YYYY-MM-DDTHH:MM:SSZ`` only), so
    ``valid_to > start`` is written ``valid_to >= start + 1 s``: Delta keeps timestamp statistics
    to the millisecond, so delta-rs cannot prune on ``>`` a file whose last row ends exactly at
    ``start`` (the day before's), but can on ``>=`` a second later.
    """
    terms = []
    for first_day, last_day in _date_runs(days):
        after_start = _utc_literal(local_midnight(first_day) + dt.timedelta(seconds=1))
        end = _utc_literal(local_midnight(last_day + dt.timedelta(days=1)))
        terms.append(f"(valid_to >= '{after_start}' AND valid_from < '{end}')")
    return " OR ".join(terms) or "false"


def _utc_literal(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
