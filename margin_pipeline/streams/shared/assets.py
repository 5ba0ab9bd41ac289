"""How every stream output becomes a Dagster asset and every stream a job: one factory for all."""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from dagster_pyspark import PySparkResource

from margin_pipeline.store import TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.shared.profile import StreamProfile
from margin_pipeline.streams.shared.runner import Plan, Source, refresh

STREAM_TAG = "margin_pipeline/stream"


def stream_asset(
    *,
    stream: str,
    output: TableSpec,
    sources: Sequence[Source],
    plan: Plan,
    profile: type[StreamProfile],
    description: str,
    watermark: str | None = None,
) -> dg.AssetsDefinition:
    """An asset that refreshes ``output`` from the change feeds of ``sources``.

    Its run config is the stream's tuning ``profile``; ``watermark`` names its
    watermarks (default: the stream) when a stream has more than one output.
    """

    @dg.asset(
        key=output.asset_key,
        group_name=stream,
        deps=[s.spec.asset_key for s in sources],
        kinds={"spark", "delta"},
        description=f"{description} Key: {', '.join(output.key)}.",
        metadata={"dagster/table_name": output.name, "key": ", ".join(output.key)},
        pool=stream,
    )
    def _refresh(
        context: dg.AssetExecutionContext, config: profile, store: DeltaRsStore, pyspark: PySparkResource
    ) -> dg.MaterializeResult:
        return refresh(context, config, store, pyspark, watermark or stream, sources, output, plan)

    return _refresh


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
