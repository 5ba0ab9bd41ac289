"""How a stream output becomes a Dagster asset and a stream a job: one factory for every stream."""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from margin_pipeline.engines import SparkEngine
from margin_pipeline.orchestration.runs import (
    MAX_RUNTIME_TAG,
    PARENT_JOB,
    PARENT_RUN_TAG,
    STREAM_TAG,
    SUBSTRATE_VERSION_TAG,
)
from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store import TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.progress import gate_status
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.streams.shared.quality import Check
from margin_pipeline.streams.shared.retries import retrying
from margin_pipeline.streams.shared.runner import as_metadata
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Output, Stream
from margin_pipeline.substrate.versions import resolve_pin


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
        deps=upstream(stream, out),
        kinds={"spark", "delta"},
        description=f"{output.description} Key: {', '.join(table.key)}. {launched_by(stream)}",
        metadata=table_metadata(table),
        check_specs=check_specs(table.asset_key, out.checks),
        freshness_policy=freshness_policy(stream.sla),
        owners=[stream.owner],
        tags=layer_tag(table),
        pool=stream.name,
    )
    def _refresh(
        context: dg.AssetExecutionContext,
        config: stream.profile,  # type: ignore[name-defined]
        store: DeltaRsStore,
        spark: SparkEngine,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        announce_parent(context)
        refuse_unless_gate_open(stream, store, config)
        with retrying(context, config.retry, out.consumer):
            metadata = run_output(context, config, store, spark, output)
        yield from published(table, out.consumer, presented(context, store, table, metadata), out.checks)

    return _refresh


def stream_job(stream: Stream) -> Any:
    """The stream's job: its asset group, tagged so the instance runs one at a time per stream and
    cancels a run over the stream's ``max_runtime``; its steps run in the run's process (the code
    location's default executor)."""
    return dg.define_asset_job(
        stream.job_name,
        selection=dg.AssetSelection.groups(stream.name),
        description=f"{stream.description} {launched_by(stream)}",
        tags={STREAM_TAG: stream.name, **max_runtime_tag(stream.sla.max_runtime)},
    )


def upstream(stream: Stream, out: Any) -> list[dg.AssetKey]:
    """The asset's deps: its sources, and for a gated stream every output of the streams it waits for,
    so that materializing them together (the UI's "Materialize all", a test) runs it last, as the
    gate does."""
    keys = [s.spec.asset_key for s in out.sources]
    if stream.gated:
        keys += [t.asset_key for name in stream.after for t in STREAMS[name].tables]
    return list(dict.fromkeys(keys))


def launched_by(stream: Stream) -> str:
    """Who launches ``stream``'s runs, for its job's and assets' descriptions."""
    if stream.gated:
        return f"Launched by the watermark_gate sensor once {', '.join(stream.after)} have consumed N."
    return f"Launched by {PARENT_JOB} (op {stream.name}) for each substrate version N."


def table_metadata(table: TableSpec) -> dict[str, Any]:
    """What an asset's page shows of its table: name, key and the published column schema."""
    return {
        "dagster/table_name": table.name,
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(
                    f.name, str(f.type), constraints=dg.TableColumnConstraints(nullable=f.nullable)
                )
                for f in table.schema
            ]
        ),
        "key": ", ".join(table.key),
    }


def layer_tag(table: TableSpec) -> dict[str, str]:
    """The lake layer of a table (``substrate``, ``silver``, ``gold``): its path's first part."""
    return {"layer": table.name.split("/", 1)[0]}


def announce_parent(context: Any) -> None:
    """A child run says first whose child it is (the parent's id and N), so its log leads back."""
    parent = context.run.tags.get(PARENT_RUN_TAG)
    if parent:
        number = context.run.tags.get(SUBSTRATE_VERSION_TAG, "?")
        context.log.info(f"child run of {PARENT_JOB} run {parent} for substrate version N={number}")


def refuse_unless_gate_open(stream: Stream, store: DeltaRsStore, profile: Any) -> None:
    """A gated stream publishes only what the gate would: every stream in ``after`` has consumed the
    pinned N. Otherwise (a manual materialization with the gate closed) nothing is written and the
    failure names who is behind."""
    if not stream.gated:
        return
    pin = resolve_pin(store, profile.substrate_version)
    progress, line = gate_status(store, [STREAMS[name] for name in stream.after], pin)
    if not all(p.consumed for p in progress):
        raise dg.Failure(
            description=f"{stream.name} is published by the watermark gate once {', '.join(stream.after)} "
            f"have consumed N, and the gate is closed: {line}. Nothing was written; it opens by itself.",
            metadata={"gate": line},
        )


def freshness_policy(sla: Sla) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=sla.freshness, warn_window=sla.warn)


def max_runtime_tag(max_runtime: dt.timedelta) -> dict[str, str]:
    """The tag run monitoring enforces: a run over ``max_runtime`` is canceled (an SLA breach)."""
    return {MAX_RUNTIME_TAG: str(int(max_runtime.total_seconds()))}


