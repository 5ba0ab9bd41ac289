"""Reading runs back from the Dagster instance: status, the error that ended a run, what it materialized.

Used by the parent job to report on its children and by ``margin-pipeline run``
to print what the chain did.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

#: The job of jobs (``margin_pipeline.defs.job_of_jobs``).
PARENT_JOB = "margin_job_of_jobs"
#: Which stream a run belongs to (``parent``, ``ingest``, a stream's name, ``maintenance``): the
#: instance runs one run at a time per value (``dagster.yaml``) and alerts route by it.
STREAM_TAG = "margin_pipeline/stream"
PARENT_RUN_TAG = "margin_pipeline/parent_run_id"
SUBSTRATE_VERSION_TAG = "margin_pipeline/substrate_version"
#: A run in one of these has ended.
FINISHED_STATUSES = frozenset(
    {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
)


@dataclass
class RunReport:
    run_id: str
    job: str
    status: str
    started: float | None
    ended: float | None
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset key -> metadata values
    failed_checks: list[str] = field(default_factory=list)  # "asset:check" of every failed asset check

    @property
    def success(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS.value

    @property
    def seconds(self) -> float:
        return (self.ended or 0.0) - (self.started or 0.0) if self.started else 0.0


#: Set by Dagster's run retries on a failed run once its retry is launched: the retry's run id.
AUTO_RETRY_RUN_TAG = "dagster/auto_retry_run_id"
#: Set by Dagster's run retries on a failed run: "true" when a retry will be (or was) launched.
WILL_RETRY_TAG = "dagster/will_retry"
#: A run's limit in seconds, enforced by run monitoring (``dagster.yaml``).
MAX_RUNTIME_TAG = "dagster/max_runtime"
#: How long a failed run may wait for run retries to launch its retry before it counts as final.
RETRY_LAUNCH_SECONDS = 120.0


def may_be_retried(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether run retries will relaunch (or have relaunched) this finished run, or may yet say so.

    With run retries on, Dagster tags every failed run ``dagster/will_retry`` as it stores the
    failure, but just *after* it writes the FAILURE status: a run read in between has failed and
    carries no verdict yet. Taking that moment for a final failure failed a parent whose child's
    worker was killed though the child's retry then succeeded, so an untagged failure counts as
    possibly retried.

    A run over its ``dagster/max_runtime`` is failed by run monitoring while its stopped worker
    reports it canceled, in either order; the status is the later one. CANCELED, it is retried
    all the same (the failure has its verdict), and until that verdict it may yet be. A run
    canceled otherwise (the UI's Terminate) is not retried."""
    verdict = run.tags.get(WILL_RETRY_TAG)
    if run.status == dg.DagsterRunStatus.CANCELED:
        return verdict == "true" or (
            verdict is None and instance.run_retries_enabled and _ran_its_max_runtime(instance, run)
        )
    if run.status != dg.DagsterRunStatus.FAILURE:
        return False
    return verdict == "true" or (verdict is None and instance.run_retries_enabled)


def _ran_its_max_runtime(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    try:
        limit = float(run.tags.get(MAX_RUNTIME_TAG, ""))
    except ValueError:  # none, or one run monitoring ignores too
        return False
    record = instance.get_run_record_by_id(run.run_id)
    if record is None or record.start_time is None or record.end_time is None:
        return False
    return record.end_time - record.start_time >= limit


def settled_run(instance: dg.DagsterInstance, run_id: str, poll: float = 1.0, log: Any = None) -> str:
    """The run that settles ``run_id``'s outcome, once finished: ``run_id`` itself, or, when run
    retries relaunched it (a worker killed, a machine lost), its retry's, followed retry after retry.
    A failed run that may be retried (:func:`may_be_retried`) is waited on until its retry is
    launched (at most :data:`RETRY_LAUNCH_SECONDS`: with no daemon to launch it, the failure stands)."""
    waiting_since = None
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in FINISHED_STATUSES:
            time.sleep(poll)
            continue
        retry = run.tags.get(AUTO_RETRY_RUN_TAG)
        if retry is None and may_be_retried(instance, run):
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since < RETRY_LAUNCH_SECONDS:
                time.sleep(poll)
                continue
        if run.status == dg.DagsterRunStatus.SUCCESS or retry is None:
            return run_id
        if log is not None:
            log.warning(
                f"{run.job_name} run {run_id} {run.status.value.lower()} and was retried as run {retry}: "
                "following it"
            )
        run_id, waiting_since = retry, None


def report(instance: dg.DagsterInstance, run_id: str) -> RunReport:
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"no run {run_id} in this instance")
    run = record.dagster_run
    return RunReport(
        run_id=run_id,
        job=run.job_name,
        status=run.status.value,
        started=record.start_time,
        ended=record.end_time,
        error=_error(instance, run_id) if run.status == dg.DagsterRunStatus.FAILURE else "",
        tags=dict(run.tags),
        assets=_materializations(instance, run_id),
        failed_checks=_failed_checks(instance, run_id),
    )


#: Errors Dagster raises around the error of an op.
WRAPPERS = {"DagsterExecutionStepExecutionError"}


def _error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step failure's message (the root cause), else the run failure's."""
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for entry in failures:
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        if data is not None and data.error is not None:
            cause = data.error
            # Dagster wraps what an op raised in a DagsterExecutionStepExecutionError ("Error occurred
            # while executing op ..."): the op's own error, its cause, is the one that says why.
            while cause.cause is not None and (not cause.message.strip() or cause.cls_name in WRAPPERS):
                cause = cause.cause
            return f"step {entry.step_key}: {cause.message.strip().splitlines()[0]}"
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        return entry.message or "run failed"
    return "run failed (no error recorded; was it canceled?)"


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None:
            out[materialization.asset_key.to_user_string()] = {
                k: plain(v) for k, v in materialization.metadata.items()
            }
    return out


def plain(value: dg.MetadataValue) -> Any:
    """A metadata value as plain data: a table as a list of row dicts, anything else as its value."""
    if isinstance(value, dg.TableMetadataValue):
        return [dict(record.data) for record in value.records]
    return value.value


def by_source(metadata: dict[str, Any], column: str) -> dict[str, Any]:
    """One column of a stream materialization's ``sources`` table (as :func:`plain` reads it), by
    source; sources without a value (not read that way) are left out."""
    return {s["source"]: s[column] for s in metadata.get("sources") or [] if s[column] is not None}


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is not None and not evaluation.passed:
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return failed
