"""Runs whose worker is gone are found on a real instance: by the pid their worker wrote, and, for a
run left ``STARTING`` by a daemon that is gone, by when it was launched. Ended runs give their
concurrency slots back once no process of theirs is alive. A run in flight keeps
``margin-pipeline run`` following the chain, whenever it was created."""

import os
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from margin_pipeline.orchestration.drive import follow_chain
from margin_pipeline.orchestration.workers import dead_runs, fail_dead_runs, free_slots_of_ended_runs
from margin_pipeline.settings import DataRoot
from margin_pipeline_tests.helpers import idle_job

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the check reads /proc (Linux)")


def run_at(instance: dg.DagsterInstance, event_type: str, pid: int | None = None) -> str:
    """A run of ``idle_job`` whose last event is ``event_type`` (written by process ``pid``)."""
    run = instance.create_run_for_job(job_def=idle_job)
    for kind in ("PIPELINE_STARTING", event_type):
        event = dg.DagsterEvent(
            event_type_value=kind, job_name=idle_job.name, pid=pid if kind == event_type else None
        )
        instance.report_dagster_event(event, run.run_id)
    return run.run_id


def gone_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_a_started_run_is_dead_once_its_worker_pid_is_gone() -> None:
    with dg.instance_for_test() as instance:
        alive = run_at(instance, "PIPELINE_START", pid=os.getpid())
        dead = run_at(instance, "PIPELINE_START", pid=gone_pid())
        assert [d.run_id for d in dead_runs(instance)] == [dead]
        (failed,) = fail_dead_runs(instance)
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
        assert f"run worker process {failed.pid}" in failed.describe()


def test_a_worker_killed_but_not_yet_reaped_is_gone() -> None:
    """A SIGKILLed worker whose parent (the code server) died too waits for init to reap it: a
    zombie, still in /proc, running nothing."""
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.01)
    try:
        with dg.instance_for_test() as instance:
            dead = run_at(instance, "PIPELINE_START", pid=zombie.pid)
            assert [d.run_id for d in dead_runs(instance)] == [dead]
    finally:
        zombie.wait()


def test_a_run_left_starting_before_the_daemon_died_is_failed_only_when_told_so() -> None:
    """No worker wrote an event: with a daemon alive it is a slow start (left to run monitoring);
    launched before a moment when no daemon was alive, no worker will ever take it up."""
    with dg.instance_for_test() as instance:
        starting = run_at(instance, "PIPELINE_STARTING")
        assert instance.get_run_by_id(starting).status == dg.DagsterRunStatus.STARTING
        assert dead_runs(instance) == []
        assert dead_runs(instance, launched_before=time.time() - 3600) == []  # launched after that
        time.sleep(0.01)
        (dead,) = fail_dead_runs(instance, launched_before=time.time())
        assert (dead.run_id, dead.pid) == (starting, None)
        assert "no run worker started" in dead.describe()
        assert instance.get_run_by_id(starting).status == dg.DagsterRunStatus.FAILURE
        assert fail_dead_runs(instance, launched_before=time.time()) == []  # failed once


def holding_a_slot(instance: dg.DagsterInstance, worker: int, step: int | None = None) -> str:
    """A started run (worker ``worker``) whose step (in process ``step``, default the worker) holds the
    one slot of pool ``settlement``, then reported failed as its code server reports a killed worker."""
    run_id = run_at(instance, "PIPELINE_START", pid=worker)
    start = dg.DagsterEvent(
        event_type_value="STEP_START", job_name=idle_job.name, step_key="idle", pid=step or worker
    )
    instance.report_dagster_event(start, run_id)
    assert instance.event_log_storage.claim_concurrency_slot("settlement", run_id, "idle").is_claimed
    instance.report_run_failed(instance.get_run_by_id(run_id), message="terminated by signal 9")
    return run_id


def test_an_ended_run_gives_its_slots_back_only_once_no_process_of_it_is_alive() -> None:
    """Run monitoring would hold them 300 s after the run ended (a step may outlive its worker)."""
    pools = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(overrides=pools) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("settlement", 1)
        alive = holding_a_slot(instance, worker=os.getpid())
        assert free_slots_of_ended_runs(instance) == []
        storage.free_concurrency_slots_for_run(alive)

        step_alive = holding_a_slot(instance, worker=gone_pid(), step=os.getpid())
        assert free_slots_of_ended_runs(instance) == []  # its step's process may still be writing
        storage.free_concurrency_slots_for_run(step_alive)

        gone = holding_a_slot(instance, worker=gone_pid(), step=gone_pid())
        assert storage.get_concurrency_run_ids() == {gone}
        assert free_slots_of_ended_runs(instance) == [gone]
        assert storage.get_concurrency_run_ids() == set()
        assert storage.get_concurrency_info("settlement").active_slot_count == 0


def test_the_chain_is_not_done_while_a_run_started_before_the_command_is_in_flight(tmp_path: Path) -> None:
    """``margin-pipeline run`` started just after a sensor launched ingest: while ingest has moved
    the files out of landing and not yet recorded their substrate version, the lake looks caught up.
    The command follows that run too, and ends only once it has (a CI once saw it end at once)."""
    data_root = DataRoot(root=str(tmp_path / "root"))  # nothing landed, nothing ingested: caught up
    with dg.instance_for_test() as instance:
        before = run_at(instance, "PIPELINE_START", pid=os.getpid())
        since = time.time()

        def finish_later() -> None:
            time.sleep(2.0)
            instance.report_dagster_event(
                dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=idle_job.name), before
            )

        finisher = threading.Thread(target=finish_later)
        finisher.start()
        outcome = follow_chain(instance, data_root, since, on_progress=lambda _: None)
        finisher.join()
        assert outcome.done, outcome.message
        assert instance.get_run_by_id(before).status == dg.DagsterRunStatus.SUCCESS
        assert [r.run_id for r in outcome.runs] == [before]
