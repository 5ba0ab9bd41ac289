"""Which half-hourly volume rows a set of changes touches: the scope of the half-hourly streams.

Both half-hourly streams (settlement, half_hourly) produce one output row per
volume row, so their scope is a set of volume keys. Changed volume rows are taken
straight from the change feed (their state at the pinned version); reference
changes fan out to the volume rows they touch, read from the pinned snapshot with
partition pruning on settlement_date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.streams.shared.changes import changed_keys, latest_state, union_all
from margin_pipeline.streams.shared.runner import (
    VOLUMES,
    Snapshots,
    StreamRun,
    settlement_dates,
    volume_runs,
)

VOLUME_KEY = ["mpan_core", "settlement_date", "settlement_period"]
FAR_FUTURE = dt.date(9999, 12, 31)


@dataclass(frozen=True)
class VolumeScope:
    """Volume rows to compute (values at the pinned version) and the output keys in scope.

    ``keys`` is None for a full recompute (every output key is in scope).
    """

    rows: DataFrame
    keys: DataFrame | None


def no_volumes(run: StreamRun) -> DataFrame:
    """An empty frame of volume rows (reads nothing)."""
    return run.empty(run.by_name[VOLUMES].spec)


def full_scope(run: StreamRun) -> VolumeScope:
    return VolumeScope(run.snapshot(VOLUMES), None)


def volume_scope(run: StreamRun, fanned_out: list[DataFrame]) -> VolumeScope:
    """Combine changed volume rows with the volume rows reference changes fanned out to.

    ``fanned_out`` are volume-snapshot rows (full volume columns) selected by the stream.
    """
    changes = run.changes(VOLUMES)
    rows: list[DataFrame] = []
    keys: list[DataFrame] = []
    if changes is not None:
        alive, _deleted = latest_state(changes, VOLUME_KEY)
        rows.append(alive)
        keys.append(changed_keys(changes, VOLUME_KEY))
    for frame in fanned_out:
        rows.append(frame)
        keys.append(frame.select(*VOLUME_KEY))
    if not rows:
        empty = no_volumes(run)
        return VolumeScope(empty, empty.select(*VOLUME_KEY))
    return VolumeScope(union_all(rows).dropDuplicates(VOLUME_KEY).cache(), union_all(keys).distinct().cache())


def with_run(run: Snapshots, rows: DataFrame) -> DataFrame:
    """Volume rows with ``run_type``: the run held for their date (``publication_runs``, pinned)."""
    return rows.join(F.broadcast(volume_runs(run)), "settlement_date", "left")


def volumes_of_mpans(run: StreamRun, mpans: DataFrame) -> DataFrame:
    """Every held volume row of the given MPANs (``mpan_core``)."""
    return run.snapshot(VOLUMES).join(mpans.select("mpan_core").distinct(), "mpan_core", "left_semi")


def volumes_of_slots(run: StreamRun, slots: DataFrame) -> DataFrame:
    """Held volume rows of the given dates, or (date, period) pairs when ``slots`` has a period column.

    For :func:`volume_scope`: the dates whose every held row is in the volume change feed (a new
    date published with its prices) are not read, as the scope takes those rows from the feed.
    """
    on: list[str] = [c for c in ("settlement_date", "settlement_period") if c in slots.columns]
    days = run.dates_to_read(VOLUMES, VOLUME_KEY, settlement_dates(slots))
    if not days:
        return no_volumes(run)
    return run.rows_for(VOLUMES, slots, on, days)


def volumes_in_ranges(run: StreamRun, ranges: DataFrame) -> DataFrame:
    """Held volume rows of an MPAN whose date is in one of its ranges (see :func:`in_ranges`)."""
    where = range_predicate(ranges)
    return no_volumes(run) if where is None else in_ranges(run.snapshot(VOLUMES, where=where), ranges)


def range_predicate(ranges: DataFrame) -> str | None:
    """SQL over ``settlement_date`` spanning every range (for partition pruning); None: no ranges."""
    bounds = ranges.agg(F.min("first"), F.max(F.coalesce("last", F.lit(FAR_FUTURE)))).first()
    if bounds is None or bounds[0] is None:
        return None
    return f"settlement_date >= '{bounds[0].isoformat()}' AND settlement_date <= '{bounds[1].isoformat()}'"


def in_ranges(rows: DataFrame, ranges: DataFrame) -> DataFrame:
    """``rows`` of an MPAN whose ``settlement_date`` is in one of its ranges.

    ``ranges`` has ``mpan_core``, ``first`` and ``last`` (inclusive dates; a null last is open).
    """
    r = ranges.select("mpan_core", "first", "last").distinct().alias("r")
    v = rows.alias("v")
    inside = (
        (F.col("v.mpan_core") == F.col("r.mpan_core"))
        & (F.col("v.settlement_date") >= F.col("r.first"))
        & (F.col("r.last").isNull() | (F.col("v.settlement_date") <= F.col("r.last")))
    )
    return v.join(F.broadcast(r), inside, "left_semi").select("v.*")
