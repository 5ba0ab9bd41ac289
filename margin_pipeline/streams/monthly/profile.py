"""The monthly stream's tuning profile: its run config, with its defaults in this one place."""

from pydantic import Field

from margin_pipeline.streams.shared.profile import StreamProfile


class MonthlyProfile(StreamProfile):
    """An aggregation to account x month: few output rows, so few shuffle partitions; the
    per-MPAN-day ledger it aggregates is small enough to broadcast-join the agreements."""

    shuffle_partitions: int = Field(default=2, description="spark.sql.shuffle.partitions for this stream.")
    broadcast_threshold_mb: int = Field(
        default=64, description="Reference tables below this size are broadcast to the joins."
    )
