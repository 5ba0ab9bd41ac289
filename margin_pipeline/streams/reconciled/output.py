"""The reconciled layer's plan: ``gold/hh_margin`` from the two half-hourly published tables.

The orchestration layer decides *when* it runs (only once every stream has
consumed the same substrate version); this module only says *what* it computes.
"""

from pyspark.sql import DataFrame

from margin_pipeline.gold import HH_MARGIN, HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.streams.reconciled.rules import KEY, hh_margin
from margin_pipeline.streams.shared.changes import changed_keys, union_all
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
    """hh_margin for the keys either source changed: their rows at the pinned versions come from
    the change feeds where the feeds touched them, from the snapshots for the rest."""
    if run.full:
        return hh_margin(run.snapshot("hh_revenue"), run.snapshot("settlement_cost_hh")), None
    parts = [
        changed_keys(c, KEY)
        for n in ("hh_revenue", "settlement_cost_hh")
        if (c := run.changes(n)) is not None
    ]
    # Every change skipped (run re-stamps of the cost only): nothing to recompute.
    keys = union_all(parts).distinct().cache() if parts else run.empty(HH_MARGIN).select(*KEY)
    revenue = run.rows_at_pin("hh_revenue", keys, KEY)
    cost = run.rows_at_pin("settlement_cost_hh", keys, KEY)
    return hh_margin(revenue, cost), keys


HH_MARGIN_OUTPUT = StreamOutput(STREAM, HH_MARGIN, SOURCES, plan_reconciled, checks=HH_MARGIN_CHECKS)
