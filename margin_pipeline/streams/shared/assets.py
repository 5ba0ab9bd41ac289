"""How every stream output becomes a Dagster asset and every stream a job: one factory for all."""

from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.shared.runner import StreamOutput, as_metadata, refresh_output

STREAM_TAG = "margin_pipeline/stream"


def stream_asset(out: StreamOutput, *, description: str) -> dg.AssetsDefinition:
    """An asset that refreshes ``out.output`` from the change feeds of ``out.sources``.

    Its run config is the stream's tuning profile; the profile's ``engine`` says where the
    refresh runs (this process, a Pipes subprocess, or a Databricks job cluster).
    """
    output = out.output

    @dg.asset(
        key=output.asset_key,
        group_name=out.stream,
        deps=[s.spec.asset_key for s in out.sources],
        kinds={"spark", "delta"},
        description=f"{description} Key: {', '.join(output.key)}.",
        metadata={"dagster/table_name": output.name, "key": ", ".join(output.key)},
        pool=out.stream,
    )
    def _refresh(
        context: dg.AssetExecutionContext,
        config: out.profile,
        store: DeltaRsStore,
        pyspark: LazyPySparkResource,
    ) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=as_metadata(run_output(context, config, store, pyspark, out)))

    return _refresh


def run_output(context: Any, profile: Any, store: DeltaRsStore, pyspark: Any, out: StreamOutput) -> dict:
    """Refresh ``out`` on the profile's engine; the metadata is the same whichever engine ran it."""
    if profile.engine == "local":
        return refresh_output(pyspark.spark_session, store, profile, out, context.run_id, context.log)
    context.log.info(f"{out.consumer}: refreshing {out.output.name} on engine {profile.engine}")
    return refresh_remote(context, profile, out.output.name, store.lake_root)


def stream_job(name: str, stream: str, description: str, **job_args: Any):
    """The stream's job: its asset group, tagged so the instance runs one at a time per stream.

    ``job_args`` (an executor and its default config) go to ``define_asset_job``.
    """
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.groups(stream),
        description=description,
        tags={STREAM_TAG: stream},
        **job_args,
    )
