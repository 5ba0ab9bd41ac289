"""The operator's sensors: failure alerts, SLA alerts and the run log.

``alert_on_failure`` (a run-failure sensor) sends one alert per incident to whoever must
act on it:

- a stream job that failed on its own (UI, ``dagster job launch``) -> that stream's route,
  kind ``stream``, or ``check`` when a blocking data-quality check stopped it;
- a child of the job of jobs -> nothing of its own: the parent's failure reports it;
- the parent -> one message that aggregates every child's outcome, routed to the failed
  child's stream (kind ``stream``/``check``), or to orchestration (kind ``orchestration``)
  when the parent failed in its own steps;
- ingest -> orchestration; a run stopped for exceeding ``dagster/max_runtime`` -> kind ``sla``.

``sla_sensor`` alerts once per (stream, N) when a stream has not consumed substrate version N
within its freshness window (:func:`margin_pipeline.streams.progress.lagging`).
``dead_run_sensor`` fails every starting or started run whose worker process is gone (a killed worker, a
machine that stopped) and gives back at once the concurrency slots of ended runs none of whose
processes is alive, so the chain can go on (:mod:`margin_pipeline.orchestration.workers`).
``run_log_sensor`` writes every finished run to ``control/pipeline_runs``
(:mod:`margin_pipeline.operations.runlog`).
"""

import datetime as dt
import json

import dagster as dg

from margin_pipeline.operations.alerts import Alert, AlertsResource
from margin_pipeline.operations.runlog import PIPELINE_RUNS, run_row, write_runs
from margin_pipeline.orchestration.runs import (
    FINISHED_STATUSES,
    PARENT_RUN_TAG,
    STREAM_TAG,
    RunReport,
    report,
)
from margin_pipeline.orchestration.workers import fail_dead_runs, free_slots_of_ended_runs
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.progress import lagging
from margin_pipeline.streams.registry import STREAMS

#: Alerted (stream, N) keys the SLA sensor remembers: far more than streams x versions that can lag at once.
SLA_KEYS_KEPT = 200
#: Runs read per run-log tick (the cursor carries on from the last one).
RUN_LOG_BATCH = 100


def failure_alert(instance: dg.DagsterInstance, run_id: str) -> Alert | None:
    """The one alert for failed run ``run_id`` (None: a child, which its parent reports)."""
    run = report(instance, run_id)
    if run.tags.get(PARENT_RUN_TAG):
        return None
    stream = _stream_of(instance, run)
    children = _children(instance, run_id) if stream == "parent" else []
    failed = [c for c in children if not c.success]
    cause = failed[0] if failed else run
    if failed:
        stream = _stream_of(instance, cause)
    overran = _overran(instance, cause.run_id)
    kind = (
        "sla"
        if overran
        else "check"
        if cause.failed_checks
        else "stream"
        if stream not in ("parent", "ingest", "orchestration")
        else "orchestration"
    )
    lines = [f"{run.job} run {run_id} {run.status.lower()}: {run.error}"]
    if overran:
        lines.append(f"stopped by run monitoring: {overran}")
    lines += [
        f"  child {c.job} run {c.run_id}: {c.status.lower()}{': ' + c.error if c.error else ''}"
        for c in children
    ]
    if cause.failed_checks:
        lines.append(f"failed checks: {', '.join(cause.failed_checks)}")
    title = (
        f"{cause.job} {'stopped: over its maximum runtime' if overran else 'failed'}"
        + (f" (blocking check {', '.join(cause.failed_checks)})" if cause.failed_checks else "")
        + (f" in {run.job}" if failed else "")
    )
    return Alert(
        kind=kind,
        stream=stream,
        level="error",
        title=title,
        text="\n".join(lines),
        run_id=run_id,
        job=run.job,
        parent_run_id=None,
        details={
            "status": run.status,
            "error": cause.error,
            "failed_checks": cause.failed_checks,
            "children": {c.job: {"run_id": c.run_id, "status": c.status, "error": c.error} for c in children},
        },
    )


