"""The orchestrating side of a remote stream run: start the entry point through Pipes and wait.

``pipes_subprocess`` starts :mod:`margin_pipeline.remote.entry` on this machine against the
run's own lake; ``databricks`` submits it as a one-task run on a job cluster built from the
stream profile's ``databricks`` settings. Either way the op gets back the same metadata a
local refresh returns.
"""

from __future__ import annotations

import sys
from typing import Any

import dagster as dg

from margin_pipeline.streams.shared.compute import submit_task


def refresh_remote(context: Any, profile: Any, output: str, lake_root: str) -> dict[str, Any]:
    """Refresh ``output`` on ``profile.engine``; returns the metadata the entry point reported.

    ``lake_root`` is the run's local lake (the subprocess engine); a Databricks cluster uses
    ``lake_root`` of the profile's cluster. No credentials pass through here: for Databricks, the SDK
    reads ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN`` (or OAuth) from the environment.
    """
    extras: dict[str, Any] = {"output": output, "profile": profile.model_dump(mode="json")}
    if profile.engine == "pipes_subprocess":
        extras["store"] = {"kind": "delta_rs", "lake_root": lake_root}
        command = [sys.executable, "-m", "margin_pipeline.remote.entry"]
        invocation = dg.PipesSubprocessClient().run(context=context, command=command, extras=extras)
    elif profile.engine == "databricks":
        invocation = _databricks(context, profile, output, extras)
    else:
        raise ValueError(f"engine {profile.engine!r} is not remote")
    messages = [m for m in invocation.get_custom_messages() if isinstance(m, dict) and "metadata" in m]
    if not messages:
        raise dg.Failure(f"the {profile.engine} run of {output} ended without reporting its metadata")
    return messages[-1]["metadata"]


def delta_spark_store(settings: Any, output: str) -> dict[str, str]:
    """The store extras of a Databricks run: tables by path under lake_root, or catalog tables."""
    catalog = bool(settings.catalog and settings.schema_name)
    if not (settings.lake_root or catalog):
        raise dg.Failure(
            f"engine databricks for {output} needs databricks.lake_root (tables by path) or "
            "databricks.catalog and databricks.schema_name (Unity Catalog tables) in the stream profile"
        )
    return {
        "kind": "delta_spark",
        "lake_root": settings.lake_root,
        "catalog": settings.catalog if catalog else "",
        "schema_name": settings.schema_name if catalog else "",
    }


def _databricks(context: Any, profile: Any, output: str, extras: dict[str, Any]) -> Any:
    from dagster_databricks import PipesDatabricksClient
    from databricks.sdk import WorkspaceClient

    extras["store"] = delta_spark_store(profile.cluster(), output)
    client = PipesDatabricksClient(
        client=WorkspaceClient(), poll_interval_seconds=profile.cluster().poll_interval_seconds
    )
    return client.run(context=context, task=submit_task(output, profile), extras=extras)
