"""The half_hourly stream's plan: ``gold/hh_revenue`` from the substrate change feed."""

from pyspark.sql import DataFrame

from margin_pipeline.gold import HH_REVENUE
from margin_pipeline.streams.half_hourly.rules import hh_revenue
from margin_pipeline.streams.shared.changes import changed_keys
from margin_pipeline.streams.shared.fanout import supply_ranges
from margin_pipeline.streams.shared.quality import HH_REVENUE_CHECKS
from margin_pipeline.streams.shared.runner import Source, StreamOutput, StreamRun, settlement_dates
from margin_pipeline.streams.shared.tariffs import validity_overlaps
from margin_pipeline.streams.shared.volumes import (
    VolumeScope,
    full_scope,
    volume_scope,
    volumes_in_ranges,
    volumes_of_mpans,
)
from margin_pipeline.substrate.tables import SUBSTRATE

STREAM = "half_hourly"
SOURCES = [
    Source(name, SUBSTRATE[name])
    for name in ("settlement_volumes", "metering_points", "supply_agreements", "tariffs", "tariff_rates")
]


def plan_half_hourly(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ``hh_revenue`` rows for the scope of this run, and that scope."""
    metering_points = run.snapshot("metering_points")
    agreements = run.snapshot("supply_agreements")
    tariffs = run.snapshot("tariffs")
    scope = full_scope(run) if run.full else _incremental_scope(run, metering_points, agreements)
    dates = settlement_dates(scope.rows)
    if not dates:
        return run.empty(HH_REVENUE), scope.keys
    rates = run.snapshot("tariff_rates", where=validity_overlaps(dates))
    bounds = (dates[0], dates[-1])
    return hh_revenue(scope.rows, metering_points, agreements, tariffs, rates, bounds), scope.keys


def _incremental_scope(run: StreamRun, metering_points: DataFrame, agreements: DataFrame) -> VolumeScope:
    ranges = supply_ranges(run, metering_points, agreements)
    fanned_out = [volumes_in_ranges(run, r) for r in ranges]
    if (changes := run.changes("metering_points")) is not None:
        fanned_out.append(volumes_of_mpans(run, changed_keys(changes, ["mpan_core"])))
    return volume_scope(run, fanned_out)


REVENUE = StreamOutput(STREAM, HH_REVENUE, SOURCES, plan_half_hourly, checks=HH_REVENUE_CHECKS)
