"""What a stream asks of Databricks: its job cluster, and the one-task run that executes it there.

The cluster comes from the stream's tuning profile (``databricks:`` in its run config);
credentials never do: the Databricks SDK reads ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``
(or the OAuth variables) from the environment of the process that submits the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from margin_pipeline import __version__

if TYPE_CHECKING:  # the SDK takes 1.5 s to import: only a run that goes to Databricks pays it
    from databricks.sdk.service import compute, jobs

#: The wheel ``make wheel`` builds (dist/) and the job clusters install.
WHEEL_NAME = f"margin_pipeline-{__version__}-py3-none-any.whl"
#: The console script of the wheel that runs one stream output under Dagster Pipes.
ENTRY_POINT = "margin-pipeline-remote"


class DatabricksCompute(dg.Config):
    """A classic job cluster for one stream run. Each stream's profile subclasses it with its defaults."""

    lake_root: str = Field(
        default="",
        description="Where the lake lives for the cluster (Delta tables by path; required for engine: "
        "databricks unless catalog is set), e.g. abfss://lake@account.dfs.core.windows.net/margin.",
    )
    catalog: str = Field(
        default="",
        description="Unity Catalog catalog of the tables (with schema_name); empty: tables by path.",
    )
    schema_name: str = Field(
        default="", description="Schema of the tables in `catalog`: <catalog>.<schema>.<layer>_<table>."
    )
    wheel: str = Field(
        default=f"/Volumes/main/margin_pipeline/artifacts/{WHEEL_NAME}",
        description="Where `make wheel`'s wheel was uploaded (a Unity Catalog volume or workspace path).",
    )
    spark_version: str = Field(
        default="15.4.x-scala2.12", description="Databricks Runtime of the job cluster."
    )
    node_type_id: str = Field(default="Standard_E8ds_v5", description="Worker and driver node type.")
    num_workers: int = Field(default=2, description="Fixed workers (ignored when autoscale_max_workers > 0).")
    autoscale_min_workers: int = Field(default=0, description="Autoscale lower bound.")
    autoscale_max_workers: int = Field(default=0, description="Autoscale upper bound; 0: fixed num_workers.")
    instance_pool_id: str = Field(default="", description="Draw nodes from this instance pool (optional).")
    spark_conf: dict[str, str] = Field(
        default={}, description="Extra Spark conf for the cluster (the profile's SQL settings are added)."
    )
    timeout_seconds: int = Field(default=4 * 3600, description="Cancel the Databricks run after this long.")
    poll_interval_seconds: float = Field(default=10.0, description="How often the op polls the run's state.")

    def cluster(self, spark_conf: dict[str, str]) -> compute.ClusterSpec:
        from databricks.sdk.service import compute

        autoscale = (
            compute.AutoScale(min_workers=self.autoscale_min_workers, max_workers=self.autoscale_max_workers)
            if self.autoscale_max_workers
            else None
        )
        return compute.ClusterSpec(
            spark_version=self.spark_version,
            node_type_id=None if self.instance_pool_id else self.node_type_id,
            instance_pool_id=self.instance_pool_id or None,
            num_workers=None if autoscale else self.num_workers,
            autoscale=autoscale,
            spark_conf={**spark_conf, **self.spark_conf},
        )


def submit_task(output: str, profile: Any) -> jobs.SubmitTask:
    """The one task of a Databricks run that refreshes ``output`` with ``profile`` on its own job cluster.

    Pipes adds its bootstrap (context and message locations) to the cluster's environment;
    the stream's profile, the pinned version N and the lake travel as Pipes extras.
    """
    from databricks.sdk.service import compute, jobs

    settings: DatabricksCompute = profile.cluster()
    return jobs.SubmitTask(
        task_key=output.replace("/", "__"),
        description=f"margin_pipeline: refresh {output}",
        new_cluster=settings.cluster(profile.spark_conf()),
        libraries=[compute.Library(whl=settings.wheel)],
        python_wheel_task=jobs.PythonWheelTask(
            package_name="margin_pipeline", entry_point=ENTRY_POINT, parameters=["--transport", "dbfs"]
        ),
        timeout_seconds=settings.timeout_seconds,
    )
