"""How every stream output becomes a Dagster asset and every stream a job: one factory for all."""

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from margin_pipeline.engines import SparkEngine
from margin_pipeline.operations.quality import Check
from margin_pipeline.operations.retries import retrying
from margin_pipeline.operations.sla import SLAS
from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.shared.runner import StreamOutput, as_metadata, refresh_output

STREAM_TAG = "margin_pipeline/stream"


def stream_asset(out: StreamOutput, *, description: str) -> dg.AssetsDefinition:
    """An asset that refreshes ``out.output`` from the change feeds of ``out.sources``.

    Its run config is the stream's tuning profile; the profile's ``engine`` says where the
    refresh runs (this process, a Pipes subprocess, or a Databricks job cluster) and its
    ``retry`` how transient faults are retried. ``out.checks`` are its asset checks.
    """
    output = out.output

    @dg.asset(
        key=output.asset_key,
        group_name=out.stream,
        deps=[s.spec.asset_key for s in out.sources],
        kinds={"spark", "delta"},
        description=f"{description} Key: {', '.join(output.key)}.",
        metadata={"dagster/table_name": output.name, "key": ", ".join(output.key)},
        check_specs=check_specs(output.asset_key, out.checks),
        freshness_policy=SLAS[out.stream].policy(),
        pool=out.stream,
    )
    def _refresh(
        context: dg.AssetExecutionContext,
        config: out.profile,
        store: DeltaRsStore,
        spark: SparkEngine,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with retrying(context, config.retry, out.consumer):
            metadata = run_output(context, config, store, spark, out)
        yield from published(output.asset_key, out.consumer, metadata, out.checks)

    return _refresh


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


def run_output(
    context: Any, profile: Any, store: DeltaRsStore, spark: SparkEngine, out: StreamOutput
) -> dict[str, Any]:
    """Refresh ``out`` on the profile's engine; the metadata is the same whichever engine ran it,
    plus ``engine``: where it ran (``sail`` or ``spark`` in this process, or the remote engine)."""
    if profile.engine == "local":
        metadata = refresh_output(spark.spark_session, store, profile, out, context.run_id, context.log)
    else:
        context.log.info(f"{out.consumer}: refreshing {out.output.name} on engine {profile.engine}")
        metadata = refresh_remote(context, profile, out.output.name, store.lake_root)
    return {"engine": ran_on(profile, spark), **metadata}


def ran_on(profile: Any, spark: SparkEngine) -> str:
    """Where a refresh with ``profile`` runs: the ``spark`` resource's engine in this process (``sail``
    or ``spark``), else the profile's remote engine (``pipes_subprocess``, ``databricks``)."""
    return spark.engine if profile.engine == "local" else profile.engine


def stream_job(name: str, stream: str, description: str, **job_args: Any):
    """The stream's job: its asset group, tagged so the instance runs one at a time per stream.

    ``job_args`` (an executor and its default config) go to ``define_asset_job``.
    """
    return dg.define_asset_job(
        name,
        selection=dg.AssetSelection.groups(stream),
        description=description,
        tags={STREAM_TAG: stream, **SLAS[stream].job_tags()},
        **job_args,
    )
