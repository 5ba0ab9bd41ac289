"""``margin_job_of_jobs``: the parent that owns cross-stream order, parallelism and the substrate pin.

    pin_substrate ──┬── settlement ──┐
                    └── half_hourly ─┴── monthly ── summary

``pin_substrate`` fixes substrate version N for the whole run and launches the streams that
depend on no other stream (settlement and half_hourly) as separate Dagster runs at once, each with
its own run config (the stream's tuning profile with N pinned) and tagged with the parent run id,
through the instance's run queue. A stream whose change feed ``(watermark, N]`` is empty is skipped,
not run. Each stream op (one per child stream of the registry, named after it, after the streams
its descriptor names) then waits for its child and reports it; monthly's op launches monthly only
when both succeeded for N. The reconciled layer is then published by ``watermark_gate`` once every
stream has consumed N.

The children run side by side as runs of their own; the parent's ops only launch and wait, so they
run one after the other in the parent's process (the code location's default executor): no
process per op. A failing child fails its op (naming the child, its run and its error); the
sibling's op still reports its child, its committed output stays and nothing downstream starts.
Re-executing the parent *from failure* runs only the failed op and what depends on it: the failed
op, in a run that is not the one that pinned N, launches its stream again. A parent stopped while
it waits cancels every child it launched that has not ended.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from margin_pipeline.defs.streams import assets as stream_defs
from margin_pipeline.defs.streams.factory import max_runtime_tag
from margin_pipeline.orchestration.runs import (
    FINISHED_STATUSES,
    PARENT_JOB,
    PARENT_RUN_TAG,
    STREAM_TAG,
    SUBSTRATE_VERSION_TAG,
    report,
    settled_run,
)
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.progress import stream_progress
from margin_pipeline.streams.registry import CHILD_STREAMS
from margin_pipeline.streams.shared.sla import PARENT_MAX_RUNTIME
from margin_pipeline.streams.shared.stream import Stream
from margin_pipeline.streams.shared.watermarks import every_watermark
from margin_pipeline.substrate.versions import resolve_pin

#: How often a parent step looks at its child's run record (one indexed SQLite or PostgreSQL read):
#: the next child starts this much after the last one ended, at most.
POLL_SECONDS = 0.25


class _PinConfig(dg.Config):
    substrate_version: int | None = Field(
        default=None, description="Substrate version N to pin (default: the latest recorded)."
    )
    full_rebuild: bool = Field(
        default=False, description="Run every stream as a full rebuild (never skipped)."
    )


#: The parent's run config: which N to pin, and each child's tuning profile (one field per child stream).
ParentConfig = create_model(
    "ParentConfig",
    __base__=_PinConfig,
    __doc__="The parent's run config: which N to pin, and each child's tuning profile.",
    **{s.name: (s.profile, Field(default_factory=s.profile)) for s in CHILD_STREAMS},  # type: ignore[call-overload]
)


@dataclass(frozen=True)
class ParentPin:
    """What the parent hands its children: the pinned N, each child's profile (values, N set), and
    what ``pin_substrate`` did with the streams that depend on no other: launched (their run ids)
    or skipped (why)."""

    parent_run_id: str
    substrate_version: int
    full_rebuild: bool
    profiles: dict[str, dict[str, Any]]
    launched: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildOutcome:
    """What a child op passes downstream: how its stream ended for N."""

    stream: str
    status: str  # "succeeded" or "skipped"
    run_id: str | None
    substrate_version: int
    detail: dict[str, Any] = field(default_factory=dict)


@dg.op(
    description="Pin substrate version N for the whole parent run, report how far each stream is, and "
    "launch the streams that depend on no other stream (side by side), or skip those with nothing to read.",
)
def pin_substrate(
    context: dg.OpExecutionContext,
    config: ParentConfig,
    store: DeltaRsStore,  # type: ignore[valid-type]
) -> dg.Output[ParentPin]:
    pin = resolve_pin(store, config.substrate_version)
    if pin.number == 0:
        raise dg.Failure("nothing has been ingested yet: there is no substrate version to pin")
    profiles = {}
    for stream in CHILD_STREAMS:
        profile = getattr(config, stream.name).model_copy(
            update={"substrate_version": pin.number, "full_rebuild": config.full_rebuild}
        )
        profiles[stream.name] = profile.model_dump()
    watermarks = every_watermark(store)
    progress = {s.name: stream_progress(store, s, pin, watermarks) for s in CHILD_STREAMS}
    for line in progress.values():
        context.log.info(line.describe())
    plan = ParentPin(context.run_id, pin.number, config.full_rebuild, profiles)
    launched, skipped = {}, {}
    try:
        for stream in CHILD_STREAMS:
            if stream.after:
                continue
            if progress[stream.name].consumed and not config.full_rebuild:
                skipped[stream.name] = progress[stream.name].describe()
                context.log.info(f"skipped {stream.job_name}: change feed empty ({skipped[stream.name]})")
                continue
            launched[stream.name] = submit_child(context, stream, plan)
            context.log.info(
                f"launched {stream.job_name} run {launched[stream.name]} for substrate version {pin.number}"
            )
    except BaseException:
        cancel_children(context)
        raise
    return dg.Output(
        dataclasses.replace(plan, launched=launched, skipped=skipped),
        metadata={
            "substrate_version": pin.number,
            "table_versions": dg.MetadataValue.json(pin.tables),
            "streams": dg.MetadataValue.json({name: p.describe() for name, p in progress.items()}),
            **{f"{name}_run": dg.MetadataValue.dagster_run(run_id) for name, run_id in launched.items()},
        },
    )


def child_op(stream: Stream) -> dg.OpDefinition:
    """The parent's op for ``stream``: named after it, taking the pin and the outcomes of ``after``."""
    if stream.after:
        does = (
            f"Launch {stream.job_name} for N as a child run once {' and '.join(stream.after)} succeeded for N"
        )
    else:
        does = f"Wait for the {stream.job_name} child run pin_substrate launched for N (or report it skipped)"

    @dg.op(
        name=stream.name,
        ins={"pin": dg.In(ParentPin), **{u: dg.In(ChildOutcome) for u in stream.after}},
        description=f"{does}, and report it.",
    )
    def _child(context: dg.OpExecutionContext, store: DeltaRsStore, pin: ParentPin, **upstream: ChildOutcome):
        if upstream:
            states = ", ".join(f"{name} {outcome.status}" for name, outcome in upstream.items())
            context.log.info(f"upstream for N={pin.substrate_version}: {states}")
        if context.run_id == pin.parent_run_id:  # not a re-execution: what pin_substrate did stands
            if stream.name in pin.skipped:
                return skipped_child(stream, pin.substrate_version, pin.skipped[stream.name])
            if stream.name in pin.launched:
                return await_child(context, store, stream, pin, pin.launched[stream.name])
        return run_child(context, store, stream, pin)

    return _child


