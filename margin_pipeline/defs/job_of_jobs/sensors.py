"""Sensors on asset events that carry the chain on from ingest, event driven end to end.

Each reacts to new materializations of the assets it watches. Its cursor says, per asset,
the last materialization it has seen, by name (``{"gold/hh_revenue": 812, ...}``: event
storage ids), so a person reading a tick can tell what it had seen.

``substrate_sensor``: when ingest materializes substrate tables (and so records
a new substrate version N), launch the parent for N; ``run_key`` per N, so one
version starts one parent, and a version every stream has already consumed
starts none.

``watermark_gate``: when a stream publishes, check every stream's watermarks
against the latest N; once all three have consumed it, launch the reconciled
job for N. A failed or lagging stream leaves the gate closed (the skip reason
says which and why). ``run_key`` is N plus the versions of the two tables
hh_margin is built from, so one input state publishes once.

A tick that would ask again for a run key already launched skips, naming that run
(``unless_requested``), rather than leaving the daemon to drop it without a word.
"""

import json

import dagster as dg

from margin_pipeline.defs.ingest import sensor as landing
from margin_pipeline.defs.job_of_jobs import parent
from margin_pipeline.defs.streams import assets as stream_defs
from margin_pipeline.orchestration.runs import PARENT_JOB, SUBSTRATE_VERSION_TAG
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.progress import gate_status, stream_progress
from margin_pipeline.streams.reconciled import RECONCILED
from margin_pipeline.streams.registry import CHILD_STREAMS
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline.substrate.versions import latest_substrate_version, resolve_pin

STREAM_OUTPUTS = [t.asset_key for s in CHILD_STREAMS for t in s.tables if t.asset_key.path[0] == "gold"]
SUBSTRATE_TABLES = [spec.asset_key for spec in SUBSTRATE.values()]


#: Dagster's tags on a run a sensor launched: the request's run key, and the sensor's name.
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"


def unless_requested(
    context: dg.SensorEvaluationContext, request: dg.RunRequest, state: str
) -> dg.RunRequest | dg.SkipReason:
    """``request``, or, if this sensor already launched a run for its run key, a skip naming that run.

    The daemon drops a repeated run key itself, but records the tick as skipped with no reason
    (say a stream published again while the run it opened for the same inputs is queued): the
    operator would read a blank where this says which run already does it. ``state`` opens the
    reason (where the streams stand)."""
    tags = {RUN_KEY_TAG: str(request.run_key), SENSOR_NAME_TAG: context.sensor_name or ""}
    for run in context.instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1):
        return dg.SkipReason(
            f"{state}: run {run.run_id} ({run.status.value.lower()}) was already launched for "
            f"run_key {request.run_key}"
        )
    return request


def newly_materialized(context: dg.SensorEvaluationContext, keys: list[dg.AssetKey]) -> list[str]:
    """The assets of ``keys`` materialized since the cursor (all of them on a first tick), and the
    cursor moved past them: per asset, the storage id of its latest materialization."""
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    latest = {}
    for record in context.instance.get_asset_records(keys):  # one query for every key
        last = record.asset_entry.last_materialization_record
        if last is not None:
            latest[record.asset_entry.asset_key.to_user_string()] = last.storage_id
    context.update_cursor(json.dumps({**seen, **latest}, sort_keys=True))
    return sorted(name for name, storage_id in latest.items() if storage_id > seen.get(name, -1))


@dg.sensor(
    job_name=PARENT_JOB,
    minimum_interval_seconds=landing.EVERY_DAEMON_LOOP,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Launches {PARENT_JOB} when ingest records a new substrate version N (run_key per N).",
)
def substrate_sensor(context: dg.SensorEvaluationContext, store: DeltaRsStore):
    if not newly_materialized(context, SUBSTRATE_TABLES):
        return dg.SkipReason(f"{status_line(store)} (no substrate table materialized since the last tick)")
    number = latest_substrate_version(store)
    if number is None:
        return dg.SkipReason("no substrate version recorded yet")
    progress, line = gate_status(store, CHILD_STREAMS, resolve_pin(store, number))
    if all(p.consumed for p in progress):
        return dg.SkipReason(f"{line}: nothing for {PARENT_JOB} to run")
    request = dg.RunRequest(
        run_key=f"substrate@{number}",
        run_config=dg.RunConfig(ops={"pin_substrate": parent.ParentConfig(substrate_version=number)}),
        tags={SUBSTRATE_VERSION_TAG: str(number)},
    )
    decided = unless_requested(context, request, line)
    if decided is request:
        context.log.info(f"{line}: launching {PARENT_JOB} for N={number}")
    return decided


@dg.sensor(
    job_name=RECONCILED.job_name,
    minimum_interval_seconds=landing.EVERY_DAEMON_LOOP,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="The watermark gate: publishes hh_margin once settlement, half_hourly and monthly have all "
    "consumed the latest substrate version N.",
)
def watermark_gate(context: dg.SensorEvaluationContext, store: DeltaRsStore):
    published = newly_materialized(context, STREAM_OUTPUTS)
    if not published:
        return dg.SkipReason(f"{status_line(store)} (no stream published since the last tick)")
    context.log.info(f"published since the last tick: {', '.join(published)}")
    request = gate_request(store)
    if isinstance(request, dg.SkipReason):
        return request
    return unless_requested(context, request, f"gate open for N={request.tags[SUBSTRATE_VERSION_TAG]}")


def status_line(store: DeltaRsStore) -> str:
    """Where the child streams stand against the latest N, in one line."""
    number = latest_substrate_version(store)
    if number is None:
        return "no substrate version recorded yet"
    return gate_status(store, CHILD_STREAMS, resolve_pin(store, number))[1]


def gate_request(store: DeltaRsStore) -> dg.RunRequest | dg.SkipReason:
    """Open the gate for the latest N if every stream has consumed it and hh_margin has not."""
    number = latest_substrate_version(store)
    if number is None:
        return dg.SkipReason("no substrate version recorded yet")
    pin = resolve_pin(store, number)
    progress, line = gate_status(store, CHILD_STREAMS, pin)
    if not all(p.consumed for p in progress):
        behind = "; ".join(p.describe() for p in progress if not p.consumed)
        return dg.SkipReason(f"gate closed for N={number}: {line} ({behind})")
    reconciled = stream_progress(store, RECONCILED, pin)
    if reconciled.consumed:
        return dg.SkipReason(f"{line}: hh_margin already reflects N={number}")
    inputs = ",".join(f"{s.source}={s.target}" for s in reconciled.sources)
    return dg.RunRequest(
        run_key=f"hh_margin@{number}:{inputs}",
        run_config=stream_defs.run_config(RECONCILED, RECONCILED.profile(substrate_version=number)),
        tags={SUBSTRATE_VERSION_TAG: str(number)},
    )
