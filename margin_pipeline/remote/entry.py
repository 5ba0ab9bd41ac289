"""The remote entry point: refresh one stream output under Dagster Pipes, wherever it runs.

    margin-pipeline-remote [--transport env|dbfs]        (the wheel's console script)
    python -m margin_pipeline.remote.entry               (the pipes_subprocess engine)

The orchestrating op sends, as Pipes extras, the output to refresh (its table name), the
stream's profile (its run config, with the pinned substrate version N) and the store
(``kind``: delta_rs or delta_spark; ``lake_root``; for catalog tables ``catalog`` and
``schema_name``). The same plan and runner as the local engine do the work; the metadata
of the refresh (watermarks, rows read and written) goes back as a Pipes message and
becomes the asset's materialization.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from dagster_pipes import (
    PipesContextLoader,
    PipesDbfsContextLoader,
    PipesDbfsMessageWriter,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesMessageWriter,
    open_dagster_pipes,
)


def open_store(settings: dict[str, str]) -> tuple[Any, Any]:
    """The Spark session and Delta store the extras ask for."""
    from pyspark.sql import SparkSession

    if settings["kind"] == "delta_rs":  # this machine: the environment's engine and the embedded store
        from margin_pipeline.engines import SparkEngine
        from margin_pipeline.store.delta_rs import DeltaRsStore

        return SparkEngine().spark_session, DeltaRsStore(lake_root=settings["lake_root"])
    if settings["kind"] == "delta_spark":  # a cluster: its session has the Delta extensions
        from margin_pipeline.store.delta_spark import DeltaSparkStore

        store = DeltaSparkStore(
            lake_root=settings["lake_root"],
            catalog=settings.get("catalog", ""),
            schema_name=settings.get("schema_name", ""),
        )
        return SparkSession.builder.getOrCreate(), store
    raise ValueError(f"unknown store kind {settings['kind']!r}: expected delta_rs or delta_spark")


def refresh(spark: Any, store: Any, output: str, profile: dict[str, Any], run_id: str, log: Any) -> dict:
    """Refresh ``output`` (a table name) with its stream's profile ``profile``; returns the
    materialization metadata. The registry of streams says which stream owns it and how."""
    from margin_pipeline.streams.registry import output_of

    stream, found = output_of(output)
    return found.refresh(spark, store, stream.profile(**profile), run_id, log)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="margin-pipeline-remote", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transport",
        choices=["env", "dbfs"],
        default="env",
        help="env: Pipes context and messages as the launching client set them up (subprocess); "
        "dbfs: through DBFS, as PipesDatabricksClient does",
    )
    args = parser.parse_args(argv)
    loader: PipesContextLoader
    writer: PipesMessageWriter
    if args.transport == "dbfs":
        loader, writer = PipesDbfsContextLoader(), PipesDbfsMessageWriter()
    else:
        loader, writer = PipesDefaultContextLoader(), PipesDefaultMessageWriter()
    with open_dagster_pipes(context_loader=loader, message_writer=writer) as pipes:
        extras = pipes.extras
        spark, store = open_store(extras["store"])
        metadata = refresh(spark, store, extras["output"], extras["profile"], pipes.run_id, pipes.log)
        pipes.report_custom_message({"metadata": jsonable(metadata)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
