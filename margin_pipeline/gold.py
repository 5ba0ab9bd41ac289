"""The published tables of docs/contract.md (``lake/gold/<table>``): schemas, keys and layout.

Kept in one place because they are the product's interface, and because downstream
streams (monthly, reconciled) read upstream outputs by these specs.
"""

from __future__ import annotations

import pyarrow as pa

from margin_pipeline.store import TableSpec

_HH_KEY = (
    pa.field("mpan_core", pa.string(), nullable=False),
    pa.field("settlement_date", pa.date32(), nullable=False),
    pa.field("settlement_period", pa.int32(), nullable=False),
)
_HH_KEY_NAMES = ("mpan_core", "settlement_date", "settlement_period")

SETTLEMENT_COST_HH = TableSpec(
    name="gold/settlement_cost_hh",
    schema=pa.schema(
        [
            *_HH_KEY,
            pa.field("run_type", pa.string()),
            pa.field("kwh", pa.float64()),
            pa.field("kwh_gsp", pa.float64()),
            pa.field("energy_cost_gbp", pa.float64()),
            pa.field("non_energy_cost_gbp", pa.float64()),
            pa.field("total_cost_gbp", pa.float64()),
        ]
    ),
    key=_HH_KEY_NAMES,
    partition_by=("settlement_date",),
)

HH_REVENUE = TableSpec(
    name="gold/hh_revenue",
    schema=pa.schema(
        [
            *_HH_KEY,
            pa.field("account_id", pa.string()),
            pa.field("tariff_code", pa.string()),
            pa.field("kwh", pa.float64()),
            pa.field("unit_rate_p_per_kwh", pa.float64()),
            pa.field("revenue_gbp", pa.float64()),
        ]
    ),
    key=_HH_KEY_NAMES,
    partition_by=("settlement_date",),
)

MONTHLY_MARGIN = TableSpec(
    name="gold/monthly_margin",
    schema=pa.schema(
        [
            pa.field("account_id", pa.string(), nullable=False),
            pa.field("month", pa.date32(), nullable=False),
            pa.field("billing_grain", pa.string()),
            pa.field("days_supplied", pa.int32()),
            pa.field("kwh", pa.float64()),
            pa.field("revenue_gbp", pa.float64()),
            pa.field("cost_gbp", pa.float64()),
            pa.field("margin_gbp", pa.float64()),
            pa.field("final", pa.bool_()),
        ]
    ),
    key=("account_id", "month"),
)

HH_MARGIN = TableSpec(
    name="gold/hh_margin",
    schema=pa.schema(
        [
            *_HH_KEY,
            pa.field("account_id", pa.string()),
            pa.field("kwh", pa.float64()),
            pa.field("revenue_gbp", pa.float64()),
            pa.field("cost_gbp", pa.float64()),
            pa.field("margin_gbp", pa.float64()),
        ]
    ),
    key=_HH_KEY_NAMES,
    partition_by=("settlement_date",),
)

GOLD: dict[str, TableSpec] = {
    spec.short_name: spec for spec in (SETTLEMENT_COST_HH, HH_REVENUE, MONTHLY_MARGIN, HH_MARGIN)
}

#: v1.1: why ``monthly_margin.margin_gbp`` moved between the substrate versions the monthly stream
#: consumed, one row per cause (:mod:`margin_pipeline.streams.monthly.bridge`). Not in :data:`GOLD`:
#: its rows depend on which versions a deployment consumed, so a full recompute of the same
#: substrate does not reproduce them.
MARGIN_BRIDGE = TableSpec(
    name="gold/margin_bridge",
    schema=pa.schema(
        [
            pa.field("account_id", pa.string(), nullable=False),
            pa.field("month", pa.date32(), nullable=False),
            pa.field("to_version", pa.int64(), nullable=False),
            pa.field("cause", pa.string(), nullable=False),
            pa.field("from_version", pa.int64()),
            pa.field("delta_gbp", pa.float64()),
        ]
    ),
    key=("account_id", "month", "to_version", "cause"),
)
