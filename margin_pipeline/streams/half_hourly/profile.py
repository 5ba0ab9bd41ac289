"""The half_hourly stream's tuning profile: its run config, with its defaults in this one place."""

from pydantic import Field

from margin_pipeline.streams.shared.compute import DatabricksCompute
from margin_pipeline.streams.shared.profile import StreamProfile


class HalfHourlyCompute(DatabricksCompute):
    """HH-tariff days only (about 30% of meters) joined to half-hourly rates: memory-optimized
    nodes, a smaller autoscale range than settlement."""

    node_type_id: str = "Standard_E8ds_v5"
    autoscale_min_workers: int = 2
    autoscale_max_workers: int = 6


class HalfHourlyProfile(StreamProfile):
    """HH-tariff days only (about 30% of meters), joined to half-hourly rates: a mid-sized
    stream whose largest reference table is the per-half-hour dynamic rates."""

    shuffle_partitions: int = Field(default=4, description="spark.sql.shuffle.partitions for this stream.")
    broadcast_threshold_mb: int = Field(
        default=32, description="Reference tables below this size are broadcast to the half-hourly joins."
    )
    databricks: HalfHourlyCompute | None = Field(
        default=None,
        description="Job cluster when engine is databricks (default: HalfHourlyCompute); ignored otherwise.",
    )
    CLUSTER = HalfHourlyCompute
