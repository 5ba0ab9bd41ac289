"""Monthly margin, as pure DataFrame functions (docs/contract.md, "Monthly margin").

Two steps. The *day ledger* holds, per MPAN-day with half-hourly rows, the tallies of
those rows (count and sum per source: volumes kWh, settlement cost, hh_revenue), the
supply (account, tariff, billing grain), the run type and whether the day *contributes*
(volumes present, revenue and cost both computable for every period of the day):

    cost                           = total cost over the day, when all N(d) periods are costed
    revenue on HH-tariff days      = hh_revenue over the day, when all N(d) periods are present
    revenue on MONTHLY-tariff days = kWh x unit rate / 100 / 1.05 + standing / 100 / 1.05,
                                     both from the (tariff, gsp_group) row valid at local midnight

A full rebuild tallies the tables (:func:`tallies`); a run adds the change feeds'
differences to the tallies it holds (:func:`tally_changes`, :func:`add_tallies`); both
then derive the rest the same way (:func:`day_ledger`).

The *margin* sums contributing days per account and calendar month; ``days_supplied``
counts them; ``billing_grain`` is HH / MONTHLY when all share it, else MIXED;
``final`` when every supplied day of the month (from the agreements) contributes and
all are at RF or DF. An account-month with no contributing day has no row.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from margin_pipeline.contracts.feeds import FINAL_RUN_TYPES
from margin_pipeline.store.base import CHANGE_TYPE, COMMIT_VERSION
from margin_pipeline.streams.monthly.tables import DAY_LEDGER, TALLIES, THROUGH
from margin_pipeline.streams.shared.calendar import month_start, periods_in_day
from margin_pipeline.streams.shared.tariffs import daily_rates, pence_ex_vat_to_gbp, supplied

DAY = ["mpan_core", "settlement_date"]
LEDGER_COLUMNS = tuple(DAY_LEDGER.schema.names)
MARGIN_COLUMNS = (
    "account_id",
    "month",
    "billing_grain",
    "days_supplied",
    "kwh",
    "revenue_gbp",
    "cost_gbp",
    "margin_gbp",
    "final",
)
#: Per source: (count column, sum column, the half-hourly value summed, tallied-through column).
TALLY_OF = {
    "settlement_volumes": ("volume_periods", "kwh", "kwh", "volumes_through"),
    "settlement_cost_hh": ("cost_periods", "cost_total_gbp", "total_cost_gbp", "cost_through"),
    "hh_revenue": ("hh_revenue_periods", "hh_revenue_total_gbp", "revenue_gbp", "hh_revenue_through"),
}
TALLY_COLUMNS = (*TALLIES, *THROUGH)
NOTHING_YET = -1  # tallied through no version of a source


def tally_columns(source: str) -> tuple[str, str, str]:
    """The columns :func:`tally` makes of ``source``'s rows: its count, sum and tallied-through."""
    count, total, _value, version = TALLY_OF[source]
    return count, total, version


def _tally(rows: DataFrame, source: str, sign: Column, through: Column) -> DataFrame:
    count, total, value, version = TALLY_OF[source]
    return rows.groupBy(*DAY).agg(
        F.sum(sign).cast("long").alias(count),
        F.sum(sign * F.col(value)).alias(total),
        F.max(through).cast("long").alias(version),
    )


def combine_tallies(parts: dict[str, DataFrame]) -> DataFrame:
    """Full outer join of per-day tallies (by source, from :func:`tally`) on the day; an absent tally
    is 0 through no version. The columns each part holds are known from its source, so the plan is
    never sent to the engine to learn them."""
    frames = list(parts.values())
    out = frames[0]
    for part in frames[1:]:
        out = out.join(part, DAY, "full_outer")
    present = {column for name in parts for column in tally_columns(name)}
    types = {n: "double" if n in TALLIES and not n.endswith("_periods") else "long" for n in TALLY_COLUMNS}
    zero: dict[str, bool | float | int | str] = {
        n: 0.0 if types[n] == "double" else (NOTHING_YET if n in THROUGH else 0) for n in TALLY_COLUMNS
    }
    for name in TALLY_COLUMNS:
        if name not in present:
            out = out.withColumn(name, F.lit(zero[name]))
    return out.fillna(zero).select(*DAY, *(F.col(n).cast(types[n]).alias(n) for n in TALLY_COLUMNS))


def tally(rows: DataFrame, source: str, version: int) -> DataFrame:
    """Per MPAN-day, the count and sum of ``source``'s ``rows``, tallied through ``version``: one
    source's part of :func:`tallies` (its columns: :func:`tally_columns`)."""
    return _tally(rows, source, F.lit(1), F.lit(version))


def tallies(sources: dict[str, tuple[DataFrame, int]]) -> DataFrame:
    """Per MPAN-day, the count and sum of its rows in each source (``TALLY_OF`` names them), from
    ``{source: (rows at a version, that version)}``: tallied through that version."""
    return combine_tallies({name: tally(rows, name, version) for name, (rows, version) in sources.items()})


def tally_changes(changes: dict[str, DataFrame], held: DataFrame) -> DataFrame | None:
    """Per MPAN-day, what the change feeds add to the ``held`` tallies: an insert or post-image
    counts +1 and adds its value, a delete or pre-image -1 and subtracts it. Only rows of commits
    after the day's tallied-through version count (a replayed range adds nothing); the day is then
    tallied through the last commit counted. None: no changes."""
    adds = F.col(CHANGE_TYPE).isin("insert", "update_postimage")
    sign = F.when(adds, F.lit(1)).otherwise(F.lit(-1))
    parts = {}
    for name, rows in changes.items():
        through = TALLY_OF[name][3]
        new = rows.join(held.select(*DAY, through), DAY, "left").where(
            F.col(COMMIT_VERSION) > F.coalesce(F.col(through), F.lit(NOTHING_YET))
        )
        parts[name] = _tally(new, name, sign, F.col(COMMIT_VERSION))
    return combine_tallies(parts) if parts else None


