"""monthly_margin's for-each, free of Dagster: plan the months, recompute each, commit.

:func:`plan_margin` consumes the change feeds ``(watermark, pinned]`` of the day ledger and the
agreements once, reduces them to the affected account x months and keeps that scope in
``control/monthly_margin_scope``; :func:`recompute_month` recomputes one month's scope from the
ledger at the pinned version and merges it into ``gold/monthly_margin``; :func:`commit_margin`
records the run's pair of substrate versions and advances the watermarks once every month merged;
:func:`bridge_margin` then writes the margin bridge of what was recorded. The graph asset
(:mod:`margin_pipeline.defs.streams.monthly_margin`) runs them as steps; a remote engine runs
:func:`refresh_margin`, the four in sequence.
"""

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.store import TableSpec
from margin_pipeline.store.base import DeltaStore
from margin_pipeline.streams.monthly.bridge import (
    BRIDGE_WRITER,
    MARGIN_HISTORY,
    explain_recorded,
    rebuild_months,
    record_pair,
)
from margin_pipeline.streams.monthly.output import STREAM
from margin_pipeline.streams.monthly.profile import MonthlyProfile, months_between, next_month
from margin_pipeline.streams.monthly.rules import monthly_margin
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.calendar import month_start
from margin_pipeline.streams.shared.changes import union_all
from margin_pipeline.streams.shared.fanout import agreement_changes
from margin_pipeline.streams.shared.quality import MONTHLY_MARGIN_CHECKS, CheckOutcome, CheckScope, run_checks
from margin_pipeline.streams.shared.rollback import Rollback, recover, rollback
from margin_pipeline.streams.shared.runner import BEFORE_FIRST_VERSION, Source, StreamRun, with_outcome
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
    remote: dict[str, Any] | None = None  # the profile, when the whole for-each runs on a remote engine
    retry: dict[str, Any] | None = None  # the profile's retry policy, for the month and commit steps
    output_before: int = 0  # monthly_margin's version before any month merged: the commit's rollback point
    recovered: Rollback | None = None  # what planning rolled back (a killed run's writes)
    from_version: int | None = None  # the substrate version N0 the margin had consumed (None: none yet)
    backfill: bool = False  # the months are a backfill's: the bridge rebuilds their rows from history


@dataclass(frozen=True)
class MonthTask:
    plan_run_id: str
    month: str  # ISO date of the month's first day
    substrate_version: int
    targets: dict[str, int]
    spark_conf: dict[str, str]
    retry: dict[str, Any] | None = None  # the profile's retry policy


@dataclass(frozen=True)
class MonthResult:
    month: str
    rows_read: dict[str, int]
    keys: int
    inserted: int
    updated: int
    deleted: int
    version: int


