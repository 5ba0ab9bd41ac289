"""The substrate tables as software-defined assets, materialized by the ingest job."""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from margin_pipeline.defs.streams.factory import layer_tag, table_metadata
from margin_pipeline.orchestration.runs import STREAM_TAG
from margin_pipeline.settings import DataRoot
from margin_pipeline.store import MergeOutcome
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.ingest import (
    IngestReport,
    LandingPathError,
    ingest,
    landing_path,
    pending_files,
)
from margin_pipeline.substrate.tables import INGEST_LOG, INGEST_ORDER, RUNS, SUBSTRATE
from margin_pipeline.substrate.versions import record_substrate_version

SUBSTRATE_GROUP = "substrate"
INGEST_JOB = "ingest"
#: Who answers for the substrate: the landing feeds and their publication semantics.
INGEST_OWNER = "team:data-platform"

DESCRIPTIONS = {
    "metering_points": "Metering points: GSP group and line loss factor per MPAN core (upsert on mpan_core).",
    "tariffs": "Tariffs and their billing grain, HH or MONTHLY (upsert on tariff_code).",
    "tariff_rates": "Unit rates and standing charges incl. VAT per tariff and GSP group, UTC validity.",
    "supply_agreements": "Which account supplies which MPAN on which tariff, inclusive local dates.",
    "charges": "Non-energy charges (GBP/MWh, p/kWh, p/day) per GSP group, optionally time-banded.",
    "prices": "Wholesale price per settlement period; one run per date, replaced by later runs.",
    "settlement_volumes": "Half-hourly metered kWh per MPAN; each date held at its latest settlement run.",
    RUNS: "The settlement run held for each date of settlement_volumes and prices (upsert on feed, "
    "settlement_date): a restatement whose values are unchanged changes one row here.",
}


def substrate_key(feed: str) -> dg.AssetKey:
    return SUBSTRATE[feed].asset_key


class IngestConfig(dg.Config):
    files: list[str] = Field(
        default_factory=list,
        description="Files to ingest, relative to landing/ (e.g. 'prices/2025-10-02_01_prices.csv'). "
        "Empty: everything pending in landing.",
    )
    seen: list[str] = Field(
        default_factory=list,
        description="What landing_sensor saw of each file (<feed>/<name>:<mtime ns>:<size>): a file "
        "that changed since is still being written and is left for a later run.",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            substrate_key(feed),
            group_name=SUBSTRATE_GROUP,
            description=DESCRIPTIONS[feed],
            skippable=True,
            kinds={"delta", "python"},
            metadata=table_metadata(SUBSTRATE[feed]),
            owners=[INGEST_OWNER],
            tags=layer_tag(SUBSTRATE[feed]),
        )
        for feed in SUBSTRATE
    ],
    can_subset=False,
    pool="ingest",
)
def ingest_landing(
    context: dg.AssetExecutionContext, config: IngestConfig, data_root: DataRoot, store: DeltaRsStore
):
    """Validate landing files and apply them to the substrate, one Delta commit per file.

    Each table that changed is materialized with its new Delta version, row count
    and the change-feed rows this run wrote. Rejected files go to quarantine and
    are reported; they do not fail the run (other files in the batch still apply).
    """
    try:
        files = (
            [landing_path(data_root, f) for f in config.files] if config.files else pending_files(data_root)
        )
    except LandingPathError as refused:
        raise dg.Failure(description=str(refused)) from refused
    report = ingest(data_root, store, files, run_id=context.run_id, seen=config.seen)
    pin = record_substrate_version(store, context.run_id) if report.changed else None
    for feed in INGEST_ORDER:
        outcomes = report.by_feed(feed)
        applied = [o.applied for o in outcomes if o.applied is not None]
        changed = [a.outcome for a in applied if a.outcome.changed]
        if changed:
            yield _materialized(
                store,
                feed,
                pin,
                changed,
                {
                    "files": dg.MetadataValue.md("\n".join(f"- {o.file}: {o.status}" for o in outcomes)),
                    "stale_publications": ", ".join(s for a in applied for s in a.stale) or "none",
                },
            )
    runs = [o.applied.runs for o in report.files if o.applied is not None and o.applied.runs is not None]
    if changed_runs := [r for r in runs if r.changed]:
        yield _materialized(store, RUNS, pin, changed_runs, {})
    _report(context, report)


def _materialized(
    store: DeltaRsStore, table: str, pin: Any, changed: list[MergeOutcome], extra: dict[str, Any]
) -> dg.MaterializeResult:
    spec = SUBSTRATE[table]
    return dg.MaterializeResult(
        asset_key=substrate_key(table),
        metadata={
            "substrate_version": pin.number if pin else None,
            "delta_version": store.version(spec),
            "dagster/row_count": store.row_count(spec),
            "change_feed_rows": sum(o.inserted + 2 * o.updated + o.deleted for o in changed),
            "rows_inserted": sum(o.inserted for o in changed),
            "rows_updated": sum(o.updated for o in changed),
            "rows_deleted": sum(o.deleted for o in changed),
            **extra,
        },
    )


def _report(context: dg.AssetExecutionContext, report: IngestReport) -> None:
    counts: dict[str, int] = {}
    for outcome in report.files:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    context.log.info(
        f"ingest: {len(report.files)} file(s): {counts or 'none pending'}; log in lake/{INGEST_LOG.name}"
    )
    for outcome in report.rejected:
        context.log.warning(
            f"REJECTED {outcome.rejection}; moved to {Path(outcome.moved_to)}, nothing applied"
        )


ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.groups(SUBSTRATE_GROUP),
    description="Apply landing files to the substrate Delta tables (launched by landing_sensor).",
    tags={STREAM_TAG: "ingest"},
)
