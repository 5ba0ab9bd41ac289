"""``gold/monthly_margin`` as a for-each over months: plan, one step per affected month, commit.

``margin_months``
    Consumes the change feeds ``(watermark, pinned]`` of the day ledger and the
    agreements once, reduces them to the affected account x months, keeps that scope
    in ``control/monthly_margin_scope`` and emits one dynamic output per month.
``margin_month`` (mapped)
    Recomputes the affected accounts of its month from the ledger at the pinned
    version and merges them into ``gold/monthly_margin``. The months run one after
    another in the run's process: a month is one query on the engine (about 0.3 s at
    1,000 meters), less than a step process costs to start, and running two at once
    measured no faster (:mod:`margin_pipeline.defs.executors`).
``margin_commit`` (collect)
    Checks the merged months, records the substrate versions the run moved the margin
    between, advances the watermarks once every month is merged and reports the run's
    metadata (the same figures as every stream output, plus the months). Its
    materialization is what the watermark gate waits for: hh_margin does not wait for
    the bridge.
``margin_bridge``
    Writes the margin bridge (``gold/margin_bridge``: why each moved account-month moved,
    by cause) of every recorded pair not yet explained: this run's, and any a failed or
    killed bridge step left; its asset shows the movements as a table.

On a remote engine (``engine`` in the profile) the plan step hands over and the commit
step runs the same functions one month after another through Pipes
(:func:`refresh_margin`, :mod:`margin_pipeline.remote`); the bridge step reports what
it wrote.

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
from margin_pipeline.gold import MARGIN_BRIDGE, MONTHLY_MARGIN
from margin_pipeline.remote.launch import refresh_remote
from margin_pipeline.store import TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.bridge import CAUSES
from margin_pipeline.streams.monthly.months import (
    MarginPlan,
    MonthResult,
    MonthTask,
    bridge_margin,
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
    out={
        "margin": dg.Out(dg.Nothing),
        "committed": dg.Out(dict, description="The engine, and the bridge a remote engine wrote."),
        **{c.get_python_identifier(): dg.Out(dg.Nothing) for c in CHECKS},
    },
    description="Check the merged months, then record the substrate versions the run moved the margin "
    "between and advance monthly_margin's watermarks (or roll the months back when a blocking check "
    "failed); report the run. On a remote engine, run the whole for-each there, its bridge too.",
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
    committed = {"engine": metadata["engine"], "bridge": metadata.pop("margin_bridge", None)}
    shown = presented(context, store, MONTHLY_MARGIN, metadata)
    for event in published(MONTHLY_MARGIN, STREAM, shown, every=MONTHLY_MARGIN_CHECKS):
        if isinstance(event, dg.MaterializeResult):
            yield dg.Output(None, "margin", metadata=event.metadata)
        else:
            yield event
    yield dg.Output(committed, "committed")


@dg.op(
    out={"bridge": dg.Out(dg.Nothing)},
    description="Write the margin bridge of every recorded pair of substrate versions not yet explained "
    "(this run's, and any a failed bridge step left), then a backfill's months; report the movements.",
)
def margin_bridge(
    context: dg.OpExecutionContext,
    plan: MarginPlan,
    committed: dict[str, Any],
    store: DeltaRsStore,
    spark: SparkEngine,
) -> Iterator[Any]:
    bridge = committed["bridge"]
    if plan.remote is None:
        with retrying(context, RetryProfile(**(plan.retry or {})), f"{STREAM} bridge"):
            bridge = bridge_margin(spark.spark_session, store, plan, context.run_id)
    yield dg.Output(None, "bridge", metadata=bridge_metadata(store, bridge, committed["engine"]))


def bridge_metadata(store: DeltaRsStore, bridge: dict[str, Any] | None, engine: str) -> dict[str, Any]:
    """The bridge of the run as its asset page shows it: the versions, the rows written, and a
    markdown table of the movements (largest first), so the page answers "why did margin move"."""
    out: dict[str, Any] = {}
    if bridge is None:
        out["mode"] = "skipped (no changes)"
        out["movements"] = dg.MetadataValue.md("Nothing consumed: no movement to explain.")
    else:
        out["mode"] = bridge["mode"]
        for name in ("account_months_moved", "bridge_rows", "substrate_rows_read", "wall_seconds"):
            out[name] = bridge[name]
        for name in ("pairs_rebuilt", "pair_months_unchanged"):  # a backfill's
            if name in bridge:
                out[name] = bridge[name]
        for name in ("from_version", "to_version"):
            out[name] = dg.MetadataValue.text("none" if bridge[name] is None else str(bridge[name]))
        out["movements"] = dg.MetadataValue.md(movements_markdown(bridge["movements"]))
    if store.version(MARGIN_BRIDGE) is not None:
        out["dagster/row_count"] = store.row_count(MARGIN_BRIDGE)
    out["delta_table"] = dg.MetadataValue.path(store.uri(MARGIN_BRIDGE))
    out["engine"] = engine
    return out


#: Account-months shown on the asset page; the table holds them all.
SHOWN_MOVEMENTS = 25


def movements_markdown(movements: list[dict[str, Any]]) -> str:
    """One line per account-month, largest movement first: the movement and each cause (GBP)."""
    if not movements:
        return "No account-month's margin moved in this run."
    causes = [c for c, _ in CAUSES]
    lines = [
        "| account | month | movement | " + " | ".join(causes) + " |",
        "|---|---|---:|" + "---:|" * len(causes),
    ]
    for m in movements[:SHOWN_MOVEMENTS]:
        figures = " | ".join(f"{m[c]:+.6f}" if c in m else "" for c in causes)
        lines.append(f"| {m['account_id']} | {m['month'][:7]} | {m['movement_gbp']:+.6f} | {figures} |")
    if len(movements) > SHOWN_MOVEMENTS:
        lines.append(
            f"\n... and {len(movements) - SHOWN_MOVEMENTS} more account-months (gold/margin_bridge)."
        )
    return "\n".join(lines)


@dg.config_mapping
def _profile(config: MonthlyProfile) -> dict[str, Any]:
    """The graph takes the stream's profile like every other stream output; the plan step applies it."""
    return {"margin_months": {"config": config.model_dump()}}


