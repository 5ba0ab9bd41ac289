"""The substrate: one Delta table per landing feed, the shared finest-grain source of truth."""

from __future__ import annotations

import pyarrow as pa

from margin_pipeline.contracts.feeds import FEEDS, Feed, Kind
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

#: The substrate table holding the run of every published date of the publication feeds.
RUNS = "publication_runs"

#: The run held for each date of a publication feed (``settlement_volumes``, ``prices``): one row
#: per (feed, settlement_date). The run is held here rather than on every row of the feed's own
#: table so that a later run whose values are unchanged (most of a restatement: R1 changes ~4% of
#: a date's kWh, RF ~0.1%) rewrites one row here instead of every row of the date, and emits
#: change-feed rows only for the values that really changed.
PUBLICATION_RUNS = TableSpec(
    name=f"substrate/{RUNS}",
    schema=pa.schema(
        [
            pa.field("feed", pa.string(), nullable=False),
            pa.field("settlement_date", pa.date32(), nullable=False),
            pa.field("run_type", pa.string(), nullable=False),
        ]
    ),
    key=("feed", "settlement_date"),
)


def _feed_table(feed: Feed) -> TableSpec:
    """A feed's substrate table: its columns, less ``run_type`` for a publication feed (held in
    :data:`PUBLICATION_RUNS`)."""
    schema = feed.arrow_schema
    if feed.kind is Kind.PUBLICATION:
        schema = schema.remove(schema.get_field_index("run_type"))
    return TableSpec(f"substrate/{feed.name}", schema, feed.key, feed.partition_by)


#: Every substrate table by name: one per landing feed (in ingest order), then the publication runs.
SUBSTRATE: dict[str, TableSpec] = {name: _feed_table(FEEDS[name]) for name in INGEST_ORDER} | {
    RUNS: PUBLICATION_RUNS
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
