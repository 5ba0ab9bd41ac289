"""Each stream's watermarks: per source table, the last Delta version it consumed.

Kept in the Delta table ``control/stream_watermarks`` so any Delta reader can see
how far every stream has got. A stream advances its watermarks only after its
outputs are committed; a crash in between makes the next run redo the same range,
which rewrites nothing (outputs are merged by value).

The same commit records the version of each output the run left behind (rows whose
``source`` is ``output:<table>``): the last good version, which
:mod:`margin_pipeline.streams.shared.rollback` restores when a run failed or was killed
after writing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from margin_pipeline.store import TableSpec
from margin_pipeline.store.base import DeltaStore, with_delete_flag

STREAM_WATERMARKS = TableSpec(
    name="control/stream_watermarks",
    schema=pa.schema(
        [
            pa.field("stream", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("version", pa.int64()),  # Delta version of the source consumed up to (inclusive)
            pa.field("substrate_version", pa.int64()),  # the pinned substrate version N of that run
            pa.field("run_id", pa.string()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
    key=("stream", "source"),
)


#: ``source`` prefix of the rows that record an output's last committed version.
OUTPUT_PREFIX = "output:"


@dataclass(frozen=True)
class Watermarks:
    stream: str
    versions: dict[str, int]  # source -> consumed Delta version
    substrate_version: int | None
    outputs: dict[str, int] = field(default_factory=dict)  # output table -> version at the last commit


def read_watermarks(store: DeltaStore, stream: str) -> Watermarks:
    """``stream``'s watermarks (none when it never committed)."""
    return every_watermark(store).get(stream) or Watermarks(stream, {}, None)


def every_watermark(store: DeltaStore) -> dict[str, Watermarks]:
    """The watermarks of every stream that has committed, from one read of the table: what a
    status of several streams reads (the sensors ask for one every few seconds)."""
    if store.version(STREAM_WATERMARKS) is None:
        return {}
    by_stream: dict[str, list[dict]] = {}
    for row in store.read_arrow(STREAM_WATERMARKS).to_pylist():
        by_stream.setdefault(row["stream"], []).append(row)
    return {stream: _watermarks(stream, rows) for stream, rows in by_stream.items()}


def _watermarks(stream: str, rows: list[dict]) -> Watermarks:
    sources = [r for r in rows if not r["source"].startswith(OUTPUT_PREFIX) and r["version"] is not None]
    numbers = [r["substrate_version"] for r in sources if r["substrate_version"] is not None]
    return Watermarks(
        stream,
        {r["source"]: r["version"] for r in sources},
        min(numbers) if numbers else None,
        {
            r["source"].removeprefix(OUTPUT_PREFIX): r["version"]
            for r in rows
            if r["source"].startswith(OUTPUT_PREFIX) and r["version"] is not None
        },
    )


def advance_watermarks(
    store: DeltaStore,
    stream: str,
    versions: Mapping[str, int | None],
    substrate_version: int | None,
    run_id: str,
    outputs: Mapping[str, int] | None = None,
) -> None:
    """Record ``versions`` as consumed and ``outputs`` (table -> version) as the last good output
    versions, in one commit."""
    now = dt.datetime.now(dt.UTC)
    outputs = outputs or {}
    positions = {**versions, **{OUTPUT_PREFIX + name: v for name, v in outputs.items()}}
    rows = pa.Table.from_pylist(
        [
            {
                "stream": stream,
                "source": source,
                "version": version,
                "substrate_version": substrate_version,
                "run_id": run_id,
                "updated_at": now,
            }
            for source, version in sorted(positions.items())
        ],
        schema=STREAM_WATERMARKS.schema,
    )
    # run_id and updated_at change every run; write only when a consumed position moved.
    current = read_watermarks(store, stream)
    if (
        current.versions == versions
        and current.substrate_version == substrate_version
        and all(current.outputs.get(name) == v for name, v in outputs.items())
    ):
        return
    store.merge(STREAM_WATERMARKS, with_delete_flag(rows, STREAM_WATERMARKS, delete=False))
