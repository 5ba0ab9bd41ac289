"""Settlement cost, as pure DataFrame functions (docs/contract.md, "Settlement cost").

    kwh_gsp             = kwh x line_loss_factor
    energy_cost_gbp     = kwh_gsp / 1000 x price_gbp_per_mwh(d, p)
    non_energy_cost_gbp = sum of the charges that apply to (gsp_group, d, period's local start):
                          GBP_PER_MWH: kwh_gsp / 1000 x rate
                          P_PER_KWH:   kwh_gsp x rate / 100
                          P_PER_DAY:   rate / 100 / N(d)
    total_cost_gbp      = energy + non_energy

A row needs its MPAN's metering point and its date's prices; without them it is
left out (and computed when they arrive).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from margin_pipeline.streams.shared.calendar import local_time_hhmm, period_start_utc, periods_in_day

OUTPUT_COLUMNS = (
    "mpan_core",
    "settlement_date",
    "settlement_period",
    "run_type",
    "kwh",
    "kwh_gsp",
    "energy_cost_gbp",
    "non_energy_cost_gbp",
    "total_cost_gbp",
)


#: A cost row re-priced in place when only its half hour's price changed (``t``: the row, ``s``: the
#: new price): the arithmetic of :func:`settlement_cost` from the row's own ``kwh_gsp`` and
#: ``non_energy_cost_gbp``, so no volume is read.
REPRICED = {
    "energy_cost_gbp": "t.kwh_gsp / 1000 * s.price_gbp_per_mwh",
    "total_cost_gbp": "t.kwh_gsp / 1000 * s.price_gbp_per_mwh + t.non_energy_cost_gbp",
}


def band_contains(local_start: Column, band_start: Column, band_end: Column) -> Column:
    """Whether a period starting at ``local_start`` (HH:mm) is in the band ``[band_start, band_end)``.

    No band: always. A band whose start is after its end wraps midnight (e.g. 23:00-07:00).
    """
    return (
        band_start.isNull()
        | ((band_start < band_end) & (local_start >= band_start) & (local_start < band_end))
        | ((band_start > band_end) & ((local_start >= band_start) | (local_start < band_end)))
    )


def charge_rates(charges: DataFrame, slots: DataFrame) -> DataFrame:
    """Charge rates that apply to each slot, summed by unit.

    ``slots`` has ``gsp_group, settlement_date, settlement_period, local_start``;
    the result adds ``gbp_per_mwh, p_per_kwh, p_per_day`` (slots with no charge are absent).
    """
    c = charges.alias("c")
    s = slots.alias("s")
    applies = (
        ((F.col("c.gsp_group") == "") | (F.col("c.gsp_group") == F.col("s.gsp_group")))
        & (F.col("s.settlement_date") >= F.col("c.valid_from"))
        & (F.col("c.valid_to").isNull() | (F.col("s.settlement_date") < F.col("c.valid_to")))
        & band_contains(F.col("s.local_start"), F.col("c.band_start"), F.col("c.band_end"))
    )

    def rate_of(unit: str) -> Column:
        return F.sum(F.when(F.col("c.unit") == unit, F.col("c.rate"))).alias(unit.lower())

    return (
        s.join(F.broadcast(c), applies, "inner")
        .groupBy("s.gsp_group", "s.settlement_date", "s.settlement_period")
        .agg(rate_of("GBP_PER_MWH"), rate_of("P_PER_KWH"), rate_of("P_PER_DAY"))
    )


def settlement_cost(
    volumes: DataFrame, metering_points: DataFrame, prices: DataFrame, charges: DataFrame
) -> DataFrame:
    """``settlement_cost_hh`` rows for the given volume rows."""
    rows = (
        volumes.join(
            F.broadcast(metering_points.select("mpan_core", "gsp_group", "line_loss_factor")), "mpan_core"
        )
        .join(
            prices.select("settlement_date", "settlement_period", "price_gbp_per_mwh"),
            ["settlement_date", "settlement_period"],
        )
        .withColumn("n_periods", periods_in_day(F.col("settlement_date")))
        .withColumn(
            "local_start",
            local_time_hhmm(period_start_utc(F.col("settlement_date"), F.col("settlement_period"))),
        )
    )
    slots = rows.select("gsp_group", "settlement_date", "settlement_period", "local_start").distinct()
    rates = charge_rates(charges, slots)
    kwh_gsp = F.col("kwh") * F.col("line_loss_factor")
    non_energy = (
        F.coalesce(kwh_gsp / 1000 * F.col("gbp_per_mwh"), F.lit(0.0))
        + F.coalesce(kwh_gsp * F.col("p_per_kwh") / 100, F.lit(0.0))
        + F.coalesce(F.col("p_per_day") / 100 / F.col("n_periods"), F.lit(0.0))
    )
    energy = kwh_gsp / 1000 * F.col("price_gbp_per_mwh")
    return (
        rows.join(rates, ["gsp_group", "settlement_date", "settlement_period"], "left")
        .withColumn("kwh_gsp", kwh_gsp)
        .withColumn("energy_cost_gbp", energy)
        .withColumn("non_energy_cost_gbp", non_energy)
        .withColumn("total_cost_gbp", F.col("energy_cost_gbp") + F.col("non_energy_cost_gbp"))
        .select(*OUTPUT_COLUMNS)
    )
