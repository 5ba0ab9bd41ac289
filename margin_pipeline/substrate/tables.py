"""The substrate: one Delta table per landing feed, the shared finest-grain source of truth."""

from __future__ import annotations

import pyarrow as pa

from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.store import TableSpec

#: Reference feeds first, so one batch lands reference data before the facts that use it.
INGEST_ORDER: tuple[str, ...] = (
    "metering_points",
    "tariffs",
    "tariff_rates",
    "supply_agreements",
    "charges",
    "prices",
    "settlement_volumes",
)

SUBSTRATE: dict[str, TableSpec] = {
    name: TableSpec(
        name=f"substrate/{name}",
        schema=FEEDS[name].arrow_schema,
        key=FEEDS[name].key,
        partition_by=FEEDS[name].partition_by,
    )
    for name in INGEST_ORDER
}

#: One row per landing file handled: what happened to it and why.
INGEST_LOG = TableSpec(
    name="control/ingest_log",
    schema=pa.schema(
        [
            pa.field("ingest_id", pa.string(), nullable=False),
            pa.field("run_id", pa.string()),
            pa.field("feed", pa.string()),
            pa.field("file", pa.string()),
            pa.field("status", pa.string()),  # applied | unchanged | stale | rejected
            pa.field("rows", pa.int64()),
            pa.field("inserted", pa.int64()),
            pa.field("updated", pa.int64()),
            pa.field("deleted", pa.int64()),
            pa.field("table_version", pa.int64()),
            pa.field("publications", pa.string()),
            pa.field("stale_publications", pa.string()),
            pa.field("rule", pa.string()),
            pa.field("line", pa.int64()),
            pa.field("message", pa.string()),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
    key=("ingest_id",),
)

#: The substrate version N: a consistent cut across all substrate tables, one per ingest
#: run that changed anything. Streams pin N and read each table at its version in N.
SUBSTRATE_VERSIONS = TableSpec(
    name="control/substrate_versions",
    schema=pa.schema(
        [
            pa.field("substrate_version", pa.int64(), nullable=False),
            pa.field("table", pa.string(), nullable=False),
            pa.field("delta_version", pa.int64()),
            pa.field("run_id", pa.string()),
            pa.field("recorded_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
    key=("substrate_version", "table"),
)
