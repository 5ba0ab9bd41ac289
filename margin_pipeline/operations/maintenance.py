"""Table maintenance as its own measured job, never part of a stream refresh.

Remove before add: nothing here runs on every refresh. ``table_maintenance``
compacts small files (OPTIMIZE; a data-neutral commit that adds no change-feed
rows) and vacuums unreferenced files, recording per table what it bought: files
and bytes before and after, and the time to list a snapshot before and after.

Vacuum never breaks a lagging stream: its retention is at least the age of the
oldest commit any stream still has to read (the oldest watermark over all
streams that consume the table), and never below ``min_retention_hours``.
(Measured: delta-rs writes change rows of every MERGE, inserts included, to
``_change_data/`` and its vacuum keeps those, so on the embedded engine vacuum
cannot break a change-feed read; Delta on Spark reads insert-only commits from
data files and expires ``_change_data`` with retention, which this floor protects.)
"""

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pydantic import Field

from margin_pipeline.store import TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.registry import consumed_tables, published_tables
from margin_pipeline.streams.shared.watermarks import STREAM_WATERMARKS
from margin_pipeline.substrate.tables import INGEST_LOG, SUBSTRATE

#: Tables streams consume through their change feed, by the name watermarks use.
CONSUMED: dict[str, TableSpec] = consumed_tables()
#: Every table maintenance compacts and vacuums: the substrate, what streams consume and publish,
#: and the ingest log.
MAINTAINED: dict[str, TableSpec] = {**SUBSTRATE, **CONSUMED, **published_tables(), "ingest_log": INGEST_LOG}


class MaintenanceConfig(dg.Config):
    optimize: bool = Field(default=True, description="Compact small files (no change-feed rows).")
    vacuum: bool = Field(default=True, description="Delete files no version still in use references.")
    min_retention_hours: int = Field(
        default=168, description="Never vacuum files removed more recently than this (default one week)."
    )


def retention_hours(oldest_needed: dt.datetime | None, now: dt.datetime, minimum: int) -> int:
    """Hours of removed files to keep: back to the oldest commit a stream still reads, >= ``minimum``."""
    if oldest_needed is None:
        return minimum
    return max(minimum, math.ceil((now - oldest_needed).total_seconds() / 3600) + 1)


def oldest_needed_commit(store: DeltaRsStore, name: str) -> dt.datetime | None:
    """Commit time of the oldest version of ``name`` any stream has consumed up to (its lowest watermark)."""
    if store.version(STREAM_WATERMARKS) is None:
        return None
    marks = store.read_arrow(STREAM_WATERMARKS)
    marks = marks.filter(pc.equal(marks.column("source"), name)).column("version")
    if not len(marks) or pc.min(marks).as_py() is None:
        return None
    oldest = max(int(pc.min(marks).as_py()), 0)
    for commit in store.history(CONSUMED[name]):
        if commit["version"] == oldest:
            return dt.datetime.fromtimestamp(commit["timestamp"] / 1000, dt.UTC)
    return None


@dataclass
class TableFootprint:
    files: int
    bytes: int
    list_seconds: float

    @classmethod
    def of(cls, uri: str) -> "TableFootprint":
        started = time.perf_counter()
        table = DeltaTable(uri)
        actions = pa.table(table.get_add_actions(flatten=True))
        table.to_pyarrow_dataset().count_rows()
        elapsed = time.perf_counter() - started
        size = int(pc.sum(actions.column("size_bytes")).as_py() or 0) if actions.num_rows else 0
        return cls(actions.num_rows, size, round(elapsed, 4))


def maintain(store: DeltaRsStore, name: str, config: MaintenanceConfig, now: dt.datetime) -> dict[str, Any]:
    spec = MAINTAINED[name]
    uri = store.uri(spec)
    before = TableFootprint.of(uri)
    result: dict[str, Any] = {"files_before": before.files, "bytes_before": before.bytes}
    if config.optimize:
        metrics = DeltaTable(uri).optimize.compact()
        result["optimize_files_added"] = metrics.get("numFilesAdded", 0)
        result["optimize_files_removed"] = metrics.get("numFilesRemoved", 0)
    if config.vacuum:
        hours = retention_hours(
            oldest_needed_commit(store, name) if name in CONSUMED else None, now, config.min_retention_hours
        )
        deleted = DeltaTable(uri).vacuum(
            retention_hours=hours, dry_run=False, enforce_retention_duration=False
        )
        result["vacuum_retention_hours"] = hours
        result["vacuum_files_deleted"] = len(deleted)
    after = TableFootprint.of(uri)
    result.update(
        files_after=after.files,
        bytes_after=after.bytes,
        snapshot_list_seconds_before=before.list_seconds,
        snapshot_list_seconds_after=after.list_seconds,
    )
    return result
