"""The settlement stream's plan: ``gold/settlement_cost_hh`` from the substrate change feed."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.gold import SETTLEMENT_COST_HH
from margin_pipeline.store import MergeOutcome, TableSpec
from margin_pipeline.store.base import CHANGE_TYPE
from margin_pipeline.streams.settlement.rules import REPRICED, settlement_cost
from margin_pipeline.streams.shared.changes import changed_keys, latest_state
from margin_pipeline.streams.shared.fanout import charge_ranges
from margin_pipeline.streams.shared.quality import SETTLEMENT_CHECKS
from margin_pipeline.streams.shared.runner import Source, StreamOutput, StreamRun, dates_in
from margin_pipeline.streams.shared.volumes import (
    VolumeScope,
    full_scope,
    volume_scope,
    volumes_in_ranges,
    volumes_of_mpans,
    volumes_of_slots,
    with_run,
)
from margin_pipeline.substrate.tables import RUNS, SUBSTRATE

STREAM = "settlement"
SLOT = ["settlement_date", "settlement_period"]
SOURCES = [
    Source(name, SUBSTRATE[name])
    for name in ("settlement_volumes", RUNS, "metering_points", "prices", "charges")
]


def plan_settlement(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ``settlement_cost_hh`` rows for the scope of this run, and that scope."""
    metering_points = run.snapshot("metering_points")
    charges = run.snapshot("charges")
    scope = full_scope(run) if run.full else _incremental_scope(run, metering_points)
    prices = run.snapshot("prices", where=None if scope.keys is None else dates_in(scope.rows))
    return settlement_cost(with_run(run, scope.rows), metering_points, prices, charges), scope.keys


def _incremental_scope(run: StreamRun, metering_points: DataFrame) -> VolumeScope:
    fanned_out = []
    if (prices := run.changes("prices")) is not None:
        # Half hours whose price appeared (or went): their waiting volume rows are computed now.
        # Those whose price only changed are re-priced in place (:func:`reprice`).
        fanned_out.append(volumes_of_slots(run, _price_slots(prices).where("appeared")))
    if (points := run.changes("metering_points")) is not None:
        fanned_out.append(volumes_of_mpans(run, changed_keys(points, ["mpan_core"])))
    if (charges := run.changes("charges")) is not None:
        fanned_out.append(volumes_in_ranges(run, charge_ranges(charges, metering_points)))
    return volume_scope(run, fanned_out)


def reprice(run: StreamRun, output: TableSpec) -> MergeOutcome | None:
    """Re-price in place the cost rows of the half hours whose price changed (held before and
    after): a row holds its ``kwh_gsp`` and non-energy cost, so none of the slot's volumes is read
    (a restated date's price changes touch every meter of the date)."""
    if run.full or (prices := run.changes("prices")) is None:
        return None
    slots = _price_slots(prices).where(~F.col("appeared")).select(*SLOT)
    alive, _deleted = latest_state(prices, SLOT)
    new_prices = alive.join(slots, SLOT, "left_semi").select(*SLOT, "price_gbp_per_mwh").toArrow()
    return run.store.update_matching(output, new_prices, tuple(SLOT), REPRICED, run.commit_info())


def _price_slots(prices: DataFrame) -> DataFrame:
    """Each half hour the price change feed touched; ``appeared``: it was inserted or deleted in the
    range (else its price only changed)."""
    appeared = F.col(CHANGE_TYPE).isin("insert", "delete").cast("int")
    return prices.groupBy(*SLOT).agg((F.max(appeared) == 1).alias("appeared"))


COST = StreamOutput(
    STREAM,
    SETTLEMENT_COST_HH,
    SOURCES,
    plan_settlement,
    checks=SETTLEMENT_CHECKS,
    in_place=(reprice, StreamRun.restamp_runs),
)
