"""``gold/monthly_margin`` as a for-each over months: plan, one step per affected month, commit.

``margin_months``
    Consumes the change feeds ``(watermark, pinned]`` of the day ledger and the
    agreements once, reduces them to the affected account x months, keeps that scope
    in ``control/monthly_margin_scope`` and emits one dynamic output per month.
``margin_month`` (mapped)
    Recomputes the affected accounts of its month from the ledger at the pinned
    version and merges them into ``gold/monthly_margin``. The monthly_stream job's
    executor bounds how many months run at once (``MONTH_CONCURRENCY``).
``margin_commit`` (collect)
    Advances the watermarks once every month is merged and reports the run's
    metadata (the same figures as every stream output, plus the months).

On a remote engine (``engine`` in the profile) the plan step hands over and the commit
step runs the same three functions one month after another through Pipes
(:func:`refresh_margin`, :mod:`margin_pipeline.remote`).

A backfill (``backfill_from``/``backfill_to`` in the profile) takes the same path
over whole months and leaves the watermarks alone. A full rebuild is the backfill
of every month the ledger or the output holds. A failed month leaves the watermarks
where they were, so the next run redoes the same range; re-executing the run from
failure re-runs only the failed months and the commit (the plan's scope is kept).
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from margin_pipeline.defs.streams.factory import (
    announce_parent,
    check_specs,
    launched_by,
    layer_tag,
    presented,
    published,
    table_metadata,
)
from margin_pipeline.engines import SparkEngine
from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.months import (
    MarginPlan,
    MonthResult,
    MonthTask,
    commit_margin,
    plan_margin,
    recompute_month,
)
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.registry import output_of
from margin_pipeline.streams.shared.quality import MONTHLY_MARGIN_CHECKS
from margin_pipeline.streams.shared.retries import RetryProfile, retrying
from margin_pipeline.substrate.tables import SUBSTRATE

_stream, OUTPUT = output_of(MONTHLY_MARGIN.name)
STREAM = _stream.name


@dg.op(
    ins={"ledger": dg.In(dg.Nothing), "agreements": dg.In(dg.Nothing)},
    out={"plan": dg.Out(MarginPlan), "months": dg.DynamicOut(MonthTask)},
    description="Reduce the ledger's and the agreements' change feeds to affected account x months; "
    "one output per month (none on a remote engine: the commit step runs the whole for-each there).",
)
def margin_months(
    context: dg.OpExecutionContext, config: MonthlyProfile, store: DeltaRsStore, spark: SparkEngine
) -> Iterator[Any]:
    announce_parent(context)
    if config.engine != "local":  # the commit step runs the whole for-each on the remote engine
        remote = config.model_dump(mode="json")
        retry = config.retry.model_dump()
        plan = MarginPlan(context.run_id, 0, {}, {}, (), False, {}, time.time(), remote, retry)
        yield dg.Output(plan, "plan")
        return
    with retrying(context, config.retry, STREAM):
        plan, tasks = plan_margin(spark.spark_session, store, config, context.run_id, context.log)
    yield dg.Output(
        plan,
        "plan",
        metadata={"mode": plan.metadata["mode"], "months": dg.MetadataValue.json(list(plan.months))},
    )
    for task in tasks:
        yield dg.DynamicOutput(task, mapping_key=task.month.replace("-", "_")[:7], output_name="months")


@dg.op(
    tags={"margin_pipeline/for_each": "month"},
    description="Recompute one month's affected accounts from the day ledger and merge them.",
)
def margin_month(
    context: dg.OpExecutionContext, task: MonthTask, store: DeltaRsStore, spark: SparkEngine
) -> MonthResult:
    with retrying(context, RetryProfile(**(task.retry or {})), f"{STREAM} {task.month}"):
        return recompute_month(spark.spark_session, store, task, context.run_id, context.log)


CHECKS = check_specs(MONTHLY_MARGIN.asset_key, MONTHLY_MARGIN_CHECKS)


@dg.op(
    out={"result": dg.Out(dg.Nothing), **{c.get_python_identifier(): dg.Out(dg.Nothing) for c in CHECKS}},
    description="Check the merged months, then advance monthly_margin's watermarks (or roll the months "
    "back when a blocking check failed); report the run. On a remote engine, run the whole for-each there.",
)
def margin_commit(
    context: dg.OpExecutionContext,
    plan: MarginPlan,
    months: list[MonthResult],
    store: DeltaRsStore,
    spark: SparkEngine,
) -> Iterator[Any]:
    with retrying(context, RetryProfile(**(plan.retry or {})), STREAM):
        if plan.remote is not None:
            profile = MonthlyProfile(**plan.remote)
            metadata = refresh_remote(context, profile, MONTHLY_MARGIN.name, store.lake_root)
            metadata = {"engine": profile.engine, **metadata}
        else:
            metadata = commit_margin(spark.spark_session, store, plan, months, context.run_id, context.log)
            metadata = {"engine": spark.engine, **metadata}
    shown = presented(context, store, MONTHLY_MARGIN, metadata)
    for event in published(MONTHLY_MARGIN, STREAM, shown, every=MONTHLY_MARGIN_CHECKS):
        if isinstance(event, dg.MaterializeResult):
            yield dg.Output(None, "result", metadata=event.metadata)
        else:
            yield event


@dg.config_mapping
def _profile(config: MonthlyProfile) -> dict[str, Any]:
    """The graph takes the stream's profile like every other stream output; the plan step applies it."""
    return {"margin_months": {"config": config.model_dump()}}


@dg.graph_asset(
    key=MONTHLY_MARGIN.asset_key,
    group_name=STREAM,
    ins={
        "ledger": dg.AssetIn(DAY_LEDGER.asset_key, dagster_type=dg.Nothing),
        "agreements": dg.AssetIn(SUBSTRATE["supply_agreements"].asset_key, dagster_type=dg.Nothing),
    },
    config=_profile,
    kinds={"spark", "delta"},
    check_specs=CHECKS,
    metadata=table_metadata(MONTHLY_MARGIN),
    owners=[_stream.owner],
    tags=layer_tag(MONTHLY_MARGIN),
    description=f"{OUTPUT.description} Key: {', '.join(MONTHLY_MARGIN.key)}. {launched_by(_stream)}",
)
def monthly_margin_asset(ledger, agreements):
    plan, months = margin_months(ledger=ledger, agreements=agreements)
    result, *checks = margin_commit(plan, months.map(margin_month).collect())
    return {
        "result": result,
        **{c.get_python_identifier(): out for c, out in zip(CHECKS, checks, strict=True)},
    }
