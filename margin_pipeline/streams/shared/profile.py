"""A stream's run config is its tuning profile: one typed class per stream, defaults in one place."""

from __future__ import annotations

from typing import ClassVar, Literal

import dagster as dg
from pydantic import Field

from margin_pipeline.streams.shared.compute import DatabricksCompute
from margin_pipeline.streams.shared.retries import RetryProfile

#: Where a stream output runs: in the op's process (the embedded default), in a Dagster Pipes
#: subprocess on this machine (the remote entry point against the local lake), or on a Databricks
#: job cluster through Pipes (the same entry point, with delta-spark).
Engine = Literal["local", "pipes_subprocess", "databricks"]


class StreamProfile(dg.Config):
    """What every stream's profile can set. Each stream subclasses it with its own defaults."""

    substrate_version: int | None = Field(
        default=None, description="Pin substrate version N (default: the latest). The parent job sets it."
    )
    full_rebuild: bool = Field(default=False, description="Ignore watermarks and recompute everything.")
    shuffle_partitions: int = Field(default=4, description="spark.sql.shuffle.partitions for this stream.")
    adaptive_query_execution: bool = Field(
        default=False,
        description="spark.sql.adaptive.enabled. Off on the embedded engine, where its extra stage jobs cost "
        "more than they save (measured 47 s -> 36 s per cycle); turn on for cluster-sized data.",
    )
    broadcast_threshold_mb: int = Field(
        default=32, description="Reference tables below this size are broadcast to the half-hourly joins."
    )
    engine: Engine = Field(
        default="local",
        description="local: in the run's process; pipes_subprocess: the remote entry point in a local "
        "subprocess; databricks: the remote entry point on a job cluster built from `databricks`.",
    )
    databricks: DatabricksCompute | None = Field(
        default=None,
        description="The job cluster when engine is databricks; only what differs from the stream's "
        "defaults (its CLUSTER) needs setting. Ignored on other engines.",
    )
    retry: RetryProfile = Field(
        default_factory=RetryProfile,
        description="Retries of transient faults (commit conflicts, JVM or network hiccups) with backoff.",
    )

    #: The stream's job-cluster defaults, used where ``databricks`` is not set.
    CLUSTER: ClassVar[type[DatabricksCompute]] = DatabricksCompute

    def cluster(self) -> DatabricksCompute:
        """The job cluster of a databricks run: ``databricks`` as set, else the stream's defaults."""
        return self.databricks if self.databricks is not None else self.CLUSTER()

    def spark_conf(self) -> dict[str, str]:
        return {
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.adaptive.enabled": str(self.adaptive_query_execution).lower(),
            "spark.sql.autoBroadcastJoinThreshold": str(self.broadcast_threshold_mb * 1024 * 1024),
            "spark.sql.session.timeZone": "UTC",  # the calendar expressions rely on it
        }

    def apply(self, spark) -> None:
        for key, value in self.spark_conf().items():
            spark.conf.set(key, value)
