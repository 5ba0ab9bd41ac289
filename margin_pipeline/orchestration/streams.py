"""The streams as the orchestration layer sees them: a job, its outputs, its watermarks and its sources.

Each stream module owns its sources and tuning profile; this registry only
collects them so the parent job, the sensors and the CLI speak of the same
streams. A *consumer* is one watermark id with the sources it consumes (the
monthly stream has two: its day ledger and its margin).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from margin_pipeline.reconciled import assets as reconciled
from margin_pipeline.reconciled import plan as reconciled_plan
from margin_pipeline.streams.half_hourly import assets as half_hourly
from margin_pipeline.streams.half_hourly import plan as half_hourly_plan
from margin_pipeline.streams.half_hourly.profile import HalfHourlyProfile
from margin_pipeline.streams.monthly import assets as monthly
from margin_pipeline.streams.monthly import margin as monthly_margin
from margin_pipeline.streams.monthly import months as monthly_months
from margin_pipeline.streams.monthly import plan as monthly_plan
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.settlement import assets as settlement
from margin_pipeline.streams.settlement import plan as settlement_plan
from margin_pipeline.streams.settlement.profile import SettlementProfile
from margin_pipeline.streams.shared.profile import StreamProfile
from margin_pipeline.streams.shared.runner import Source


@dataclass(frozen=True)
class Consumer:
    watermark: str
    sources: Sequence[Source]


@dataclass(frozen=True)
class Stream:
    name: str
    job: Any  # the stream's asset job (an unresolved asset job until Definitions binds it)
    assets: Sequence[dg.AssetsDefinition]
    consumers: Sequence[Consumer]
    profile: type[StreamProfile]

    @property
    def job_name(self) -> str:
        return self.job.name

    def run_config(self, profile: StreamProfile) -> dict:
        """The child run's config: ``profile`` for every asset of the stream."""
        values = profile.model_dump(exclude_unset=False)
        return {"ops": {a.node_def.name: {"config": values} for a in self.assets}}


SETTLEMENT = Stream(
    "settlement",
    settlement.settlement_stream,
    [settlement.settlement_cost_hh],
    [Consumer(settlement_plan.COST.consumer, settlement_plan.COST.sources)],
    SettlementProfile,
)
HALF_HOURLY = Stream(
    "half_hourly",
    half_hourly.half_hourly_stream,
    [half_hourly.hh_revenue_asset],
    [Consumer(half_hourly_plan.REVENUE.consumer, half_hourly_plan.REVENUE.sources)],
    HalfHourlyProfile,
)
MONTHLY = Stream(
    "monthly",
    monthly.monthly_stream,
    [monthly.monthly_day_ledger, monthly_margin.monthly_margin_asset],
    [
        Consumer(monthly_plan.LEDGER.consumer, monthly_plan.LEDGER.sources),
        Consumer(monthly_months.MARGIN_WATERMARK, monthly_months.MARGIN_SOURCES),
    ],
    MonthlyProfile,
)
RECONCILED = Stream(
    "reconciled",
    reconciled.reconciled_job,
    [reconciled.hh_margin_asset],
    [Consumer(reconciled_plan.HH_MARGIN_OUTPUT.consumer, reconciled_plan.HH_MARGIN_OUTPUT.sources)],
    reconciled_plan.ReconciledProfile,
)

#: The three grain-aligned streams the parent job runs, in dependency order.
CHILD_STREAMS: tuple[Stream, ...] = (SETTLEMENT, HALF_HOURLY, MONTHLY)
STREAMS: dict[str, Stream] = {s.name: s for s in (*CHILD_STREAMS, RECONCILED)}
