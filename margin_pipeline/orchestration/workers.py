"""Runs whose worker process is gone: found and failed, so their concurrency slots come back.

Dagster's run monitoring cannot see a dead run worker of the default run launcher (it checks worker
health only for launchers that offer it: Kubernetes, ECS, Docker). When a machine or container dies,
or a worker is killed (SIGKILL, the OOM killer), its run stays ``STARTED`` in the instance for ever,
holding its per-stream concurrency slot, and the next chain waits behind it.

This module is the project's own check. A run worker writes ``RUN_START`` from its own process, so
the event carries the worker's pid and the time it started; a ``STARTED`` run is dead when that pid
is no longer a process, or is a process started after the event (the pid was reused). Such a run is
reported failed with a message that names the pid, and run monitoring then frees its slots. The
check needs ``/proc`` (Linux) and runs where the workers run (the daemon's machine, which is where
the default run launcher starts them); elsewhere it finds nothing.

Used by the ``dead_run_sensor`` (in the daemon, on the machine its run launcher starts workers on)
and by ``margin-pipeline run`` when it starts the daemon itself, before it drives a chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

PROC = Path("/proc")
#: A worker process started up to this long after its RUN_START (clock granularity) is still its own.
START_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    pid: int
    started_at: float  # RUN_START's timestamp

    def describe(self) -> str:
        return (
            f"run worker process {self.pid} of {self.job_name} run {self.run_id} is gone (killed, or its "
            "machine stopped): the run is marked failed and its concurrency slots freed"
        )


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None when there is no such process."""
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
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5): starttime


def worker_alive(pid: int, started_at: float) -> bool:
    """Whether ``pid`` is still the process that wrote a RUN_START at ``started_at``."""
    began = process_started_at(pid)
    return began is not None and began <= started_at + START_SLACK_SECONDS


def dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """``STARTED`` runs whose worker process is gone (none where ``/proc`` is not there)."""
    if not (PROC / "stat").exists():
        return []
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        start = _run_start(instance, run.run_id)
        if start is None:
            continue
        pid, started_at = start
        if not worker_alive(pid, started_at):
            dead.append(DeadRun(run.run_id, run.job_name, pid, started_at))
    return dead


def _run_start(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The worker pid and time of a run's ``RUN_START`` event (None: not started by a worker yet)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    event = entry.dagster_event
    if event is None or event.pid is None:
        return None
    return event.pid, entry.timestamp


def fail_dead_runs(instance: dg.DagsterInstance, log: Any = None) -> list[DeadRun]:
    """Report every dead run failed (once: a failed run is no longer ``STARTED``); returns them."""
    dead = dead_runs(instance)
    for run in dead:
        dagster_run = instance.get_run_by_id(run.run_id)
        if dagster_run is None or dagster_run.status != dg.DagsterRunStatus.STARTED:
            continue
        instance.report_run_failed(dagster_run, message=run.describe())
        if log is not None:
            log.warning(run.describe())
    return dead
