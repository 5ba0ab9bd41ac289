"""A parent waits on the run that settles its child: the child itself, or the retry run retries launched."""

import threading
import time

import dagster as dg

from margin_pipeline.orchestration.runs import AUTO_RETRY_RUN_TAG, settled_run


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


def test_a_retried_child_is_followed_to_its_retry() -> None:
    with dg.instance_for_test() as instance:
        failed = run(instance, fail=True)
        instance.add_run_tags(failed, {"dagster/will_retry": "true"})  # what run retries marks

        def retry_later() -> None:  # the daemon launches the retry a little later
            time.sleep(1.5)
            retry = run(instance, fail=False)
            instance.add_run_tags(failed, {AUTO_RETRY_RUN_TAG: retry})

        launcher = threading.Thread(target=retry_later)
        launcher.start()
        settled = settled_run(instance, failed, poll=0.2)
        launcher.join()
        assert settled != failed
        assert instance.get_run_by_id(settled).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_run_by_id(failed).tags[AUTO_RETRY_RUN_TAG] == settled


def test_a_failure_that_is_not_retried_settles_at_once() -> None:
    with dg.instance_for_test() as instance:
        failed = run(instance, fail=True)
        instance.add_run_tags(failed, {"dagster/will_retry": "false"})
        started = time.monotonic()
        assert settled_run(instance, failed, poll=0.2) == failed
        assert time.monotonic() - started < 5
