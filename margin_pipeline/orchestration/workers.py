"""Runs whose worker process is gone: found and failed, so their concurrency slots come back.

Dagster's run monitoring cannot see a dead run worker of the default run launcher (it checks worker
health only for launchers that offer it: Kubernetes, ECS, Docker). When a machine or container dies,
or a worker is killed (SIGKILL, the OOM killer), its run stays ``STARTED`` in the instance for ever,
holding its per-stream concurrency slot, and the next chain waits behind it.

This module is the project's own check. A run worker's first event is written from its own
process and names its pid: "Started process for run (pid: N)" (an engine event, while the run is
still ``STARTING``), then ``RUN_START``. A ``STARTING`` or ``STARTED`` run is dead when that pid is
no longer a process, or is a process started after the event (the pid was reused). Such a run is
reported failed with a message that names the pid. The check needs ``/proc`` (Linux) and runs where
the workers run (the daemon's machine, which is where the default run launcher starts them);
elsewhere it finds nothing.

A run that ended while holding concurrency slots (a killed worker, reported failed by its code
server or by this check) keeps them until run monitoring frees them, ``free_slots_after_run_end_seconds``
(300 s) after it ended, because a step of an ended run may still be running in a process of its
own. Meanwhile the run that run retries launched in its place waits in the queue. ``free_slots_of_ended_runs``
frees them at once when every process that ran the run (its worker, and each step's process) is
gone: nothing of it can still be running.

A ``STARTING`` run with no worker event yet has no pid to check. While a daemon lives that is a
slow start, Dagster's run monitoring's (``start_timeout_seconds``). But a run that went
``STARTING`` before a moment when no daemon was alive was being launched by a code server that is
gone: no worker will come, so ``launched_before`` (given by ``margin-pipeline run`` when it had to
start the daemon itself) fails it too. A worker that were to start after all finds its run finished
and exits without running it (Dagster refuses a worker for a finished run).

Used by the ``dead_run_sensor`` (in the daemon, on the machine its run launcher starts workers on)
and by ``margin-pipeline run`` when it starts the daemon itself, before it drives a chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from margin_pipeline.orchestration.runs import FINISHED_STATUSES

PROC = Path("/proc")
#: A worker process started up to this long after its RUN_START (clock granularity) is still its own.
START_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    pid: int | None  # None: no worker ever started for the run
    started_at: float  # the worker's first event, or the run's STARTING event when there is none

    def describe(self) -> str:
        gone = (
            f"run worker process {self.pid}"
            if self.pid is not None
            else "the launch (no run worker started before its daemon and code server stopped)"
        )
        return (
            f"{gone} of {self.job_name} run {self.run_id} is gone (killed, or its machine stopped): "
            "the run is marked failed and its concurrency slots freed"
        )


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None when there is no such process or it
    has ended: a zombie (killed, not yet reaped by its parent, or by init once its parent died too)
    runs nothing."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in (PROC / "stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, StopIteration):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    if fields[0] in ("Z", "X"):  # field 3 of stat(5), state: zombie, dead
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5): starttime


def worker_alive(pid: int, started_at: float) -> bool:
    """Whether ``pid`` is still the process that wrote an event at ``started_at``."""
    began = process_started_at(pid)
    return began is not None and began <= started_at + START_SLACK_SECONDS


def dead_runs(instance: dg.DagsterInstance, launched_before: float | None = None) -> list[DeadRun]:
    """``STARTING`` and ``STARTED`` runs whose worker process is gone, and (with ``launched_before``,
    a time until which no daemon was alive) ``STARTING`` runs launched before it that no worker took
    up. None where ``/proc`` is not there."""
    if not (PROC / "stat").exists():
        return []
    dead = []
    live = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=live)):
        worker = worker_of(instance, run.run_id)
        if worker is not None:
            pid, started_at = worker
            if not worker_alive(pid, started_at):
                dead.append(DeadRun(run.run_id, run.job_name, pid, started_at))
        elif run.status == dg.DagsterRunStatus.STARTING and launched_before is not None:
            starting = _first(instance, run.run_id, dg.DagsterEventType.RUN_STARTING)
            if starting is not None and starting.timestamp < launched_before:
                dead.append(DeadRun(run.run_id, run.job_name, None, starting.timestamp))
    return dead


def worker_of(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of a run's worker and the time of its first event, or None: no worker wrote one yet."""
    start = _first(instance, run_id, dg.DagsterEventType.RUN_START)
    if start is not None and start.dagster_event is not None and start.dagster_event.pid is not None:
        return start.dagster_event.pid, start.timestamp
    # Before RUN_START: the engine event the worker writes as it starts, its pid in the metadata.
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def _first(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> dg.EventLogEntry | None:
    records = instance.get_records_for_run(run_id, of_type=kind, limit=1).records
    return records[0].event_log_entry if records else None


def fail_dead_runs(
    instance: dg.DagsterInstance, log: Any = None, launched_before: float | None = None
) -> list[DeadRun]:
    """Report every dead run failed (once: a failed run is no longer live); returns them."""
    dead = dead_runs(instance, launched_before)
    for run in dead:
        dagster_run = instance.get_run_by_id(run.run_id)
        if dagster_run is None or dagster_run.is_finished:
            continue
        instance.report_run_failed(dagster_run, message=run.describe())
        if log is not None:
            log.warning(run.describe())
    return dead


def free_slots_of_ended_runs(instance: dg.DagsterInstance, log: Any = None) -> list[str]:
    """Free the concurrency slots still held by ended runs none of whose processes is alive (their
    worker, and the process of each step that started); returns those runs' ids. Ended runs with a
    process still alive are left to run monitoring. None where ``/proc`` is not there."""
    storage = instance.event_log_storage
    if not (PROC / "stat").exists() or not storage.supports_global_concurrency_limits:
        return []
    holding = storage.get_concurrency_run_ids()
    if not holding:
        return []
    ended = instance.get_runs(
        filters=dg.RunsFilter(run_ids=sorted(holding), statuses=list(FINISHED_STATUSES))
    )
    freed = []
    for run in ended:
        if not any(worker_alive(pid, at) for pid, at in _processes(instance, run.run_id).items()):
            storage.free_concurrency_slots_for_run(run.run_id)
            freed.append(run.run_id)
            if log is not None:
                log.info(
                    f"freed the concurrency slots of {run.job_name} run {run.run_id} ({run.status.value}): "
                    "no process of it is alive"
                )
    return freed


def _processes(instance: dg.DagsterInstance, run_id: str) -> dict[int, float]:
    """Every process that ran ``run_id`` (its worker, each step's), with the time of its first event."""
    found: dict[int, float] = {}
    worker = worker_of(instance, run_id)
    if worker is not None:
        found[worker[0]] = worker[1]
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.pid is not None:
            found.setdefault(event.pid, record.event_log_entry.timestamp)
    return found
