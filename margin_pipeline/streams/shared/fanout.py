"""How a reference-data change fans out to MPAN date ranges ``(mpan_core, first, last)``.

Every function takes change-feed rows (both images of an update, so where a row
*was* and where it *is* are both covered) plus pinned snapshots, and returns
inclusive local-date ranges per MPAN (``last`` null = open). Streams turn those
ranges into the output keys they own.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from margin_pipeline.store.base import CHANGE_TYPE, COMMIT_VERSION
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


def agreement_changes(changes: DataFrame) -> DataFrame:
    """The dates whose supply agreement changes alter: ``(account_id, mpan_core, first, last)``.

    Per agreement key, the state before the range (absent when its first change inserted it) is
    compared with the state after it (absent when its last change deleted it). A new ``supply_end``
    on the same tariff touches only the days between the old and the new end: closing an open
    agreement touches the days after its new end, not its whole history. An insert, a delete or a
    tariff switch touches the agreement's whole range. ``last`` null means open.
    """
    key = ["account_id", "mpan_core", "supply_start"]
    kind = F.col(CHANGE_TYPE)
    # The first change of a key shows its old state unless it inserted the key; the last (ignoring
    # pre-images) shows its new state unless it deleted it.
    leaves_old = kind.isin("update_preimage", "delete")
    first = Window.partitionBy(*key).orderBy(F.col(COMMIT_VERSION).asc(), leaves_old.desc())
    last = Window.partitionBy(*key).orderBy(F.col(COMMIT_VERSION).desc(), (kind == "delete").asc())
    before = (
        changes.withColumn("_n", F.row_number().over(first))
        .where((F.col("_n") == 1) & leaves_old)
        .select(*key, F.col("tariff_code").alias("old_tariff"), F.col("supply_end").alias("old_end"))
    )
    after = (
        changes.where(kind != "update_preimage")
        .withColumn("_n", F.row_number().over(last))
        .where((F.col("_n") == 1) & (kind != "delete"))
        .select(*key, F.col("tariff_code").alias("new_tariff"), F.col("supply_end").alias("new_end"))
    )
    far = F.lit("9999-12-31").cast("date")
    never = F.lit("0001-01-01").cast("date")
    old_end, new_end = F.coalesce("old_end", far), F.coalesce("new_end", far)
    both = F.col("old_tariff").isNotNull() & F.col("new_tariff").isNotNull()
    moved_end = both & (F.col("old_tariff") == F.col("new_tariff"))
    start = F.when(moved_end, F.date_add(F.least(old_end, new_end), 1)).otherwise(F.col("supply_start"))
    end = F.greatest(
        F.when(F.col("old_tariff").isNotNull(), old_end).otherwise(never),
        F.when(F.col("new_tariff").isNotNull(), new_end).otherwise(never),
    )
    unchanged = moved_end & (old_end == new_end)
    return (
        before.join(after, key, "full_outer")
        .where(
            ~F.coalesce(unchanged, F.lit(False))
            & (F.col("old_tariff").isNotNull() | F.col("new_tariff").isNotNull())
        )
        .select(
            "account_id",
            "mpan_core",
            start.alias("first"),
            F.when(end == far, F.lit(None).cast("date")).otherwise(end).alias("last"),
        )
    )


def agreement_ranges(changes: DataFrame) -> DataFrame:
    """MPAN date ranges whose supply agreement changes alter (see :func:`agreement_changes`)."""
    return agreement_changes(changes).select(*RANGE)


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
