"""The settlement stream's tuning profile: its run config, with its defaults in this one place."""

from pydantic import Field

from margin_pipeline.streams.shared.compute import DatabricksCompute
from margin_pipeline.streams.shared.profile import StreamProfile


class SettlementCompute(DatabricksCompute):
    """Every meter, every half hour (about 384M rows per settlement day at 8M meters): memory-optimized
    nodes for the half-hourly joins, autoscaling with the size of the day's publication."""

    node_type_id: str = "Standard_E8ds_v5"
    autoscale_min_workers: int = 2
    autoscale_max_workers: int = 8


class SettlementProfile(StreamProfile):
    """Every meter, every half hour: the widest stream. More shuffle partitions; the reference
    tables (metering points, charges) are small and broadcast."""

    shuffle_partitions: int = Field(default=8, description="spark.sql.shuffle.partitions for this stream.")
    broadcast_threshold_mb: int = Field(
        default=64, description="Reference tables below this size are broadcast to the half-hourly joins."
    )
    databricks: SettlementCompute | None = Field(
        default=None,
        description="Job cluster when engine is databricks (default: SettlementCompute); ignored otherwise.",
    )
    CLUSTER = SettlementCompute