def _overran(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Run monitoring's message if it stopped ``run_id`` for exceeding its ``dagster/max_runtime``
    (the run's own error is then whatever its interrupted step raised)."""
    for kind in (dg.DagsterEventType.RUN_CANCELING, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            if "maximum runtime" in (entry.message or ""):
                return entry.message
    return None


def _stream_of(instance: dg.DagsterInstance, run: RunReport) -> str:
    """The route of ``run``: its stream tag, else the stream owning the assets it materialized."""
    if run.tags.get(STREAM_TAG):
        return run.tags[STREAM_TAG]
    dagster_run = instance.get_run_by_id(run.run_id)
    selected = (dagster_run.asset_selection if dagster_run else None) or set()
    for stream in STREAMS.values():
        if any(t.asset_key in selected for t in stream.tables):
            return stream.name
    return "orchestration"


def _children(instance: dg.DagsterInstance, parent_run_id: str) -> list[RunReport]:
    records = instance.get_run_records(dg.RunsFilter(tags={PARENT_RUN_TAG: parent_run_id}))
    return sorted((report(instance, r.dagster_run.run_id) for r in records), key=lambda r: r.job)


@dg.run_failure_sensor(
    name="alert_on_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="One alert per failed run, routed to the stream that must act (children are reported "
    "in their parent's message); sinks: JSON lines, webhook, email (see margin_pipeline.operations.alerts).",
)
def alert_on_failure(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    alert = failure_alert(context.instance, context.dagster_run.run_id)
    if alert is None:
        context.log.info(f"run {context.dagster_run.run_id} is a child: its parent's alert reports it")
        return
    outcome = alerts.send(alert, log=context.log)
    context.log.info(f"alert for run {alert.run_id} ({alert.kind}, route {alert.stream}): {outcome}")


@dg.sensor(
    name="sla_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts once per stream and substrate version N when the stream has not consumed N within "
    "its freshness window (margin_pipeline.streams.progress.lagging).",
)
def sla_sensor(context: dg.SensorEvaluationContext, store: DeltaRsStore, alerts: AlertsResource):
    sent: list[str] = json.loads(context.cursor or "[]")  # alerted (stream, N) keys, oldest first
    lags = [lag for lag in lagging(store) if lag.key not in sent]
    for lag in lags:
        minutes = int(lag.waited.total_seconds() // 60)
        alerts.send(
            Alert(
                kind="sla",
                stream=lag.stream,
                level="error",
                title=f"{lag.stream} has not consumed substrate version {lag.substrate_version} "
                f"after {minutes} min (freshness {int(lag.sla.freshness.total_seconds() // 60)} min)",
                text=lag.behind,
                details={
                    "substrate_version": lag.substrate_version,
                    "recorded_at": lag.recorded_at.isoformat(),
                },
            ),
            log=context.log,
        )
        sent.append(lag.key)
    context.update_cursor(json.dumps(sent[-SLA_KEYS_KEPT:]))
    return dg.SkipReason(f"{len(lags)} SLA breach(es) alerted" if lags else "every stream within its SLA")


@dg.sensor(
    name="run_log_sensor",
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes every finished run (status, substrate version, watermarks, rows, duration, error) to "
    "lake/control/pipeline_runs.",
)
def run_log_sensor(context: dg.SensorEvaluationContext, store: DeltaRsStore):
    after = float(context.cursor) if context.cursor else None
    records = context.instance.get_run_records(
        dg.RunsFilter(
            statuses=list(FINISHED_STATUSES),
            updated_after=dt.datetime.fromtimestamp(after, dt.UTC) if after is not None else None,
        ),
        limit=RUN_LOG_BATCH,
        order_by="update_timestamp",
        ascending=True,
    )
    if not records:
        return dg.SkipReason("no run finished since the last tick")
    rows = [run_row(report(context.instance, r.dagster_run.run_id)) for r in records]
    written = write_runs(store, rows)
    context.update_cursor(str(max(r.update_timestamp.timestamp() for r in records)))
    # The work shows as an observation of the run log table (the asset catalog lists it with its
    # history); the tick itself can only be "skipped", as a sensor that requests no run is.
    logged = f"wrote {len(rows)} finished run(s) to {PIPELINE_RUNS.name} ({written} new or changed)"
    observation = dg.AssetObservation(
        asset_key=PIPELINE_RUNS.asset_key,
        description=logged,
        metadata={
            "runs_logged": len(rows),
            "rows_changed": written,
            "runs": dg.MetadataValue.md(
                "\n".join(f"- {r['job']} {r['run_id'][:8]}: {r['status']}" for r in rows)
            ),
            "delta_table": dg.MetadataValue.path(store.uri(PIPELINE_RUNS)),
        },
    )
    return dg.SensorResult(asset_events=[observation], skip_reason=logged)


@dg.sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails every starting or started run whose run worker process is gone (killed, or its "
    "machine stopped), naming the pid (Dagster's run monitoring cannot see a dead worker of the "
    "default run launcher), and frees at once the concurrency slots of ended runs none of whose "
    "processes is alive, so the run that replaces one does not wait for run monitoring's 300 s.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    dead = fail_dead_runs(context.instance, context.log)
    freed = free_slots_of_ended_runs(context.instance, context.log)
    done = [f"failed {d.describe()}" for d in dead] + [f"freed the slots of ended run {r}" for r in freed]
    return dg.SkipReason("; ".join(done) or "every starting or started run's worker process is alive")
