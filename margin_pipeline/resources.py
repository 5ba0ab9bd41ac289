"""Resources per environment, chosen in one place.

``local`` (the default) is the embedded engine: delta-rs for Delta I/O and a local
PySpark session. Streams that run on Databricks choose that in their own tuning
profile; the code location's resources stay the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster_pyspark import LazyPySparkResource

from margin_pipeline.operations.alerts import alerts_resource_from_env
from margin_pipeline.settings import DataRoot, default_root
from margin_pipeline.store.delta_rs import DeltaRsStore

#: Static settings of the embedded Spark session (one JVM per run process).
#: Per-stream SQL settings (shuffle partitions, AQE, broadcast) are applied by each
#: stream from its tuning profile at run time.
LOCAL_SPARK_CONFIG: dict[str, Any] = {
    "spark.master": "local[2]",
    "spark.app.name": "margin_pipeline",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    # Measured on a 20-meter cycle of all five stream assets (benchmarks/README.md): at laptop
    # scale per-job overhead dominates. Listing files on the driver instead of in a Spark job
    # (67 s -> 50 s) and skipping whole-stage code generation for short-lived plans (-> 47 s).
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    "spark.sql.codegen.wholeStage": "false",
}


def build_resources(root: Path | None = None) -> dict[str, Any]:
    """The resources of the code location, rooted at ``root`` (default ``$MARGIN_PIPELINE_ROOT``)."""
    data_root = DataRoot(root=str(root or default_root()))
    return {
        "data_root": data_root,
        "store": DeltaRsStore(lake_root=str(data_root.lake)),
        "pyspark": LazyPySparkResource(spark_config=LOCAL_SPARK_CONFIG),
        "alerts": alerts_resource_from_env(data_root.path),
    }
