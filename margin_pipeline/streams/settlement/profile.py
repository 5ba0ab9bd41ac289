"""The settlement stream's tuning profile: its run config, with its defaults in this one place."""

from pydantic import Field

from margin_pipeline.streams.shared.profile import StreamProfile


class SettlementProfile(StreamProfile):
    """Every meter, every half hour: the widest stream. More shuffle partitions; the reference
    tables (metering points, charges) are small and broadcast."""

    shuffle_partitions: int = Field(default=8, description="spark.sql.shuffle.partitions for this stream.")
    broadcast_threshold_mb: int = Field(
        default=64, description="Reference tables below this size are broadcast to the half-hourly joins."
    )
