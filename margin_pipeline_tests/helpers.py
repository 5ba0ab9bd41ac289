"""Small helpers the tests share: CSV text, reading a lake table, a materialization's metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa

from margin_pipeline.store.delta_rs import DeltaRsStore


def csv(header: str, *rows: str) -> str:
    return "\n".join([header, *rows]) + "\n"


def read(store: DeltaRsStore, spec) -> list[dict[str, Any]]:
    if store.version(spec) is None:
        return []
    table: pa.Table = store.read_arrow(spec)
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in spec.key))


def metadata_of(result: dg.ExecuteInProcessResult, key: list[str]) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}