def plan_margin(
    spark: SparkSession, store: DeltaStore, profile: MonthlyProfile, run_id: str, log: Any
) -> tuple[MarginPlan, list[MonthTask]]:
    """Reduce the change feeds (or the backfill's months) to the months to recompute, and keep their scope."""
    started_at = time.time()
    profile.apply(spark)
    backfill = profile.backfill_months()
    pin = resolve_pin(store, profile.substrate_version)
    recovered = recover(store, MARGIN_WATERMARK, MONTHLY_MARGIN, log)
    recover(store, MARGIN_WATERMARK, MARGIN_HISTORY, log)  # written by the same commit: undone with it
    output_before = store.ensure_table(MONTHLY_MARGIN)
    consumed = read_watermarks(store, MARGIN_WATERMARK).substrate_version
    run = StreamRun(
        MARGIN_WATERMARK,
        spark,
        store,
        MARGIN_SOURCES,
        pin,
        run_id,
        force_full=profile.full_rebuild,
        log=log,
        consume=backfill is None,
    )
    if backfill is not None:
        mode, months = f"backfill {profile.backfill_from}..{profile.backfill_to}", backfill
        scope = _whole_months(run_id, months)
    elif run.up_to_date:
        mode, months, scope = "skipped (no changes)", [], None
    elif run.full:
        log.warning(f"{STREAM}: full rebuild of monthly_margin ({run.reason})")
        mode, months = "full", _all_months(store, run.targets["monthly_day_ledger"])
        scope = _whole_months(run_id, months)
    else:
        keys = _affected_months(run)
        mode, scope = "incremental", _scope_rows(run_id, keys)
        months = sorted(set(scope.column("month").to_pylist()))
    if scope is not None:
        store.replace(MONTH_SCOPE, scope)
    advance = backfill is None and not run.up_to_date  # a backfill or an empty feed moves no watermark
    metadata = run.metadata(None, 0)
    metadata["mode"] = mode
    if not advance:
        metadata["watermarks"] = {n: f"{v} (unchanged)" for n, v in run.watermarks.items()}
    plan = MarginPlan(
        run_id=run_id,
        substrate_version=pin.number,
        watermarks=dict(run.watermarks),
        targets=dict(run.targets),
        months=tuple(m.isoformat() for m in months),
        advance=advance,
        metadata=metadata,
        started_at=started_at,
        retry=profile.retry.model_dump(),
        output_before=output_before,
        recovered=recovered,
        from_version=consumed,
        backfill=backfill is not None,
    )
    log.info(f"{STREAM}: {mode}; {len(months)} month(s) to recompute: {', '.join(plan.months)}")
    retry = profile.retry.model_dump()
    tasks = [MonthTask(run_id, m, pin.number, plan.targets, profile.spark_conf(), retry) for m in plan.months]
    return plan, tasks


def refresh_margin(
    spark: SparkSession, store: DeltaStore, profile: MonthlyProfile, run_id: str, log: Any
) -> dict[str, Any]:
    """The whole for-each in one process, month after month (what a remote engine runs)."""
    plan, tasks = plan_margin(spark, store, profile, run_id, log)
    results = [recompute_month(spark, store, task, run_id, log) for task in tasks]
    metadata = commit_margin(spark, store, plan, results, run_id, log)
    return {**metadata, "margin_bridge": bridge_margin(spark, store, plan, run_id)}


def _affected_months(run: StreamRun) -> DataFrame:
    """Account x months whose margin the change feeds may have changed."""
    parts = []
    if (changes := run.changes("monthly_day_ledger")) is not None:
        parts.append(changes.select("account_id", month_start(F.col("settlement_date")).alias("month")))
    bounds = _ledger_bounds(run.store, run.targets["monthly_day_ledger"])
    if (changes := run.changes("supply_agreements")) is not None and bounds is not None:
        last_day = bounds[1]
        spans = agreement_changes(changes).where(F.col("first") <= F.lit(last_day))
        end = F.least(F.coalesce(F.col("last"), F.lit(last_day)), F.lit(last_day))
        months = F.sequence(month_start(F.col("first")), month_start(end), F.expr("INTERVAL 1 MONTH"))
        parts.append(spans.select("account_id", F.explode(months).alias("month")))
    if not parts:
        return run.empty(MONTHLY_MARGIN).select("account_id", "month")
    return union_all(parts).where(F.col("account_id").isNotNull()).distinct()


def _all_months(store: DeltaStore, ledger_version: int) -> list[dt.date]:
    """Every month the ledger (at the pinned version) or the published output holds (from statistics)."""
    bounds = [_ledger_bounds(store, ledger_version)]
    if store.version(MONTHLY_MARGIN) is not None:
        bounds.append(store.column_bounds(MONTHLY_MARGIN, "month"))
    known = [b for b in bounds if b is not None]
    if not known:
        return []
    return months_between(min(b[0] for b in known), max(b[1] for b in known))


