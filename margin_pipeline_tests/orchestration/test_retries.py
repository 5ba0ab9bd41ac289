"""A parent waits on the run that settles its child: the child itself, or the retry run retries launched."""

import threading
import time

import dagster as dg

from margin_pipeline.orchestration.runs import (
    AUTO_RETRY_RUN_TAG,
    MAX_RUNTIME_TAG,
    WILL_RETRY_TAG,
    settled_run,
)


@dg.op
def outcome(context: dg.OpExecutionContext) -> None:
    if context.run.tags.get("fail") == "yes":
        raise RuntimeError("the worker died")


@dg.job
def child() -> None:
    outcome()


def run(instance: dg.DagsterInstance, fail: bool) -> str:
    result = child.execute_in_process(
        instance=instance, tags={"fail": "yes" if fail else "no"}, raise_on_error=False
    )
    return result.run_id


#: An instance whose run retries are on, as ``dagster.yaml`` has them.
RUN_RETRIES = {"run_retries": {"enabled": True, "max_retries": 1}}


def settled_as_run_retries_act(instance: dg.DagsterInstance, run_id: str) -> str:
    """:func:`settled_run` of ``run_id`` while, a second later, run retries give it its verdict and
    launch a retry that succeeds (the daemon's part, in a thread)."""

    def verdict_then_retry() -> None:
        time.sleep(1.0)
        instance.add_run_tags(run_id, {WILL_RETRY_TAG: "true"})
        retry = run(instance, fail=False)
        instance.add_run_tags(run_id, {AUTO_RETRY_RUN_TAG: retry})

    daemon = threading.Thread(target=verdict_then_retry)
    daemon.start()
    settled = settled_run(instance, run_id, poll=0.2)
    daemon.join()
    return settled


def test_a_retried_child_is_followed_to_its_retry() -> None:
    with dg.instance_for_test() as instance:
        failed = run(instance, fail=True)
        instance.add_run_tags(failed, {WILL_RETRY_TAG: "true"})  # the verdict is there before the retry
        settled = settled_as_run_retries_act(instance, failed)
        assert settled != failed
        assert instance.get_run_by_id(settled).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_run_by_id(failed).tags[AUTO_RETRY_RUN_TAG] == settled


def test_a_failure_that_is_not_retried_settles_at_once() -> None:
    with dg.instance_for_test() as instance:
        failed = run(instance, fail=True)
        instance.add_run_tags(failed, {WILL_RETRY_TAG: "false"})
        started = time.monotonic()
        assert settled_run(instance, failed, poll=0.2) == failed
        assert time.monotonic() - started < 5


def test_a_failure_read_before_run_retries_tag_it_is_waited_on(tmp_path) -> None:
    """Dagster writes a failed run's FAILURE status first and its ``dagster/will_retry`` verdict
    just after: a parent reading the child in between must wait for the verdict, not take the
    failure as final. The run is failed through an instance without run retries, so it stays in
    that in-between state until the test gives it its verdict."""
    with dg.instance_for_test(temp_dir=str(tmp_path), set_dagster_home=False) as writer:
        failed = run(writer, fail=True)
        assert WILL_RETRY_TAG not in writer.get_run_by_id(failed).tags
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=RUN_RETRIES) as instance:
        settled = settled_as_run_retries_act(instance, failed)
        assert settled == instance.get_run_by_id(failed).tags[AUTO_RETRY_RUN_TAG]
        assert instance.get_run_by_id(settled).status == dg.DagsterRunStatus.SUCCESS


def canceled_over_its_max_runtime(instance: dg.DagsterInstance, limit: float) -> str:
    """A run that ran ``limit`` seconds, then was reported canceled, as its worker stopped by run
    monitoring does when that comes after monitoring's failure (or before it, read in between)."""
    run_id = child.execute_in_process(instance=instance, tags={MAX_RUNTIME_TAG: str(limit)}).run_id
    time.sleep(limit)
    instance.report_run_canceled(instance.get_run_by_id(run_id))
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    return run_id


def test_a_run_over_its_max_runtime_left_canceled_is_followed_to_its_retry(tmp_path) -> None:
    """Its status may stay CANCELED (the later of the two reports) though run retries retry it:
    first with no verdict yet, then with it."""
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=RUN_RETRIES) as instance:
        canceled = canceled_over_its_max_runtime(instance, 1.0)
        settled = settled_as_run_retries_act(instance, canceled)
        assert settled == instance.get_run_by_id(canceled).tags[AUTO_RETRY_RUN_TAG]


def test_a_run_canceled_before_its_max_runtime_settles_at_once(tmp_path) -> None:
    """Canceled by the operator (the UI's Terminate), a run is not retried: no waiting for a verdict."""
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=RUN_RETRIES) as instance:
        run_id = child.execute_in_process(instance=instance, tags={MAX_RUNTIME_TAG: "3600"}).run_id
        instance.report_run_canceled(instance.get_run_by_id(run_id))
        started = time.monotonic()
        assert settled_run(instance, run_id, poll=0.2) == run_id
        assert time.monotonic() - started < 5
