"""Helpers the tests share: CSV text, reading and comparing lake tables, a materialization's metadata."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pyarrow as pa

from margin_pipeline.engines import SparkEngine
from margin_pipeline.gold import GOLD
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.tables import DAY_LEDGER, THROUGH
from margin_pipeline.substrate.ingest import ingest, pending_files
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline.synthetic import Scenario, generate_history

T = TypeVar("T")

#: Every table the streams publish, by name.
STREAM_OUTPUTS = {**GOLD, "monthly_day_ledger": DAY_LEDGER}
#: A few meters over two days: every stream has rows, every run takes seconds.
SMALL_SCENARIO = Scenario(meters=6, days=2, seed=5)


@dg.op
def idle() -> None:
    """The one step of :func:`idle_job`: does nothing."""


@dg.job
def idle_job() -> None:
    """A job whose one step (``idle``) does nothing: a run that only holds tags, events or slots."""
    idle()


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.3) -> T:
    """The first truthy value of ``condition()``, asked every ``interval`` seconds; an
    AssertionError naming ``what`` once ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.3g} s: {what}")
        time.sleep(interval)
    return value


def csv(header: str, *rows: str) -> str:
    return "\n".join([header, *rows]) + "\n"


def read(store: DeltaRsStore, spec) -> list[dict[str, Any]]:
    if store.version(spec) is None:
        return []
    table: pa.Table = store.read_arrow(spec)
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in spec.key))


def metadata_of(result: dg.ExecuteInProcessResult, key: list[str]) -> dict[str, Any]:
    from margin_pipeline.orchestration.runs import plain

    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: plain(v) for k, v in event.materialization.metadata.items()}


def rows_by_key(store: DeltaRsStore, spec) -> dict[tuple, dict[str, Any]]:
    """Every row of ``spec``'s table by its key (empty when the table does not exist)."""
    if store.version(spec) is None:
        return {}
    return {tuple(r[k] for k in spec.key): r for r in store.read_arrow(spec).to_pylist()}


def rows_doubled(store: DeltaRsStore, spec) -> int:
    """Rows of ``spec``'s table beyond one per key (0: no key is held twice)."""
    if store.version(spec) is None:
        return 0
    table = store.read_arrow(spec)
    return table.num_rows - len(
        {tuple(r[k] for k in spec.key) for r in table.select(list(spec.key)).to_pylist()}
    )


def differences(actual: dict[tuple, dict], expected: dict[tuple, dict]) -> tuple[list[tuple], list[tuple]]:
    """``(lost, excess)``: the keys of ``expected`` that ``actual`` lacks or holds with other values,
    and the keys only ``actual`` has. Doubles are equal to 1e-6 (summation order may differ between
    runs). The day ledger's tallied-through versions say how a row was computed, not what it is (a
    full rebuild records the pinned version, an incremental run the last commit it added): not
    compared."""
    lost = [key for key, row in expected.items() if key not in actual or not _same(actual[key], row)]
    return lost, [key for key in actual if key not in expected]


def _same(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    def equal(a: Any, b: Any) -> bool:
        return abs(a - b) <= 1e-6 if isinstance(a, float) and isinstance(b, float) else a == b

    return actual.keys() == expected.keys() and all(
        column in THROUGH or equal(actual[column], value) for column, value in expected.items()
    )


def assert_same_rows(actual: dict[tuple, dict], expected: dict[tuple, dict], name: str) -> None:
    """Same keys, same values (:func:`differences`)."""
    lost, excess = differences(actual, expected)
    assert not lost and not excess, (
        f"{name}: {len(lost)} rows missing or different, {len(excess)} in excess; first "
        f"(key, actual, expected): {[(k, actual.get(k), expected[k]) for k in lost[:2]]}, "
        f"first in excess: {excess[:3]}"
    )


def stream_resources(store: DeltaRsStore, engine: SparkEngine | None = None) -> dict[str, Any]:
    """What the stream assets need in a test: ``store`` and the engine (default: the environment's,
    ``$MARGIN_PIPELINE_ENGINE``, on the process's one Sail server or local JVM)."""
    return {"store": store, "spark": engine or SparkEngine()}


def stream_assets() -> list[dg.AssetsDefinition]:
    """The five stream assets, settlement to hh_margin, in the registry's order (imported late:
    helpers stay light)."""
    from margin_pipeline.defs.streams.assets import ASSETS

    return list(ASSETS.values())


def deployment(root: Path, scenario: Scenario = SMALL_SCENARIO) -> DeltaRsStore:
    """A data root at ``root`` holding substrate version 1 of ``scenario`` (the generator is
    deterministic, so two deployments of one scenario hold the same substrate)."""
    data_root = DataRoot(root=str(root))
    generate_history(data_root.landing, scenario)
    store = DeltaRsStore(lake_root=str(data_root.lake))
    ingest(data_root, store, pending_files(data_root))
    record_substrate_version(store, "test")
    return store


def full_recompute(
    lake: Path, into: Path, engine: SparkEngine | None = None, substrate_version: int | None = None
) -> DeltaRsStore:
    """Every stream output computed in full from a copy of ``lake``'s substrate (its tables and
    recorded versions, nothing a stream wrote) under ``into``, at ``substrate_version`` (default: the
    latest recorded): the reference incremental runs must equal."""
    from margin_pipeline.defs.streams.assets import run_config
    from margin_pipeline.streams.registry import STREAMS

    shutil.copytree(lake / "substrate", into / "substrate")
    shutil.copytree(lake / "control" / "substrate_versions", into / "control" / "substrate_versions")
    store = DeltaRsStore(lake_root=str(into))
    ops = {
        node: config
        for stream in STREAMS.values()
        for node, config in run_config(stream, stream.profile(substrate_version=substrate_version))[
            "ops"
        ].items()
    }
    result = dg.materialize(
        stream_assets(), resources=stream_resources(store, engine), run_config={"ops": ops}
    )
    assert result.success
    return store
