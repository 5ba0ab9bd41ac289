"""``table_maintenance``: OPTIMIZE and VACUUM of every lake table, as its own job, run on demand
(what it does and why vacuum never breaks a lagging stream: :mod:`margin_pipeline.operations.maintenance`)."""

import datetime as dt

import dagster as dg

from margin_pipeline.operations.maintenance import MAINTAINED, MaintenanceConfig, maintain
from margin_pipeline.orchestration.runs import STREAM_TAG
from margin_pipeline.store.delta_rs import DeltaRsStore


@dg.op(description="Compact and vacuum every lake table; metadata records what each bought.")
def maintain_tables(context: dg.OpExecutionContext, config: MaintenanceConfig, store: DeltaRsStore) -> None:
    now = dt.datetime.now(dt.UTC)
    for name, spec in MAINTAINED.items():
        if store.version(spec) is None:
            continue
        result = maintain(store, name, config, now)
        context.log_event(dg.AssetObservation(asset_key=spec.asset_key, metadata=result))
        context.log.info(f"{spec.name}: {result['files_before']} -> {result['files_after']} files")


@dg.job(
    description="Table maintenance (OPTIMIZE + VACUUM), separate from every refresh and run on demand.",
    tags={STREAM_TAG: "maintenance"},
)
def table_maintenance() -> None:
    maintain_tables()
