"""The monthly stream's first output, the per-MPAN-day ledger.

The ledger consumes the substrate and the two upstream published tables
(``settlement_cost_hh``, ``hh_revenue``) through their change feeds at MPAN-day
grain; ``gold/monthly_margin`` (:mod:`.margin`) consumes the ledger's change feed
at account x month grain, one step per affected month.
"""

from pyspark.sql import DataFrame

from margin_pipeline.gold import HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.operations.quality import LEDGER_CHECKS
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.monthly.rules import DAY, day_ledger
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.changes import changed_keys, union_all
from margin_pipeline.streams.shared.fanout import supply_ranges
from margin_pipeline.streams.shared.runner import Source, StreamOutput, StreamRun
from margin_pipeline.streams.shared.tariffs import date_bounds, validity_overlaps
from margin_pipeline.streams.shared.volumes import volumes_in_ranges, volumes_of_mpans
from margin_pipeline.substrate.tables import SUBSTRATE

STREAM = "monthly"
LEDGER_WATERMARK = "monthly.day_ledger"
LEDGER_SOURCES = [
    *(
        Source(name, SUBSTRATE[name])
        for name in ("settlement_volumes", "metering_points", "supply_agreements", "tariffs", "tariff_rates")
    ),
    Source("settlement_cost_hh", SETTLEMENT_COST_HH, pinned_by_substrate=False),
    Source("hh_revenue", HH_REVENUE, pinned_by_substrate=False),
]


def plan_ledger(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ledger rows for the MPAN-days this run touches, and those MPAN-days."""
    metering_points = run.snapshot("metering_points")
    agreements = run.snapshot("supply_agreements")
    tariffs = run.snapshot("tariffs")
    days = None if run.full else _affected_days(run, metering_points, agreements)
    volumes = run.rows_for("settlement_volumes", days, DAY)
    bounds = date_bounds(volumes)
    if bounds is None:
        return run.empty(DAY_LEDGER), days
    rates = run.snapshot("tariff_rates", where=validity_overlaps(*bounds))
    costs = run.rows_for("settlement_cost_hh", days, DAY)
    revenue = run.rows_for("hh_revenue", days, DAY)
    ledger = day_ledger(volumes, metering_points, agreements, tariffs, rates, costs, revenue, bounds)
    return ledger, days


def _affected_days(run: StreamRun, metering_points: DataFrame, agreements: DataFrame) -> DataFrame:
    parts = [
        changed_keys(changes, DAY)
        for name in ("settlement_volumes", "settlement_cost_hh", "hh_revenue")
        if (changes := run.changes(name)) is not None
    ]
    ranges = supply_ranges(run, metering_points, agreements)
    parts += [volumes_in_ranges(run, r).select(*DAY) for r in ranges]
    if (changes := run.changes("metering_points")) is not None:
        mpans = changed_keys(changes, ["mpan_core"])
        parts.append(volumes_of_mpans(run, mpans).select(*DAY))
    if not parts:
        return run.empty(DAY_LEDGER).select(*DAY)
    return union_all(parts).distinct().cache()


LEDGER = StreamOutput(
    STREAM, DAY_LEDGER, LEDGER_SOURCES, plan_ledger, MonthlyProfile, LEDGER_WATERMARK, checks=LEDGER_CHECKS
)