def _ledger_bounds(store: DeltaStore, version: int) -> tuple[dt.date, dt.date] | None:
    """First and last settlement date of the ledger at ``version`` (statistics only); None if none."""
    if version == BEFORE_FIRST_VERSION:
        return None
    return store.column_bounds(DAY_LEDGER, "settlement_date", version)


def _whole_months(run_id: str, months: list[dt.date]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"plan_run_id": run_id, "month": m, "account_id": None} for m in months], MONTH_SCOPE.schema
    )


def _scope_rows(run_id: str, keys: DataFrame) -> pa.Table:
    rows = keys.select(F.lit(run_id).alias("plan_run_id"), "month", "account_id").toArrow()
    return rows.cast(MONTH_SCOPE.schema)


def recompute_month(
    spark: SparkSession, store: DeltaStore, task: MonthTask, run_id: str, log: Any
) -> MonthResult:
    """Recompute the scope of one month from the ledger at the plan's versions and merge it."""
    for key, value in task.spark_conf.items():
        spark.conf.set(key, value)
    run = StreamRun(
        MARGIN_WATERMARK,
        spark,
        store,
        MARGIN_SOURCES,
        resolve_pin(store, task.substrate_version),
        run_id,
        log=log,
        targets=task.targets,
        consume=False,
    )
    month = dt.date.fromisoformat(task.month)
    days = f"settlement_date >= '{month}' AND settlement_date < '{next_month(month)}'"
    scope = store.read_arrow(MONTH_SCOPE).filter(
        (pc.field("plan_run_id") == task.plan_run_id) & (pc.field("month") == pa.scalar(month, pa.date32()))
    )
    if not scope.num_rows:
        raise RuntimeError(
            f"the scope of plan run {task.plan_run_id} for {task.month} is gone from {MONTH_SCOPE.name}: a "
            "later monthly run has planned since (and consumes the same changes). Launch monthly_stream anew."
        )
    ledger = run.snapshot("monthly_day_ledger", where=days)
    agreements = run.snapshot("supply_agreements")
    if None in scope.column("account_id").to_pylist():
        keys = spark.createDataFrame([(month,)], "month date")
        desired = monthly_margin(ledger, agreements)
    else:
        keys = store.frame(spark, scope.select(["account_id", "month"]))
        rows = ledger.withColumn("month", month_start(F.col("settlement_date")))
        affected = rows.join(keys, ["account_id", "month"], "left_semi").drop("month")
        desired = monthly_margin(affected, agreements)
    outcome = run.publish(MONTHLY_MARGIN, desired, keys, keys.columns)
    result = MonthResult(
        task.month,
        dict(run.rows_read),
        scope.num_rows,
        outcome.inserted,
        outcome.updated,
        outcome.deleted,
        outcome.version,
    )
    log.info(
        f"{STREAM}: {task.month}: {result.keys} scope row(s); wrote +{result.inserted} ~{result.updated} "
        f"-{result.deleted}"
    )
    return result


