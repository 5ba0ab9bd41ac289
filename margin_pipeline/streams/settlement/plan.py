"""The settlement stream's plan: ``gold/settlement_cost_hh`` from the substrate change feed."""

from pyspark.sql import DataFrame

from margin_pipeline.gold import SETTLEMENT_COST_HH
from margin_pipeline.operations.quality import SETTLEMENT_CHECKS
from margin_pipeline.streams.settlement.profile import SettlementProfile
from margin_pipeline.streams.settlement.rules import settlement_cost
from margin_pipeline.streams.shared.changes import changed_keys
from margin_pipeline.streams.shared.fanout import charge_ranges
from margin_pipeline.streams.shared.runner import Source, StreamOutput, StreamRun, dates_in
from margin_pipeline.streams.shared.volumes import (
    VolumeScope,
    full_scope,
    volume_scope,
    volumes_in_ranges,
    volumes_of_mpans,
    volumes_of_slots,
)
from margin_pipeline.substrate.tables import SUBSTRATE

STREAM = "settlement"
SOURCES = [
    Source(name, SUBSTRATE[name]) for name in ("settlement_volumes", "metering_points", "prices", "charges")
]


def plan_settlement(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ``settlement_cost_hh`` rows for the scope of this run, and that scope."""
    metering_points = run.snapshot("metering_points")
    charges = run.snapshot("charges")
    scope = full_scope(run) if run.full else _incremental_scope(run, metering_points)
    prices = run.snapshot("prices", where=None if scope.keys is None else dates_in(scope.rows))
    return settlement_cost(scope.rows, metering_points, prices, charges), scope.keys


def _incremental_scope(run: StreamRun, metering_points: DataFrame) -> VolumeScope:
    fanned_out = []
    if (prices := run.changes("prices")) is not None:
        fanned_out.append(
            volumes_of_slots(run, changed_keys(prices, ["settlement_date", "settlement_period"]))
        )
    if (points := run.changes("metering_points")) is not None:
        fanned_out.append(volumes_of_mpans(run, changed_keys(points, ["mpan_core"])))
    if (charges := run.changes("charges")) is not None:
        fanned_out.append(volumes_in_ranges(run, charge_ranges(charges, metering_points)))
    return volume_scope(run, fanned_out)


COST = StreamOutput(
    STREAM, SETTLEMENT_COST_HH, SOURCES, plan_settlement, SettlementProfile, checks=SETTLEMENT_CHECKS
)
