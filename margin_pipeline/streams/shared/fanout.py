"""How a reference-data change fans out to MPAN date ranges ``(mpan_core, first, last)``.

Every function takes change-feed rows (both images of an update, so where a row
*was* and where it *is* are both covered) plus pinned snapshots, and returns
inclusive local-date ranges per MPAN (``last`` null = open). Streams turn those
ranges into the output keys they own.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.streams.shared.calendar import local_date
from margin_pipeline.streams.shared.changes import changed_keys
from margin_pipeline.streams.shared.runner import StreamRun

RANGE = ("mpan_core", "first", "last")


def mpans_in_groups(metering_points: DataFrame, groups: DataFrame) -> DataFrame:
    """Ranges per MPAN from ranges per GSP group (``gsp_group`` "" means every group)."""
    g = groups.alias("g")
    m = metering_points.select("mpan_core", "gsp_group").alias("m")
    on = (F.col("g.gsp_group") == "") | (F.col("g.gsp_group") == F.col("m.gsp_group"))
    return m.join(F.broadcast(g), on).select("m.mpan_core", "g.first", "g.last")


def charge_ranges(changes: DataFrame, metering_points: DataFrame) -> DataFrame:
    """A charge row touches its GSP group(s) over ``[valid_from, valid_to)``."""
    groups = changed_keys(changes, ["gsp_group", "valid_from", "valid_to"]).select(
        "gsp_group", F.col("valid_from").alias("first"), F.date_sub(F.col("valid_to"), 1).alias("last")
    )
    return mpans_in_groups(metering_points, groups)


def agreement_ranges(changes: DataFrame) -> DataFrame:
    """An agreement touches its MPAN over its supply dates (old and new, for a correction)."""
    return changed_keys(changes, ["mpan_core", "supply_start", "supply_end"]).select(
        "mpan_core", F.col("supply_start").alias("first"), F.col("supply_end").alias("last")
    )


def tariff_ranges(changes: DataFrame, agreements: DataFrame) -> DataFrame:
    """A tariff (its billing grain) touches every agreement on it."""
    codes = changed_keys(changes, ["tariff_code"])
    return agreements.join(codes, "tariff_code", "left_semi").select(
        "mpan_core", F.col("supply_start").alias("first"), F.col("supply_end").alias("last")
    )


def rate_ranges(changes: DataFrame, agreements: DataFrame, metering_points: DataFrame) -> DataFrame:
    """A rate row touches the local days its UTC validity overlaps, for MPANs on that tariff in that group."""
    rates = changed_keys(changes, ["tariff_code", "gsp_group", "valid_from", "valid_to"]).select(
        "tariff_code",
        F.col("gsp_group").alias("rate_gsp"),
        local_date(F.col("valid_from")).alias("rate_first"),
        local_date(F.col("valid_to") - F.expr("INTERVAL 1 SECOND")).alias("rate_last"),
    )
    far = F.lit("9999-12-31").cast("date")
    return (
        agreements.join(F.broadcast(rates), "tariff_code")
        .join(metering_points.select("mpan_core", "gsp_group"), "mpan_core")
        .where(F.col("gsp_group") == F.col("rate_gsp"))
        .select(
            "mpan_core",
            F.greatest("rate_first", "supply_start").alias("first"),
            F.least("rate_last", F.coalesce("supply_end", far)).alias("last"),
        )
        .where(F.col("first") <= F.col("last"))
    )


def supply_ranges(run: StreamRun, metering_points: DataFrame, agreements: DataFrame) -> list[DataFrame]:
    """MPAN date ranges touched by this run's changes to who is supplied on what tariff at what rate."""
    ranges = []
    if (changes := run.changes("supply_agreements")) is not None:
        ranges.append(agreement_ranges(changes))
    if (changes := run.changes("tariffs")) is not None:
        ranges.append(tariff_ranges(changes, agreements))
    if (changes := run.changes("tariff_rates")) is not None:
        ranges.append(rate_ranges(changes, agreements, metering_points))
    return ranges
