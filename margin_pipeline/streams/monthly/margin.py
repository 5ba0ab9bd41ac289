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

A backfill (``backfill_from``/``backfill_to`` in the profile) takes the same path
over whole months and leaves the watermarks alone. A full rebuild is the backfill
of every month the ledger or the output holds. A failed month leaves the watermarks
where they were, so the next run redoes the same range; re-executing the run from
failure re-runs only the failed months and the commit (the plan's scope is kept).
"""

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.store import TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore, arrow_to_spark
from margin_pipeline.streams.monthly.assets import STREAM
from margin_pipeline.streams.monthly.profile import MonthlyProfile, next_month
from margin_pipeline.streams.monthly.rules import monthly_margin
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.calendar import month_start
from margin_pipeline.streams.shared.changes import union_all
from margin_pipeline.streams.shared.fanout import agreement_changes
from margin_pipeline.streams.shared.runner import BEFORE_FIRST_VERSION, Source, StreamRun, as_metadata
from margin_pipeline.streams.shared.watermarks import advance_watermarks, read_watermarks
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline.substrate.versions import resolve_pin

MARGIN_WATERMARK = "monthly.margin"
MARGIN_SOURCES = [
    Source("monthly_day_ledger", DAY_LEDGER, pinned_by_substrate=False),
    Source("supply_agreements", SUBSTRATE["supply_agreements"]),
]

#: The account x months a plan asked to recompute (account_id null: every account of the month).
MONTH_SCOPE = TableSpec(
    name="control/monthly_margin_scope",
    schema=pa.schema(
        [
            pa.field("plan_run_id", pa.string(), nullable=False),
            pa.field("month", pa.date32(), nullable=False),
            pa.field("account_id", pa.string()),
        ]
    ),
    key=("plan_run_id", "month", "account_id"),
)


@dataclass(frozen=True)
class MarginPlan:
    """What ``margin_months`` decided; the commit step acts on it."""

    run_id: str
    substrate_version: int
    watermarks: dict[str, int]  # as read when planning: the commit refuses if they moved since
    targets: dict[str, int]
    months: tuple[str, ...]
    advance: bool  # False for a backfill or when there was nothing to consume
    metadata: dict[str, Any]
    started_at: float


@dataclass(frozen=True)
class MonthTask:
    plan_run_id: str
    month: str  # ISO date of the month's first day
    substrate_version: int
    targets: dict[str, int]
    spark_conf: dict[str, str]


@dataclass(frozen=True)
class MonthResult:
    month: str
    rows_read: dict[str, int]
    keys: int
    inserted: int
    updated: int
    deleted: int
    version: int


@dg.op(
    ins={"ledger": dg.In(dg.Nothing), "agreements": dg.In(dg.Nothing)},
    out={"plan": dg.Out(MarginPlan), "months": dg.DynamicOut(MonthTask)},
    description="Reduce the ledger's and the agreements' change feeds to affected account x months; "
    "one output per month.",
)
def margin_months(
    context: dg.OpExecutionContext, config: MonthlyProfile, store: DeltaRsStore, pyspark: PySparkResource
) -> Iterator[Any]:
    started_at = time.time()
    spark = pyspark.spark_session
    config.apply(spark)
    backfill = config.backfill_months()
    pin = resolve_pin(store, config.substrate_version)
    run = StreamRun(
        MARGIN_WATERMARK,
        spark,
        store,
        MARGIN_SOURCES,
        pin,
        context.run_id,
        force_full=config.full_rebuild,
        log=context.log,
        consume=backfill is None,
    )
    if backfill is not None:
        mode, months = f"backfill {config.backfill_from}..{config.backfill_to}", backfill
        scope = _whole_months(context.run_id, months)
    elif run.up_to_date:
        mode, months, scope = "skipped (no changes)", [], None
    elif run.full:
        context.log.warning(f"{STREAM}: full rebuild of monthly_margin ({run.reason})")
        mode, months = "full", _all_months(store, run.targets["monthly_day_ledger"])
        scope = _whole_months(context.run_id, months)
    else:
        keys = _affected_months(run)
        mode, scope = "incremental", _scope_rows(context.run_id, keys)
        months = sorted(set(scope.column("month").to_pylist()))
    if scope is not None:
        store.replace(MONTH_SCOPE, scope)
    metadata = run.metadata(None, 0)
    metadata["mode"] = mode
    if not plan_advances(backfill, mode):
        metadata["watermarks"] = {n: f"{v} (unchanged)" for n, v in run.watermarks.items()}
    plan = MarginPlan(
        run_id=context.run_id,
        substrate_version=pin.number,
        watermarks=dict(run.watermarks),
        targets=dict(run.targets),
        months=tuple(m.isoformat() for m in months),
        advance=plan_advances(backfill, mode),
        metadata=metadata,
        started_at=started_at,
    )
    context.log.info(f"{STREAM}: {mode}; {len(months)} month(s) to recompute: {', '.join(plan.months)}")
    yield dg.Output(plan, "plan", metadata={"mode": mode, "months": dg.MetadataValue.json(list(plan.months))})
    for month in plan.months:
        task = MonthTask(context.run_id, month, pin.number, plan.targets, config.spark_conf())
        yield dg.DynamicOutput(task, mapping_key=month.replace("-", "_")[:7], output_name="months")


def plan_advances(backfill: list[dt.date] | None, mode: str) -> bool:
    return backfill is None and mode != "skipped (no changes)"


def _affected_months(run: StreamRun) -> DataFrame:
    """Account x months whose margin the change feeds may have changed."""
    parts = []
    if (changes := run.changes("monthly_day_ledger")) is not None:
        parts.append(changes.select("account_id", month_start(F.col("settlement_date")).alias("month")))
    version = run.targets["monthly_day_ledger"]
    bounds = (
        None
        if version == BEFORE_FIRST_VERSION
        else run.store.column_bounds(DAY_LEDGER, "settlement_date", version)
    )
    if (changes := run.changes("supply_agreements")) is not None and bounds is not None:
        last_day = bounds[1]
        spans = agreement_changes(changes).where(F.col("first") <= F.lit(last_day))
        end = F.least(F.coalesce(F.col("last"), F.lit(last_day)), F.lit(last_day))
        months = F.sequence(month_start(F.col("first")), month_start(end), F.expr("INTERVAL 1 MONTH"))
        parts.append(spans.select("account_id", F.explode(months).alias("month")))
    if not parts:
        return run.empty(MONTHLY_MARGIN).select("account_id", "month")
    return union_all(parts).where(F.col("account_id").isNotNull()).distinct()


def _all_months(store: DeltaRsStore, ledger_version: int) -> list[dt.date]:
    """Every month the ledger (at the pinned version) or the published output holds (from statistics)."""
    bounds = []
    if ledger_version != BEFORE_FIRST_VERSION:
        bounds.append(store.column_bounds(DAY_LEDGER, "settlement_date", ledger_version))
    if store.version(MONTHLY_MARGIN) is not None:
        bounds.append(store.column_bounds(MONTHLY_MARGIN, "month"))
    bounds = [b for b in bounds if b is not None]
    if not bounds:
        return []
    month = min(b[0] for b in bounds).replace(day=1)
    last = max(b[1] for b in bounds)
    months = [month]
    while next_month(months[-1]) <= last:
        months.append(next_month(months[-1]))
    return months


def _whole_months(run_id: str, months: list[dt.date]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"plan_run_id": run_id, "month": m, "account_id": None} for m in months], MONTH_SCOPE.schema
    )


def _scope_rows(run_id: str, keys: DataFrame) -> pa.Table:
    rows = keys.select(F.lit(run_id).alias("plan_run_id"), "month", "account_id").toArrow()
    return rows.cast(MONTH_SCOPE.schema)


@dg.op(
    tags={"margin_pipeline/for_each": "month"},
    description="Recompute one month's affected accounts from the day ledger and merge them.",
)
def margin_month(
    context: dg.OpExecutionContext, task: MonthTask, store: DeltaRsStore, pyspark: PySparkResource
) -> MonthResult:
    spark = pyspark.spark_session
    for key, value in task.spark_conf.items():
        spark.conf.set(key, value)
    run = StreamRun(
        MARGIN_WATERMARK,
        spark,
        store,
        MARGIN_SOURCES,
        resolve_pin(store, task.substrate_version),
        context.run_id,
        log=context.log,
        targets=task.targets,
        consume=False,
    )
    month = dt.date.fromisoformat(task.month)
    days = f"settlement_date >= '{month}' AND settlement_date < '{next_month(month)}'"
    scope = store.read_arrow(MONTH_SCOPE).filter(
        (pc.field("plan_run_id") == task.plan_run_id) & (pc.field("month") == pa.scalar(month, pa.date32()))
    )
    if not scope.num_rows:
        raise dg.Failure(
            f"the scope of plan run {task.plan_run_id} for {task.month} is gone from {MONTH_SCOPE.name}: a "
            "later monthly run has planned since (and consumes the same changes). Launch monthly_stream anew."
        )
    ledger = run.snapshot("monthly_day_ledger", where=days)
    agreements = run.snapshot("supply_agreements")
    if None in scope.column("account_id").to_pylist():
        keys = spark.createDataFrame([(month,)], "month date")
        desired = monthly_margin(ledger, agreements)
    else:
        keys = arrow_to_spark(spark, scope.select(["account_id", "month"]))
        rows = ledger.withColumn("month", month_start(F.col("settlement_date")))
        affected = rows.join(keys, ["account_id", "month"], "left_semi").drop("month")
        desired = monthly_margin(affected, agreements)
    outcome = run.publish(MONTHLY_MARGIN, desired.cache(), keys, keys.columns)
    result = MonthResult(
        task.month,
        dict(run.rows_read),
        scope.num_rows,
        outcome.inserted,
        outcome.updated,
        outcome.deleted,
        outcome.version,
    )
    context.log.info(
        f"{STREAM}: {task.month}: {result.keys} scope row(s); wrote +{result.inserted} ~{result.updated} "
        f"-{result.deleted}"
    )
    return result


@dg.op(description="Advance monthly_margin's watermarks once every month is merged; report the run.")
def margin_commit(
    context: dg.OpExecutionContext, plan: MarginPlan, months: list[MonthResult], store: DeltaRsStore
) -> dg.Output[None]:
    if plan.advance:
        now = read_watermarks(store, MARGIN_WATERMARK).versions
        if now != plan.watermarks:
            raise dg.Failure(
                f"{MARGIN_WATERMARK} watermarks moved from {plan.watermarks} to {now} since plan run "
                f"{plan.run_id}: another run consumed this range. Nothing to commit."
            )
        advance_watermarks(store, MARGIN_WATERMARK, plan.targets, plan.substrate_version, context.run_id)
    metadata = combine(plan, months)
    context.log.info(
        f"{STREAM}: {metadata['mode']}; {len(months)} month(s); read {metadata['rows_read']:,} rows "
        f"({metadata['rows_read_pct_of_full']}% of a full rescan); wrote +{metadata['rows_inserted']} "
        f"~{metadata['rows_updated']} -{metadata['rows_deleted']}"
    )
    return dg.Output(None, metadata=as_metadata(metadata))


def combine(plan: MarginPlan, months: list[MonthResult]) -> dict[str, Any]:
    """The plan's figures plus what every month read and wrote: the stream's usual metadata."""
    meta = dict(plan.metadata)
    snapshot_rows = meta["snapshot_rows_read"] + sum(sum(m.rows_read.values()) for m in months)
    read = snapshot_rows + meta["change_feed_rows_read"]
    full = meta["full_rescan_rows"]
    meta.update(
        snapshot_rows_read=snapshot_rows,
        rows_read=read,
        rows_read_pct_of_full=round(100.0 * read / full, 3) if full else 0.0,
        keys_recomputed=sum(m.keys for m in months),
        months=sorted(m.month for m in months),
        rows_inserted=sum(m.inserted for m in months),
        rows_updated=sum(m.updated for m in months),
        rows_deleted=sum(m.deleted for m in months),
        output_version=max((m.version for m in months), default=None),
        wall_seconds=round(time.time() - plan.started_at, 3),
    )
    return meta


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
    metadata={"dagster/table_name": MONTHLY_MARGIN.name, "key": ", ".join(MONTHLY_MARGIN.key)},
    description="Monthly margin of every account: kWh, revenue, cost and margin over the month's "
    "contributing MPAN-days, with the billing grain and whether the month is final "
    "(contracts.md 'monthly_margin'). Recomputed as a for-each over the affected months. "
    f"Key: {', '.join(MONTHLY_MARGIN.key)}.",
)
def monthly_margin_asset(ledger, agreements):
    plan, months = margin_months(ledger=ledger, agreements=agreements)
    return margin_commit(plan, months.map(margin_month).collect())