def check_specs(key: dg.AssetKey, checks: Sequence[Check]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(c.name, asset=key, description=c.description, blocking=c.blocking) for c in checks
    ]


def published(
    table: TableSpec, consumer: str, metadata: dict[str, Any], every: Sequence[Check]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The checks' results, then the materialization; or, when a blocking check failed (the output
    is already rolled back), the results and a failure naming the checks.

    A run that wrote nothing evaluates no check; each of ``every`` is then reported as passing
    unevaluated (``evaluated: false``): the table is unchanged since its last evaluation, and a
    table that failed one was rolled back to a version that had passed.
    """
    key = table.asset_key
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
            metadata=check_metadata(check["metadata"]),
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
    yield dg.MaterializeResult(metadata={k: v for k, v in metadata.items() if k != "checks"})


#: The engine's figures shown one per line, in this order, after the headline; sources go in a table.
FIGURES = (
    "mode",
    "full_rebuild_reason",
    "rows_read",
    "full_rescan_rows",
    "change_feed_rows_read",
    "snapshot_rows_read",
    "keys_recomputed",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "wall_seconds",
    "engine",
)
#: Shown in the sources table instead.
BY_SOURCE = (
    "watermarks",
    "change_feed_rows_by_source",
    "snapshot_rows_by_source",
    "run_restamp_commits_skipped",
)
#: Identifiers, not quantities: shown as text so the asset's plots draw only figures.
IDENTIFIERS = ("substrate_version", "output_version")
SOURCES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("source", "string", description="table the output consumes (or the output itself)"),
        dg.TableColumn("from", "string", description="watermark before the run (none: never read)"),
        dg.TableColumn("to", "int", description="version consumed up to (pinned by N)"),
        dg.TableColumn("change_feed_rows", "int", description="change-feed rows read (empty: not read)"),
        dg.TableColumn("snapshot_rows", "int", description="rows read from its snapshot (empty: not read)"),
        dg.TableColumn("restamps_skipped", "int", description="run re-stamp commits left out of the feed"),
    ]
)


def presented(context: Any, store: DeltaRsStore, table: TableSpec, figures: dict[str, Any]) -> dict[str, Any]:
    """The engine's metadata of one refresh as a person reads it: the headline KPI first (rows read as a
    % of a full rescan), the figures, one table of sources (watermark from -> to, rows read from each),
    identifiers as text, the table's location and row count, and the parent run of a child run."""
    out: dict[str, Any] = {}
    if "rows_read_pct_of_full" in figures:
        out["rows_read_pct_of_full"] = dg.MetadataValue.float(float(figures["rows_read_pct_of_full"]))
    for name in FIGURES:
        if name in figures and figures[name] not in ("", None):
            out[name] = figures[name]
    if "watermarks" in figures:
        out["sources"] = sources_table(figures)
    for name in IDENTIFIERS:
        if name in figures:
            out[name] = dg.MetadataValue.text("none" if figures[name] is None else str(figures[name]))
    shown = {"rows_read_pct_of_full", "checks", *FIGURES, *BY_SOURCE, *IDENTIFIERS}
    out.update(as_metadata({k: v for k, v in figures.items() if k not in shown}))
    if "checks" in figures:
        out["checks"] = figures["checks"]  # read by published(), not shown
    if store.version(table) is not None:
        out["dagster/row_count"] = store.row_count(table)
    out["delta_table"] = dg.MetadataValue.path(store.uri(table))
    parent = context.run.tags.get(PARENT_RUN_TAG)
    if parent:
        out["parent_run"] = dg.MetadataValue.dagster_run(parent)
    return out


def sources_table(figures: dict[str, Any]) -> dg.TableMetadataValue:
    """One row per source: its watermark from -> to and the rows this run read from it (and one for
    the output itself when the run read rows it held)."""
    changes = figures.get("change_feed_rows_by_source") or {}
    snapshots = figures.get("snapshot_rows_by_source") or {}
    moves = {
        **figures["watermarks"],
        **{n: "" for n in (*changes, *snapshots) if n not in figures["watermarks"]},
    }
    rows = []
    for source, moved in moves.items():
        before, _, after = str(moved).partition(" -> ")
        rows.append(
            dg.TableRecord(
                {
                    "source": source,
                    "from": before,
                    "to": int(after) if after.lstrip("-").isdigit() else None,
                    "change_feed_rows": changes.get(source),
                    "snapshot_rows": snapshots.get(source),
                    "restamps_skipped": (figures.get("run_restamp_commits_skipped") or {}).get(source, 0),
                }
            )
        )
    return dg.MetadataValue.table(rows, schema=SOURCES_SCHEMA)


def check_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """A check's metadata, with the offending rows it quotes as a list a person reads."""
    shown = as_metadata({k: v for k, v in values.items() if k != "examples"})
    if values.get("examples"):
        shown["examples"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in values["examples"]))
    return shown


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