def skipped_child(stream: Stream, number: int, reason: str) -> dg.Output[ChildOutcome]:
    return dg.Output(
        ChildOutcome(stream.name, "skipped", None, number),
        metadata={"outcome": "skipped", "reason": reason, "substrate_version": number},
    )


def run_child(
    context: dg.OpExecutionContext, store: DeltaRsStore, stream: Stream, plan: ParentPin
) -> dg.Output[ChildOutcome]:
    """Launch ``stream``'s job for N as a child run and wait for it; skip it if it has nothing to read."""
    pin = resolve_pin(store, plan.substrate_version)
    before = stream_progress(store, stream, pin)
    if before.consumed and not plan.full_rebuild:
        context.log.info(f"skipped {stream.job_name}: change feed empty ({before.describe()})")
        return skipped_child(stream, pin.number, before.describe())
    child_id = submit_child(context, stream, plan)
    context.log.info(f"launched {stream.job_name} run {child_id} for substrate version {pin.number}")
    return await_child(context, store, stream, plan, child_id)


def cancel_children(context: dg.OpExecutionContext, *also: str) -> None:
    """Cancel every child this run launched that has not ended, and the runs ``also`` names."""
    children = context.instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_TAG: context.run_id}))
    for run_id in {c.run_id for c in children if c.status not in FINISHED_STATUSES} | set(also):
        context.instance.run_coordinator.cancel_run(run_id)


def await_child(
    context: dg.OpExecutionContext, store: DeltaRsStore, stream: Stream, plan: ParentPin, child_id: str
) -> dg.Output[ChildOutcome]:
    """Wait for ``stream``'s child run ``child_id`` (or the retry that settles it) and report it."""
    pin = resolve_pin(store, plan.substrate_version)
    launched = child_id
    try:  # a child whose worker died is failed (dead_run_sensor) and retried: its retry settles it
        child_id = settled_run(context.instance, child_id, POLL_SECONDS, context.log)
    except BaseException:  # the parent was stopped: do not leave its children running unowned
        cancel_children(context, launched, child_id)
        raise
    child = report(context.instance, child_id)
    link = dg.MetadataValue.dagster_run(child_id)
    if not child.success:
        raise dg.Failure(
            description=f"child {stream.job_name} run {child_id} {child.status.lower()}: {child.error}",
            metadata={"child_run": link, "child_status": child.status, "error": child.error},
        )
    after = stream_progress(store, stream, pin)
    if not after.consumed:
        raise dg.Failure(
            description=f"child {stream.job_name} run {child_id} succeeded but {after.describe()}",
            metadata={"child_run": link},
        )
    totals = _totals(child.assets)
    return dg.Output(
        ChildOutcome(stream.name, "succeeded", child_id, pin.number, {**totals, "seconds": child.seconds}),
        metadata={
            "outcome": "succeeded",
            "child_run": link,
            "substrate_version": pin.number,
            "child_seconds": round(child.seconds, 1),
            **totals,
            "watermarks": dg.MetadataValue.json({str(s): s.watermark for s in after.sources}),
        },
    )


