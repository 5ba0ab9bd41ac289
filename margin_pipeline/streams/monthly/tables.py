"""The monthly stream's internal table: one row per supplied MPAN-day that has volumes."""

import pyarrow as pa

from margin_pipeline.store import TableSpec

DAY_LEDGER = TableSpec(
    name="silver/monthly_day_ledger",
    schema=pa.schema(
        [
            pa.field("mpan_core", pa.string(), nullable=False),
            pa.field("settlement_date", pa.date32(), nullable=False),
            pa.field("account_id", pa.string()),
            pa.field("tariff_code", pa.string()),
            pa.field("billing_grain", pa.string()),
            pa.field("run_type", pa.string()),
            pa.field("kwh", pa.float64()),
            pa.field("revenue_gbp", pa.float64()),  # null: not computable yet
            pa.field("cost_gbp", pa.float64()),  # null: not computable yet
            pa.field("contributes", pa.bool_()),
        ]
    ),
    key=("mpan_core", "settlement_date"),
)
