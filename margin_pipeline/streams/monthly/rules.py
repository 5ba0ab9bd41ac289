"""Monthly margin, as pure DataFrame functions (contracts.md, ``monthly_margin``).

Two steps. The *day ledger* holds, per supplied MPAN-day with volumes, its meter
kWh, revenue, cost, run type and whether it *contributes* (revenue and cost both
computable for every period of the day):

    revenue on HH-tariff days      = sum of hh_revenue over the day (all N(d) periods present)
    revenue on MONTHLY-tariff days = kWh x unit rate / 100 / 1.05 + standing / 100 / 1.05,
                                     both from the (tariff, gsp_group) row valid at local midnight
    cost                           = sum of settlement_cost_hh total_cost_gbp (all N(d) periods present)

The *margin* sums contributing days per account and calendar month; ``days_supplied``
counts them; ``billing_grain`` is HH / MONTHLY when all share it, else MIXED;
``final`` when every supplied day of the month (from the agreements) contributes and
all are at RF or DF. An account-month with no contributing day has no row.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.contracts.feeds import FINAL_RUN_TYPES
from margin_pipeline.streams.shared.calendar import month_start, periods_in_day
from margin_pipeline.streams.shared.tariffs import daily_rates, pence_ex_vat_to_gbp, supplied

DAY = ["mpan_core", "settlement_date"]
LEDGER_COLUMNS = (
    "mpan_core",
    "settlement_date",
    "account_id",
    "tariff_code",
    "billing_grain",
    "run_type",
    "kwh",
    "revenue_gbp",
    "cost_gbp",
    "contributes",
)
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


def complete_sum(rows: DataFrame, value: str, name: str) -> DataFrame:
    """Per MPAN-day, the sum of ``value`` when all N(d) periods are present (else no row)."""
    return (
        rows.groupBy(*DAY)
        .agg(F.sum(value).alias(name), F.count(F.lit(1)).alias("_periods"))
        .where(F.col("_periods") == periods_in_day(F.col("settlement_date")))
        .drop("_periods")
    )


def day_ledger(
    volumes: DataFrame,
    metering_points: DataFrame,
    agreements: DataFrame,
    tariffs: DataFrame,
    tariff_rates: DataFrame,
    costs: DataFrame,
    hh_revenue: DataFrame,
    days: tuple[dt.date, dt.date],
) -> DataFrame:
    """Ledger rows for the MPAN-days of ``volumes`` (all their periods) within ``days``."""
    per_day = volumes.groupBy(*DAY).agg(F.sum("kwh").alias("kwh"), F.max("run_type").alias("run_type"))
    per_day = per_day.join(metering_points.select("mpan_core", "gsp_group"), "mpan_core", "left")
    ledger = supplied(per_day, agreements, tariffs)
    rates = daily_rates(tariff_rates, *days)
    keys = ["tariff_code", "gsp_group", "settlement_date"]
    monthly_revenue = (
        ledger.where(F.col("billing_grain") == "MONTHLY")
        .join(rates, keys)
        .select(
            *DAY,
            (
                pence_ex_vat_to_gbp(F.col("kwh") * F.col("unit_rate_p_per_kwh"))
                + pence_ex_vat_to_gbp(F.col("standing_charge_p_per_day"))
            ).alias("monthly_revenue"),
        )
    )
    hh = complete_sum(hh_revenue, "revenue_gbp", "hh_revenue")
    cost = complete_sum(costs, "total_cost_gbp", "cost_gbp")
    revenue = F.when(F.col("billing_grain") == "HH", F.col("hh_revenue")).otherwise(F.col("monthly_revenue"))
    return (
        ledger.join(monthly_revenue, DAY, "left")
        .join(hh, DAY, "left")
        .join(cost, DAY, "left")
        .withColumn("revenue_gbp", revenue)
        .withColumn("contributes", F.col("revenue_gbp").isNotNull() & F.col("cost_gbp").isNotNull())
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
