"""The monthly stream's job and its day-ledger asset (plans: :mod:`.plan`; the margin: :mod:`.margin`)."""

from margin_pipeline.executors import side_by_side
from margin_pipeline.streams.monthly.plan import LEDGER, STREAM
from margin_pipeline.streams.monthly.profile import MONTH_CONCURRENCY
from margin_pipeline.streams.shared.assets import stream_asset, stream_job

monthly_day_ledger = stream_asset(
    LEDGER,
    description="Internal to the monthly stream: one row per supplied MPAN-day with volumes — meter kWh, "
    "revenue, cost, run type and whether the day contributes to its month.",
)

monthly_stream = stream_job(
    "monthly_stream",
    STREAM,
    "Monthly stream: per-MPAN-day ledger, then monthly margin per account, one step per affected month "
    f"(at most execution.config.max_concurrent at once, default {MONTH_CONCURRENCY}).",
    executor_def=side_by_side(MONTH_CONCURRENCY),
)