def commit_margin(
    spark: SparkSession,
    store: DeltaStore,
    plan: MarginPlan,
    months: list[MonthResult],
    run_id: str,
    log: Any,
) -> dict[str, Any]:
    """Check the merged months; advance the watermarks and record the output's version, or, when a
    blocking check failed, restore the output to its version before the plan. The run's metadata."""
    outcomes: list[CheckOutcome] = []
    if plan.months:
        outcomes = run_checks(MONTHLY_MARGIN_CHECKS, _check_scope(spark, store, plan))
    blocked = [c.name for c in outcomes if c.blocking and not c.passed]
    undone = None
    if blocked:
        undone = rollback(
            store, MONTHLY_MARGIN, plan.output_before, f"blocking check(s) failed: {', '.join(blocked)}", log
        )
    elif plan.months or plan.advance:
        current = read_watermarks(store, MARGIN_WATERMARK)
        if plan.advance and current.versions != plan.watermarks:
            raise RuntimeError(
                f"{MARGIN_WATERMARK} watermarks moved from {plan.watermarks} to {current.versions} "
                f"since plan run {plan.run_id}: another run consumed this range. Nothing to commit."
            )
        versions, number = (
            (plan.targets, plan.substrate_version)
            if plan.advance
            else (current.versions, current.substrate_version)  # a backfill records only the output
        )
        if plan.advance:
            _record_pair(store, plan, run_id)
        outputs = {spec.name: store.ensure_table(spec) for spec in (MONTHLY_MARGIN, MARGIN_HISTORY)}
        advance_watermarks(store, MARGIN_WATERMARK, versions, number, run_id, outputs)
    metadata = with_outcome(combine(plan, months), outcomes, plan.recovered, undone)
    log.info(
        f"{STREAM}: {metadata['mode']}; {len(months)} month(s); read {metadata['rows_read']:,} rows "
        f"({metadata['rows_read_pct_of_full']}% of a full rescan); wrote +{metadata['rows_inserted']} "
        f"~{metadata['rows_updated']} -{metadata['rows_deleted']}"
        + (f"; BLOCKED by {', '.join(blocked)}" if blocked else "")
    )
    return metadata


def _record_pair(store: DeltaStore, plan: MarginPlan, run_id: str) -> None:
    """Record the pair of substrate versions the run moved the margin between, and its bridge's scope."""
    info = {
        "margin_pipeline.stream": MARGIN_WATERMARK,
        "run_id": run_id,
        "substrate_version": str(plan.substrate_version),
    }
    ledger = "monthly_day_ledger"  # the MPAN-days whose inputs changed: those the run consumed changes of
    consumed = (plan.watermarks[ledger], plan.targets[ledger]) if ledger in plan.watermarks else None
    record_pair(store, plan.from_version, plan.substrate_version, plan.output_before, consumed, run_id, info)


def bridge_margin(
    spark: SparkSession, store: DeltaStore, plan: MarginPlan, run_id: str
) -> dict[str, Any] | None:
    """The run's margin bridge (:mod:`.bridge`), after its commit: every recorded pair not yet
    explained, then a backfill's months rebuilt from the recorded history. None: nothing to write."""
    number = read_watermarks(store, MARGIN_WATERMARK).substrate_version
    info = {"margin_pipeline.stream": BRIDGE_WRITER, "run_id": run_id, "substrate_version": str(number)}
    explained = explain_recorded(spark, store, run_id, info)
    if plan.backfill:
        months = [dt.date.fromisoformat(m) for m in plan.months]
        return rebuild_months(spark, store, months, number, run_id, info)
    return explained


def _check_scope(spark: SparkSession, store: DeltaStore, plan: MarginPlan) -> CheckScope:
    """The plan's months of monthly_margin, and the ledger days of those months."""
    months = [dt.date.fromisoformat(m) for m in plan.months]
    where = "month IN (" + ", ".join(f"'{m}'" for m in months) + ")"
    days = f"settlement_date >= '{min(months)}' AND settlement_date < '{next_month(max(months))}'"
    specs = {s.name: s.spec for s in MARGIN_SOURCES}
    return CheckScope(spark, store, MONTHLY_MARGIN, where, dict(plan.targets), specs, source_where=days)


def combine(plan: MarginPlan, months: list[MonthResult]) -> dict[str, Any]:
    """The plan's figures plus what every month read and wrote: the stream's usual metadata."""
    meta = dict(plan.metadata)
    by_source = dict(meta.get("snapshot_rows_by_source") or {})
    for month in months:
        for name, rows in month.rows_read.items():
            by_source[name] = by_source.get(name, 0) + rows
    snapshot_rows = sum(by_source.values())
    read = snapshot_rows + meta["change_feed_rows_read"]
    full = meta["full_rescan_rows"]
    meta.update(
        snapshot_rows_read=snapshot_rows,
        snapshot_rows_by_source=by_source,
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
