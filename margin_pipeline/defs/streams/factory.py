"""How a stream output becomes a Dagster asset and a stream a job: one factory for every stream."""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from margin_pipeline.engines import SparkEngine
from margin_pipeline.orchestration.runs import STREAM_TAG
from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.shared.quality import Check
from margin_pipeline.streams.shared.retries import retrying
from margin_pipeline.streams.shared.runner import as_metadata
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Output, Stream


def stream_asset(stream: Stream, output: Output) -> dg.AssetsDefinition:
    """An asset that refreshes ``output`` (refreshed by the shared runner) from its sources' change feeds.

    Its run config is the stream's tuning profile; the profile's ``engine`` says where the
    refresh runs (this process, a Pipes subprocess, or a Databricks job cluster) and its
    ``retry`` how transient faults are retried. The runner's checks are its asset checks.
    """
    out = output.runner
    if out is None:
        raise ValueError(f"{output.table.name} has steps of its own: build its asset by hand")
    table = output.table

    @dg.asset(
        key=table.asset_key,
        group_name=stream.name,
        deps=[s.spec.asset_key for s in out.sources],
        kinds={"spark", "delta"},
        description=f"{output.description} Key: {', '.join(table.key)}.",
        metadata={"dagster/table_name": table.name, "key": ", ".join(table.key)},
        check_specs=check_specs(table.asset_key, out.checks),
        freshness_policy=freshness_policy(stream.sla),
        pool=stream.name,
    )
    def _refresh(
        context: dg.AssetExecutionContext,
        config: stream.profile,  # type: ignore[name-defined]
        store: DeltaRsStore,
        spark: SparkEngine,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with retrying(context, config.retry, out.consumer):
            metadata = run_output(context, config, store, spark, output)
        yield from published(table.asset_key, out.consumer, metadata, out.checks)

    return _refresh


def stream_job(stream: Stream, **job_args: Any) -> Any:
    """The stream's job: its asset group, tagged so the instance runs one at a time per stream and
    cancels a run over the stream's ``max_runtime``. ``job_args`` (an executor) go to ``define_asset_job``."""
    return dg.define_asset_job(
        stream.job_name,
        selection=dg.AssetSelection.groups(stream.name),
        description=stream.description,
        tags={STREAM_TAG: stream.name, **max_runtime_tag(stream.sla)},
        **job_args,
    )


def freshness_policy(sla: Sla) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=sla.freshness, warn_window=sla.warn)


def max_runtime_tag(sla: Sla) -> dict[str, str]:
    return {"dagster/max_runtime": str(int(sla.max_runtime.total_seconds()))}


def check_specs(key: dg.AssetKey, checks: Sequence[Check]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking) for c in checks
    ]


def published(
    key: dg.AssetKey, consumer: str, metadata: dict[str, Any], every: Sequence[Check]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The checks' results, then the materialization; or, when a blocking check failed (the output
    is already rolled back), the results and a failure naming the checks.

    A run that wrote nothing evaluates no check; each of ``every`` is then reported as passing
    unevaluated (``evaluated: false``): the table is unchanged since its last evaluation, and a
    table that failed one was rolled back to a version that had passed.
    """
    checks = metadata.get("checks") or [
        {
            "name": c.name,
            "passed": True,
            "blocking": c.blocking,
            "message": "not evaluated: nothing written",
            "metadata": {"evaluated": False},
        }
        for c in every
    ]
    for check in checks:
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=check["name"],
            passed=check["passed"],
            severity=dg.AssetCheckSeverity.ERROR if check["blocking"] else dg.AssetCheckSeverity.WARN,
            description=check["message"],
            metadata=as_metadata(check["metadata"]),
        )
    if metadata.get("blocked"):
        failed = [c for c in checks if c["blocking"] and not c["passed"]]
        rollbacks = "; ".join(
            r["table"] + f" restored to version {r['to_version']}" for r in metadata["rollback"]
        )
        raise dg.Failure(
            description=f"{consumer}: blocking check(s) failed on {key.to_user_string()}: "
            + "; ".join(f"{c['name']}: {c['message']}" for c in failed)
            + f". {rollbacks or 'Nothing was written'}; watermarks unchanged.",
            metadata=as_metadata(
                {"failed_checks": [c["name"] for c in failed], "rollback": metadata["rollback"]}
            ),
        )
    yield dg.MaterializeResult(metadata=as_metadata({k: v for k, v in metadata.items() if k != "checks"}))


def run_output(context: Any, profile: Any, store: DeltaRsStore, spark: SparkEngine, output: Output) -> dict:
    """Refresh ``output`` on the profile's engine; the metadata is the same whichever engine ran it,
    plus ``engine``: where it ran (``sail`` or ``spark`` in this process, or the remote engine)."""
    if profile.engine == "local":
        metadata = output.refresh(spark.spark_session, store, profile, context.run_id, context.log)
    else:
        context.log.info(f"{output.consumer.watermark}: refreshing {output.table.name} on {profile.engine}")
        metadata = refresh_remote(context, profile, output.table.name, store.lake_root)
    return {"engine": ran_on(profile, spark), **metadata}


def ran_on(profile: Any, spark: SparkEngine) -> str:
    """Where a refresh with ``profile`` runs: the ``spark`` resource's engine in this process (``sail``
    or ``spark``), else the profile's remote engine (``pipes_subprocess``, ``databricks``)."""
    return spark.engine if profile.engine == "local" else profile.engine
