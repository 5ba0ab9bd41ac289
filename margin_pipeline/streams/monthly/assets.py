"""The monthly stream's assets and job: a per-MPAN-day ledger, then ``gold/monthly_margin``.

The ledger consumes the substrate and the two upstream published tables
(``settlement_cost_hh``, ``hh_revenue``) through their change feeds at MPAN-day
grain; the margin consumes the ledger's change feed at account x month grain.
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.gold import HH_REVENUE, MONTHLY_MARGIN, SETTLEMENT_COST_HH
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.monthly.rules import DAY, day_ledger, monthly_margin
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.assets import stream_asset, stream_job
from margin_pipeline.streams.shared.calendar import month_start
from margin_pipeline.streams.shared.changes import changed_keys, union_all
from margin_pipeline.streams.shared.fanout import supply_ranges
from margin_pipeline.streams.shared.runner import Source, StreamRun
from margin_pipeline.streams.shared.tariffs import date_bounds, validity_overlaps
from margin_pipeline.streams.shared.volumes import volumes_in_ranges, volumes_of_mpans
from margin_pipeline.substrate.tables import SUBSTRATE

STREAM = "monthly"
LEDGER_WATERMARK = "monthly.day_ledger"
MARGIN_WATERMARK = "monthly.margin"
LEDGER_SOURCES = [
    *(
        Source(name, SUBSTRATE[name])
        for name in ("settlement_volumes", "metering_points", "supply_agreements", "tariffs", "tariff_rates")
    ),
    Source("settlement_cost_hh", SETTLEMENT_COST_HH, pinned_by_substrate=False),
    Source("hh_revenue", HH_REVENUE, pinned_by_substrate=False),
]
MARGIN_SOURCES = [
    Source("monthly_day_ledger", DAY_LEDGER, pinned_by_substrate=False),
    Source("supply_agreements", SUBSTRATE["supply_agreements"]),
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


def plan_margin(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """Desired ``monthly_margin`` rows for the account-months this run touches, and those months."""
    agreements = run.snapshot("supply_agreements")
    ledger = run.snapshot("monthly_day_ledger").withColumn("month", month_start(F.col("settlement_date")))
    if run.full:
        return monthly_margin(ledger, agreements), None
    months = _affected_months(run, ledger)
    rows = ledger.join(months, ["account_id", "month"], "left_semi")
    return monthly_margin(rows, agreements), months


def _affected_months(run: StreamRun, ledger: DataFrame) -> DataFrame:
    parts = []
    if (changes := run.changes("monthly_day_ledger")) is not None:
        parts.append(changes.select("account_id", month_start(F.col("settlement_date")).alias("month")))
    if (changes := run.changes("supply_agreements")) is not None:
        last_day = ledger.agg(F.max("settlement_date")).first()[0]
        if last_day is not None:
            end = F.least(F.coalesce(F.col("supply_end"), F.lit(last_day)), F.lit(last_day))
            spans = changed_keys(changes, ["account_id", "supply_start", "supply_end"]).where(
                F.col("supply_start") <= F.lit(last_day)
            )
            parts.append(
                spans.select(
                    "account_id",
                    F.explode(
                        F.sequence(
                            month_start(F.col("supply_start")), month_start(end), F.expr("INTERVAL 1 MONTH")
                        )
                    ).alias("month"),
                )
            )
    if not parts:
        return run.empty(MONTHLY_MARGIN).select("account_id", "month")
    return union_all(parts).where(F.col("account_id").isNotNull()).distinct().cache()


monthly_day_ledger = stream_asset(
    stream=STREAM,
    watermark=LEDGER_WATERMARK,
    output=DAY_LEDGER,
    sources=LEDGER_SOURCES,
    plan=plan_ledger,
    profile=MonthlyProfile,
    description="Internal to the monthly stream: one row per supplied MPAN-day with volumes — meter kWh, "
    "revenue, cost, run type and whether the day contributes to its month.",
)

monthly_margin_asset = stream_asset(
    stream=STREAM,
    watermark=MARGIN_WATERMARK,
    output=MONTHLY_MARGIN,
    sources=MARGIN_SOURCES,
    plan=plan_margin,
    profile=MonthlyProfile,
    description="Monthly margin of every account: kWh, revenue, cost and margin over the month's "
    "contributing MPAN-days, with the billing grain and whether the month is final "
    "(contracts.md 'monthly_margin').",
)

monthly_stream = stream_job(
    "monthly_stream", STREAM, "Monthly stream: per-MPAN-day ledger, then monthly margin per account."
)
