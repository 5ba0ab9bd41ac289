"""Fixtures to ingest small hand-written feeds and materialize stream assets on a real Spark session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from dagster_pyspark import PySparkResource

from margin_pipeline.resources import LOCAL_SPARK_CONFIG
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.ingest import ingest, pending_files
from margin_pipeline.substrate.versions import record_substrate_version


def csv(header: str, *rows: str) -> str:
    return "\n".join([header, *rows]) + "\n"


@pytest.fixture
def publish(data_root: DataRoot, store: DeltaRsStore, drop) -> Callable[..., int]:
    """Drop ``{feed: text}`` files, ingest them, record a substrate version; returns N."""
    counter = iter(range(10_000))

    def _publish(files: dict[str, str]) -> int:
        for feed, text in files.items():
            drop(feed, f"{next(counter):05d}_{feed}.csv", text)
        report = ingest(data_root, store, pending_files(data_root))
        assert not report.rejected, [str(f.rejection) for f in report.rejected]
        return record_substrate_version(store, "test").number

    return _publish


@pytest.fixture
def materialize(store: DeltaRsStore, spark) -> Callable[..., dg.ExecuteInProcessResult]:
    """Materialize assets with the embedded resources (the session fixture's Spark is reused)."""

    def _materialize(assets: list[Any], config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        resources = {"store": store, "pyspark": PySparkResource(spark_config=LOCAL_SPARK_CONFIG)}
        run_config = {"ops": {name: {"config": cfg} for name, cfg in (config or {}).items()}}
        return dg.materialize(assets, resources=resources, run_config=run_config)

    return _materialize


def read(store: DeltaRsStore, spec) -> list[dict[str, Any]]:
    if store.version(spec) is None:
        return []
    table: pa.Table = store.read_arrow(spec)
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in spec.key))


def metadata_of(result: dg.ExecuteInProcessResult, key: list[str]) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}