def add_tallies(held: DataFrame, changes: DataFrame | None) -> DataFrame:
    """``held`` tallies (a ledger's rows) plus the ``changes`` per day; days in either."""
    held = held.select(*DAY, *TALLY_COLUMNS)
    if changes is None:
        return held

    def side(alias: str, name: str, absent: int) -> Column:
        return F.coalesce(F.col(f"{alias}.{name}"), F.lit(absent))

    sums = [(side("h", n, 0) + side("c", n, 0)).alias(n) for n in TALLIES]
    through = [F.greatest(side("h", n, NOTHING_YET), side("c", n, NOTHING_YET)).alias(n) for n in THROUGH]
    return held.alias("h").join(changes.alias("c"), DAY, "full_outer").select(*DAY, *sums, *through)


def day_ledger(
    tallied: DataFrame,
    metering_points: DataFrame,
    agreements: DataFrame,
    tariffs: DataFrame,
    tariff_rates: DataFrame,
    runs: DataFrame,
    days: tuple[dt.date, dt.date],
) -> DataFrame:
    """Ledger rows from per-day tallies within ``days``: a day none of whose sources has a row is
    dropped; the supply, run, revenue, cost and whether the day contributes are derived."""
    n = periods_in_day(F.col("settlement_date"))
    held = tallied.where(
        (F.col("volume_periods") != 0) | (F.col("cost_periods") != 0) | (F.col("hh_revenue_periods") != 0)
    )
    # A tally back at zero rows sums to exactly zero (not to a rounding residue).
    for count, total, _value, _through in TALLY_OF.values():
        held = held.withColumn(total, F.when(F.col(count) == 0, F.lit(0.0)).otherwise(F.col(total)))
    held = held.join(metering_points.select("mpan_core", "gsp_group"), "mpan_core", "left")
    held = supplied(held, agreements, tariffs, how="left")
    rates = daily_rates(tariff_rates, *days)
    keys = ["tariff_code", "gsp_group", "settlement_date"]
    monthly_revenue = pence_ex_vat_to_gbp(F.col("kwh") * F.col("unit_rate_p_per_kwh")) + pence_ex_vat_to_gbp(
        F.col("standing_charge_p_per_day")
    )
    revenue = (
        F.when(F.col("volume_periods") == 0, F.lit(None))
        .when(
            F.col("billing_grain") == "HH",
            F.when(F.col("hh_revenue_periods") == n, F.col("hh_revenue_total_gbp")),
        )
        .when(F.col("billing_grain") == "MONTHLY", monthly_revenue)
    )
    cost = F.when(F.col("cost_periods") == n, F.col("cost_total_gbp"))
    return (
        held.join(rates, keys, "left")
        .join(runs.select("settlement_date", "run_type"), "settlement_date", "left")
        .withColumn("revenue_gbp", revenue.cast("double"))
        .withColumn("cost_gbp", cost)
        .withColumn(
            "contributes",
            (F.col("volume_periods") > 0) & F.col("revenue_gbp").isNotNull() & F.col("cost_gbp").isNotNull(),
        )
        .select(*LEDGER_COLUMNS)
    )


def supplied_days(agreements: DataFrame, months: DataFrame) -> DataFrame:
    """Days each account is supplied per month (MPAN-days covered by its agreements), for ``months``.

    ``months`` has ``account_id, month``; the result adds ``supplied_days``.
    """
    a = agreements.alias("a")
    m = months.alias("m")
    month_end = F.date_sub(F.add_months(F.col("m.month"), 1), 1)
    first = F.greatest(F.col("a.supply_start"), F.col("m.month"))
    last = F.least(F.coalesce(F.col("a.supply_end"), month_end), month_end)
    return (
        m.join(a, F.col("a.account_id") == F.col("m.account_id"))
        .select("m.account_id", "m.month", F.greatest(F.datediff(last, first) + 1, F.lit(0)).alias("days"))
        .groupBy("account_id", "month")
        .agg(F.sum("days").cast("int").alias("supplied_days"))
    )


def monthly_margin(ledger: DataFrame, agreements: DataFrame) -> DataFrame:
    """``monthly_margin`` rows for the account-months present in ``ledger`` (all their ledger rows)."""
    days = ledger.withColumn("month", month_start(F.col("settlement_date")))
    contributing = days.where(F.col("contributes"))
    is_final = F.col("run_type").isin(*sorted(FINAL_RUN_TYPES))
    sums = contributing.groupBy("account_id", "month").agg(
        F.count(F.lit(1)).cast("int").alias("days_supplied"),
        F.sum("kwh").alias("kwh"),
        F.sum("revenue_gbp").alias("revenue_gbp"),
        F.sum("cost_gbp").alias("cost_gbp"),
        F.sum(F.when(is_final, 1).otherwise(0)).alias("_final_days"),
        F.countDistinct("billing_grain").alias("_grains"),
        F.first("billing_grain").alias("_grain"),
    )
    months = sums.select("account_id", "month")
    return (
        sums.join(supplied_days(agreements, months), ["account_id", "month"], "left")
        .withColumn("billing_grain", F.when(F.col("_grains") == 1, F.col("_grain")).otherwise(F.lit("MIXED")))
        .withColumn("margin_gbp", F.col("revenue_gbp") - F.col("cost_gbp"))
        .withColumn(
            "final",
            (F.col("days_supplied") == F.col("supplied_days"))
            & (F.col("_final_days") == F.col("days_supplied")),
        )
        .select(*MARGIN_COLUMNS)
    )
