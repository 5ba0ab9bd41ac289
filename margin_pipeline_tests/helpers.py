"""Helpers the tests share: CSV text, reading and comparing lake tables, a materialization's metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa

from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.tables import THROUGH


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


def rows_by_key(store: DeltaRsStore, spec) -> dict[tuple, dict[str, Any]]:
    """Every row of ``spec``'s table by its key (empty when the table does not exist)."""
    if store.version(spec) is None:
        return {}
    return {tuple(r[k] for k in spec.key): r for r in store.read_arrow(spec).to_pylist()}


def assert_same_rows(actual: dict[tuple, dict], expected: dict[tuple, dict], name: str) -> None:
    """Same keys, same values; doubles equal to 1e-6 (summation order may differ between runs).

    The day ledger's tallied-through versions say how a row was computed, not what it is: a full
    rebuild records the pinned version, an incremental run the last commit it added. Not compared.
    """
    assert actual.keys() == expected.keys(), (
        f"{name}: keys only in actual {sorted(actual.keys() - expected.keys())[:3]}, "
        f"only in expected {sorted(expected.keys() - actual.keys())[:3]}"
    )
    for key, row in actual.items():
        for column, value in row.items():
            if column in THROUGH:
                continue
            other = expected[key][column]
            if isinstance(value, float) and isinstance(other, float):
                assert abs(value - other) <= 1e-6, (name, key, column, value, other)
            else:
                assert value == other, (name, key, column, value, other)