def submit_child(context: dg.OpExecutionContext, stream: Stream, plan: ParentPin) -> str:
    """Create the child run in the instance and hand it to the run queue (the instance's concurrency
    limits decide when it starts). The child's job comes from the parent's own repository, and its
    origin is the parent's code location with the child's job name."""
    parent = context.dagster_run
    if parent.remote_job_origin is None or parent.job_code_origin is None:
        raise dg.Failure(
            f"{PARENT_JOB} launches its children through the instance's run queue, so it must itself be "
            "launched from a code location (the UI, `dagster job launch`, a sensor or "
            "`margin-pipeline run`), not executed in process."
        )
    job = context.repository_def.get_job(stream.job_name)
    profile = stream.profile.model_validate(plan.profiles[stream.name])
    run = context.instance.create_run_for_job(
        job_def=job,
        run_config=stream_defs.run_config(stream, profile),
        tags={
            **job.tags,
            PARENT_RUN_TAG: parent.run_id,
            SUBSTRATE_VERSION_TAG: str(plan.substrate_version),
        },
        remote_job_origin=parent.remote_job_origin._replace(job_name=stream.job_name),
        job_code_origin=parent.job_code_origin._replace(job_name=stream.job_name),
    )
    context.instance.submit_run(run.run_id, workspace=None)
    return run.run_id


def _totals(assets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def total(key: str) -> int:
        return int(sum(m.get(key) or 0 for m in assets.values()))

    return {
        "rows_read": total("rows_read"),
        "rows_inserted": total("rows_inserted"),
        "rows_updated": total("rows_updated"),
        "rows_deleted": total("rows_deleted"),
        "modes": ", ".join(f"{k}: {m.get('mode')}" for k, m in assets.items()),
    }


CHILD_OPS = {s.name: child_op(s) for s in CHILD_STREAMS}


@dg.op(
    ins={s.name: dg.In(ChildOutcome) for s in CHILD_STREAMS},
    description="Report every child of this run in one table: job, run, outcome, N, rows read and "
    "written, seconds. The watermark gate publishes hh_margin from here.",
)
def summary(context: dg.OpExecutionContext, **children: ChildOutcome) -> dg.Output[None]:
    lines = [
        "| stream | job | child run | outcome | N | rows read | rows written | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stream in CHILD_STREAMS:
        child = children[stream.name]
        run = f"[{child.run_id[:8]}](/runs/{child.run_id})" if child.run_id else "(not launched)"
        figures = child.detail
        written = sum(int(figures.get(k) or 0) for k in ("rows_inserted", "rows_updated", "rows_deleted"))
        lines.append(
            f"| {stream.name} | {stream.job_name} | {run} | {child.status} | {child.substrate_version} | "
            f"{int(figures.get('rows_read') or 0):,} | {written:,} | {figures.get('seconds', 0):.1f} |"
        )
    launched = [c for c in children.values() if c.run_id]
    context.log.info(f"{len(launched)} child run(s) for N={next(iter(children.values())).substrate_version}")
    return dg.Output(
        None,
        metadata={
            "children": dg.MetadataValue.md("\n".join(lines)),
            **{f"{c.stream}_run": dg.MetadataValue.dagster_run(c.run_id) for c in launched if c.run_id},
        },
    )


@dg.job(
    name=PARENT_JOB,
    description="The job of jobs: pins substrate version N, runs settlement and half_hourly side by side "
    "and monthly after both, each as its own child run; the watermark gate then publishes hh_margin.",
    tags={STREAM_TAG: "parent", **max_runtime_tag(PARENT_MAX_RUNTIME)},
)
def margin_job_of_jobs():
    pin = pin_substrate()
    outcomes: dict[str, Any] = {}
    for stream in CHILD_STREAMS:
        outcomes[stream.name] = CHILD_OPS[stream.name](pin, **{u: outcomes[u] for u in stream.after})
    summary(**outcomes)
