"""The reconciled layer's plan: ``gold/hh_margin`` from the two half-hourly published tables.

The orchestration layer decides *when* it runs (only once every stream has
consumed the same substrate version); this module only says *what* it computes.
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from margin_pipeline.gold import HH_MARGIN, HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.store import MergeOutcome, TableSpec
from margin_pipeline.store.base import CHANGE_TYPE
from margin_pipeline.streams.reconciled.rules import KEY, RECOSTED, hh_margin
from margin_pipeline.streams.shared.changes import changed_keys, latest_state, union_all
from margin_pipeline.streams.shared.profile import StreamProfile
from margin_pipeline.streams.shared.quality import HH_MARGIN_CHECKS
from margin_pipeline.streams.shared.runner import Source, StreamOutput, StreamRun

STREAM = "reconciled"
SOURCES = [
    Source("hh_revenue", HH_REVENUE, pinned_by_substrate=False),
    # hh_margin has no run_type, so the cost re-stamps are not read.
    Source("settlement_cost_hh", SETTLEMENT_COST_HH, pinned_by_substrate=False, skip_run_restamps=True),
]


class ReconciledProfile(StreamProfile):
    """A key-aligned join of two half-hourly tables: the default profile fits."""


def plan_reconciled(run: StreamRun) -> tuple[DataFrame, DataFrame | None]:
    """hh_margin for the keys either source changed, less those :func:`recost` updates in place: their
    rows at the pinned versions come from the change feeds where the feeds touched them, from the
    snapshots for the rest."""
    if run.full:
        return hh_margin(run.snapshot("hh_revenue"), run.snapshot("settlement_cost_hh")), None
    parts = []
    if (revenue_changes := run.changes("hh_revenue")) is not None:
        parts.append(changed_keys(revenue_changes, KEY))
    if (cost_changes := run.changes("settlement_cost_hh")) is not None:
        parts.append(changed_keys(cost_changes, KEY).join(_recosted(run, cost_changes), KEY, "left_anti"))
    # Every change skipped (run re-stamps of the cost only): nothing to recompute.
    keys = union_all(parts).distinct().cache() if parts else run.empty(HH_MARGIN).select(*KEY)
    revenue = run.rows_at_pin("hh_revenue", keys, KEY)
    cost = run.rows_at_pin("settlement_cost_hh", keys, KEY)
    return hh_margin(revenue, cost), keys


def recost(run: StreamRun, output: TableSpec) -> MergeOutcome | None:
    """Update in place the cost and margin of the keys whose cost only changed value (see
    :func:`_recosted`): the row holds its revenue, so no revenue is read (a restated date's price
    changes touch every meter of the date)."""
    if run.full or (cost_changes := run.changes("settlement_cost_hh")) is None:
        return None
    alive, _deleted = latest_state(cost_changes, KEY)
    costs = alive.join(_recosted(run, cost_changes), KEY, "left_semi").select(*KEY, "total_cost_gbp")
    return run.store.update_matching(output, costs.toArrow(), tuple(KEY), RECOSTED, run.commit_info())


def _recosted(run: StreamRun, cost_changes: DataFrame) -> DataFrame:
    """Keys whose every cost change in the range is an update (held before and after, so their
    hh_margin row is there exactly when their revenue is) and whose revenue did not change."""
    changes = cost_changes.groupBy(*KEY).agg(
        F.max(F.col(CHANGE_TYPE).isin("insert", "delete").cast("int")).alias("_moved")
    )
    updated = changes.where(F.col("_moved") == 0).select(*KEY)
    if (revenue_changes := run.changes("hh_revenue")) is not None:
        updated = updated.join(changed_keys(revenue_changes, KEY), KEY, "left_anti")
    return updated


HH_MARGIN_OUTPUT = StreamOutput(
    STREAM, HH_MARGIN, SOURCES, plan_reconciled, checks=HH_MARGIN_CHECKS, in_place=(recost,)
)
