"""The monthly stream's internal table: one row per MPAN-day with half-hourly rows, and its tallies."""

import pyarrow as pa

from margin_pipeline.store import TableSpec

#: Counts and sums of an MPAN-day's half-hourly rows in each source. Kept on the row so that a run
#: adds the change feed's differences to them (insert and post-image +1, delete and pre-image -1)
#: instead of re-reading every half hour of every day it touches.
TALLIES = (
    "volume_periods",
    "kwh",  # meter kWh: sum over settlement_volumes
    "cost_periods",
    "cost_total_gbp",  # sum of settlement_cost_hh total_cost_gbp
    "hh_revenue_periods",
    "hh_revenue_total_gbp",  # sum of hh_revenue revenue_gbp
)
#: Per source, the version through which every change of the day's rows is in its tallies. A run
#: adds only change-feed rows of later commits, so replaying a range adds nothing twice.
THROUGH = ("volumes_through", "cost_through", "hh_revenue_through")

DAY_LEDGER = TableSpec(
    name="silver/monthly_day_ledger",
    schema=pa.schema(
        [
            pa.field("mpan_core", pa.string(), nullable=False),
            pa.field("settlement_date", pa.date32(), nullable=False),
            pa.field("account_id", pa.string()),  # null: no agreement (with a known tariff) covers the day
            pa.field("tariff_code", pa.string()),
            pa.field("billing_grain", pa.string()),
            pa.field("run_type", pa.string()),
            pa.field("revenue_gbp", pa.float64()),  # null: not computable yet
            pa.field("cost_gbp", pa.float64()),  # null: not computable yet
            pa.field("contributes", pa.bool_()),
            pa.field("volume_periods", pa.int64()),
            pa.field("kwh", pa.float64()),
            pa.field("cost_periods", pa.int64()),
            pa.field("cost_total_gbp", pa.float64()),
            pa.field("hh_revenue_periods", pa.int64()),
            pa.field("hh_revenue_total_gbp", pa.float64()),
            pa.field("volumes_through", pa.int64()),
            pa.field("cost_through", pa.int64()),
            pa.field("hh_revenue_through", pa.int64()),
        ]
    ),
    key=("mpan_core", "settlement_date"),
    partition_by=("settlement_date",),
)
