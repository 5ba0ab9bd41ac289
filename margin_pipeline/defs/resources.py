"""The code location's resources and default executor, chosen in one place.

``store`` is delta-rs (all Delta I/O on this machine); ``spark`` is the engine that runs the
streams' PySpark code (:mod:`margin_pipeline.engines`: Sail by default, local Spark with
``MARGIN_PIPELINE_ENGINE=spark``); ``data_root`` is the deployment's folder
(``$MARGIN_PIPELINE_ROOT``); ``alerts`` delivers alerts (:mod:`margin_pipeline.operations.alerts`).
Streams that run on Databricks choose that in their own tuning profile; these stay the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from margin_pipeline.defs.executors import IN_RUN
from margin_pipeline.engines import SparkEngine
from margin_pipeline.operations.alerts import alerts_resource_from_env
from margin_pipeline.settings import DataRoot, default_root
from margin_pipeline.store.delta_rs import DeltaRsStore


def build_resources(root: Path | None = None) -> dict[str, Any]:
    """The resources of the code location, rooted at ``root`` (default ``$MARGIN_PIPELINE_ROOT``)."""
    data_root = DataRoot(root=str(root or default_root()))
    return {
        "data_root": data_root,
        "store": DeltaRsStore(lake_root=str(data_root.lake)),
        "spark": SparkEngine(),
        "alerts": alerts_resource_from_env(data_root.path),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(), executor=IN_RUN)
