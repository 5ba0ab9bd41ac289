"""Half-hourly revenue, as pure DataFrame functions (docs/contract.md, "Half-hourly revenue").

For an MPAN-date covered by an agreement whose tariff bills ``HH``:

    unit_rate_p_per_kwh = rate of the (tariff, gsp_group) row valid at the period's UTC start
    standing            = standing charge of the row valid at local midnight of d, once per day
    revenue_gbp         = kwh x unit_rate / 100 / 1.05  +  standing / 100 / 1.05 / N(d)

An MPAN-date is computed only when everything it needs is there: its metering
point, its tariff, a unit rate for every period and a standing charge; otherwise
it is left out and computed when they arrive.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.streams.shared.calendar import period_start_utc, periods_in_day
from margin_pipeline.streams.shared.tariffs import (
    daily_rates,
    fully_rated_days,
    pence_ex_vat_to_gbp,
    slot_rates,
    supplied,
)

OUTPUT_COLUMNS = (
    "mpan_core",
    "settlement_date",
    "settlement_period",
    "account_id",
    "tariff_code",
    "kwh",
    "unit_rate_p_per_kwh",
    "revenue_gbp",
)


def hh_revenue(
    volumes: DataFrame,
    metering_points: DataFrame,
    agreements: DataFrame,
    tariffs: DataFrame,
    tariff_rates: DataFrame,
    days: tuple[dt.date, dt.date],
) -> DataFrame:
    """``hh_revenue`` rows for the given volume rows, whose dates lie within ``days``."""
    first, last = days
    hh_tariffs = tariffs.where(F.col("billing_grain") == "HH")
    rates = tariff_rates.join(hh_tariffs.select("tariff_code"), "tariff_code", "left_semi")
    slots = slot_rates(rates, first, last)
    rows = (
        supplied(
            volumes.join(F.broadcast(metering_points.select("mpan_core", "gsp_group")), "mpan_core"),
            agreements,
            hh_tariffs,
        )
        .withColumn("slot_start", period_start_utc(F.col("settlement_date"), F.col("settlement_period")))
        .withColumn("n_periods", periods_in_day(F.col("settlement_date")))
    )
    keys = ["tariff_code", "gsp_group"]
    return (
        rows.join(slots, [*keys, "slot_start"])
        .join(
            daily_rates(rates, first, last).select(*keys, "settlement_date", "standing_charge_p_per_day"),
            [*keys, "settlement_date"],
        )
        .join(fully_rated_days(slots), [*keys, "settlement_date"], "left_semi")
        .withColumn(
            "revenue_gbp",
            pence_ex_vat_to_gbp(F.col("kwh") * F.col("unit_rate_p_per_kwh"))
            + pence_ex_vat_to_gbp(F.col("standing_charge_p_per_day")) / F.col("n_periods"),
        )
        .select(*OUTPUT_COLUMNS)
    )
