"""The monthly stream's first output, the per-MPAN-day ledger.

The ledger consumes the substrate and the two upstream published tables
(``settlement_cost_hh``, ``hh_revenue``) through their change feeds at MPAN-day
grain. It keeps per day the count and sum of the day's half-hourly rows in each,
so a run adds the feeds' differences to the tallies it holds rather than
re-reading every half hour of the days it touches (a restated price alone touches
every MPAN of its date); reference changes (agreements, tariffs, rates, metering
points) re-derive the days they touch from the tallies. ``gold/monthly_margin``
(:mod:`.margin`) consumes the ledger's change feed at account x month grain, one
step per affected month.
"""

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.gold import HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.streams.monthly.rules import (
    DAY,
    TALLY_OF,
    add_tallies,
    day_ledger,
    tallies,
    tally_changes,
)
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.changes import changed_keys, union_all
from margin_pipeline.streams.shared.fanout import supply_ranges
from margin_pipeline.streams.shared.quality import LEDGER_CHECKS
from margin_pipeline.streams.shared.runner import (
    Source,
    StreamOutput,
    StreamRun,
    in_dates,
    settlement_dates,
    volume_runs,
)
from margin_pipeline.streams.shared.tariffs import validity_overlaps
from margin_pipeline.streams.shared.volumes import in_ranges, range_predicate
from margin_pipeline.substrate.tables import RUNS, SUBSTRATE

FAR_PAST = dt.date(1900, 1, 1)  # before any settlement date
STREAM = "monthly"
LEDGER_WATERMARK = "monthly.day_ledger"
LEDGER_SOURCES = [
    *(
        Source(name, SUBSTRATE[name])
        for name in (
            "settlement_volumes",
            RUNS,
            "metering_points",
            "supply_agreements",
            "tariffs",
            "tariff_rates",
        )
    ),
    # The ledger takes a date's run from publication_runs, so the cost re-stamps are not read.
    Source("settlement_cost_hh", SETTLEMENT_COST_HH, pinned_by_substrate=False, skip_run_restamps=True),
    Source("hh_revenue", HH_REVENUE, pinned_by_substrate=False),
]


def plan_ledger(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ledger rows for the MPAN-days this run touches, and those MPAN-days."""
    metering_points = run.snapshot("metering_points")
    agreements = run.snapshot("supply_agreements")
    tariffs = run.snapshot("tariffs")
    if run.full:
        tallied = tallies({name: (run.snapshot(name), run.targets[name]) for name in TALLY_OF})
        days = None
        dates = settlement_dates(tallied)
    else:
        changes = {name: c for name in TALLY_OF if (c := run.changes(name)) is not None}
        days = _touched_days(run, changes, metering_points, agreements)
        # Every touched day is held or in a feed, so the tallied days' dates are these.
        dates = settlement_dates(days)
        held = run.output_rows(DAY_LEDGER, in_dates(dates)).join(days, DAY, "left_semi").cache()
        tallied = add_tallies(held, tally_changes(changes, held)).cache()
    if not dates:
        return run.empty(DAY_LEDGER), days
    rates = run.snapshot("tariff_rates", where=validity_overlaps(dates))
    bounds = (dates[0], dates[-1])
    ledger = day_ledger(tallied, metering_points, agreements, tariffs, rates, volume_runs(run), bounds)
    return ledger, days


def _touched_days(
    run: StreamRun, changes: dict[str, DataFrame], metering_points: DataFrame, agreements: DataFrame
) -> DataFrame:
    """Days with half-hourly changes, and held days whose supply, tariff, rates or metering point changed."""
    parts = [changed_keys(c, DAY) for c in changes.values()]
    ranges = supply_ranges(run, metering_points, agreements)
    if (points := run.changes("metering_points")) is not None:  # a new group: other rates
        every_day = (F.lit(FAR_PAST).alias("first"), F.lit(None).cast("date").alias("last"))
        ranges.append(changed_keys(points, ["mpan_core"]).select("mpan_core", *every_day))
    if ranges and (where := range_predicate(touched := union_all(ranges))) is not None:
        parts.append(in_ranges(run.output_rows(DAY_LEDGER, where), touched).select(*DAY))
    if not parts:
        return run.empty(DAY_LEDGER).select(*DAY)
    return union_all(parts).distinct().cache()


LEDGER = StreamOutput(
    STREAM,
    DAY_LEDGER,
    LEDGER_SOURCES,
    plan_ledger,
    LEDGER_WATERMARK,
    checks=LEDGER_CHECKS,
    in_place=(StreamRun.restamp_runs,),
)
