"""``control/pipeline_runs``: one row per finished run, queryable with any Delta reader.

Written by ``run_log_sensor`` from the Dagster instance's run records, so a run that
died without running any of its own code (killed, lost, over its maximum runtime) is
logged as well. MERGE on ``run_id``: a sensor tick that is retried writes nothing new.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from margin_pipeline.orchestration.runs import PARENT_RUN_TAG, STREAM_TAG, SUBSTRATE_VERSION_TAG, RunReport
from margin_pipeline.store import TableSpec
from margin_pipeline.store.base import DeltaStore, with_delete_flag

PIPELINE_RUNS = TableSpec(
    name="control/pipeline_runs",
    schema=pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("parent_run_id", pa.string()),  # the job of jobs that launched it
            pa.field("job", pa.string()),
            pa.field("stream", pa.string()),  # settlement, half_hourly, monthly, reconciled, parent, ingest
            pa.field("status", pa.string()),  # SUCCESS, FAILURE or CANCELED
            pa.field("substrate_version", pa.int64()),
            pa.field("watermarks", pa.string()),  # JSON: asset -> {source: "from -> to"}
            pa.field("modes", pa.string()),  # JSON: asset -> full / incremental / skipped (no changes)
            pa.field("rows_read", pa.int64()),
            pa.field("rows_written", pa.int64()),  # inserted + updated + deleted, all outputs
            pa.field("checks_failed", pa.string()),  # comma separated; empty when none failed
            pa.field("rollback", pa.string()),  # JSON list of restores the run made
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("ended_at", pa.timestamp("us", tz="UTC")),
            pa.field("duration_seconds", pa.float64()),
            pa.field("error", pa.string()),
        ]
    ),
    key=("run_id",),
)


def run_row(run: RunReport) -> dict[str, Any]:
    """The ``pipeline_runs`` row of a finished run."""
    assets = run.assets

    def total(*keys: str) -> int:
        return int(sum(m.get(k) or 0 for m in assets.values() for k in keys))

    numbers = [int(n) for m in assets.values() if str(n := m.get("substrate_version")).isdigit()]
    tagged = run.tags.get(SUBSTRATE_VERSION_TAG)
    return {
        "run_id": run.run_id,
        "parent_run_id": run.tags.get(PARENT_RUN_TAG),
        "job": run.job,
        "stream": run.tags.get(STREAM_TAG),
        "status": run.status,
        "substrate_version": int(tagged) if tagged else (max(numbers) if numbers else None),
        "watermarks": json.dumps(
            {
                k: {s["source"]: f"{s['from']} -> {s['to']}" for s in m["sources"]}
                for k, m in assets.items()
                if m.get("sources")
            }
        ),
        "modes": json.dumps({k: m.get("mode") for k, m in assets.items() if "mode" in m}),
        "rows_read": total("rows_read"),
        "rows_written": total("rows_inserted", "rows_updated", "rows_deleted"),
        "checks_failed": ",".join(run.failed_checks),
        "rollback": json.dumps([r for m in assets.values() for r in (m.get("rollback") or [])]),
        "started_at": _instant(run.started),
        "ended_at": _instant(run.ended),
        "duration_seconds": round(run.seconds, 3) if run.started else None,
        "error": run.error or None,
    }


def _instant(seconds: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


def write_runs(store: DeltaStore, rows: list[dict[str, Any]]) -> int:
    """MERGE ``rows`` into ``pipeline_runs``; the number of rows whose values changed."""
    if not rows:
        return 0
    table = pa.Table.from_pylist(rows, schema=PIPELINE_RUNS.schema)
    store.ensure_table(PIPELINE_RUNS)
    return store.merge(PIPELINE_RUNS, with_delete_flag(table, PIPELINE_RUNS, delete=False)).changed