_BRIDGE_DESCRIPTION = (
    "Why monthly_margin moved: for each account-month whose margin_gbp moved between the substrate "
    "versions the monthly stream consumed (from_version -> to_version), one row per cause (volumes, "
    "prices, charges, rates, registrations, substituted in that order) with its share of the movement; "
    "the rows of an account-month sum to its movement (docs/contract.md, 'Margin bridge'). Written by "
    "the same run as monthly_margin, for the account-months that run moved, in the step after "
    "monthly_margin's commit (hh_margin does not wait for it)."
)


def _asset_out(table: TableSpec, description: str) -> dg.AssetOut:
    """One of the graph's two tables, shown as every stream output is (owner, layer, schema)."""
    return dg.AssetOut(
        key=table.asset_key,
        kinds={"spark", "delta"},
        metadata=table_metadata(table),
        owners=[_stream.owner],
        tags=layer_tag(table),
        description=f"{description} Key: {', '.join(table.key)}. {launched_by(_stream)}",
    )


@dg.graph_multi_asset(
    outs={
        "margin": _asset_out(MONTHLY_MARGIN, OUTPUT.description),
        "bridge": _asset_out(MARGIN_BRIDGE, _BRIDGE_DESCRIPTION),
    },
    name="gold__monthly_margin",  # the step keys operators know (gold__monthly_margin.margin_month[...])
    group_name=STREAM,
    ins={
        "ledger": dg.AssetIn(DAY_LEDGER.asset_key, dagster_type=dg.Nothing),
        "agreements": dg.AssetIn(SUBSTRATE["supply_agreements"].asset_key, dagster_type=dg.Nothing),
    },
    config=_profile,
    check_specs=CHECKS,
)
def monthly_margin_asset(ledger, agreements):
    plan, months = margin_months(ledger=ledger, agreements=agreements)
    margin, committed, *checks = margin_commit(plan, months.map(margin_month).collect())
    return {
        "margin": margin,
        "bridge": margin_bridge(plan, committed),
        **{c.get_python_identifier(): out for c, out in zip(CHECKS, checks, strict=True)},
    }
