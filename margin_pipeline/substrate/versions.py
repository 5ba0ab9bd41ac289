"""The substrate version N: one number for a consistent set of substrate table versions.

Ingest is the only writer of the substrate and runs one at a time, so after each
ingest run that changed anything the versions of all substrate tables form a
consistent cut. It is recorded as N = previous + 1. Streams pin an N and read
every substrate table at the Delta version recorded for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from margin_pipeline.store.base import DeltaStore, with_delete_flag
from margin_pipeline.substrate.tables import SUBSTRATE, SUBSTRATE_VERSIONS


@dataclass(frozen=True)
class SubstratePin:
    """Substrate version N and the Delta version of each substrate table in it (None: not created yet)."""

    number: int
    tables: dict[str, int | None]
    recorded_at: dt.datetime | None = None  # when ingest recorded N (None: nothing ingested)

    def version_of(self, feed: str) -> int | None:
        return self.tables.get(feed)


def latest_substrate_version(store: DeltaStore) -> int | None:
    if store.version(SUBSTRATE_VERSIONS) is None:
        return None
    numbers = store.read_arrow(SUBSTRATE_VERSIONS, columns=["substrate_version"]).column("substrate_version")
    return pc.max(numbers).as_py() if len(numbers) else None


def record_substrate_version(store: DeltaStore, run_id: str) -> SubstratePin:
    """Record the current substrate table versions as N = latest + 1."""
    number = (latest_substrate_version(store) or 0) + 1
    tables = {feed: store.version(spec) for feed, spec in SUBSTRATE.items()}
    now = dt.datetime.now(dt.UTC)
    rows = pa.Table.from_pylist(
        [
            {
                "substrate_version": number,
                "table": feed,
                "delta_version": v,
                "run_id": run_id,
                "recorded_at": now,
            }
            for feed, v in tables.items()
        ],
        schema=SUBSTRATE_VERSIONS.schema,
    )
    store.merge(SUBSTRATE_VERSIONS, with_delete_flag(rows, SUBSTRATE_VERSIONS, delete=False))
    return SubstratePin(number, tables, now)


def resolve_pin(store: DeltaStore, number: int | None = None) -> SubstratePin:
    """The pin for substrate version ``number`` (latest when None; 0 when nothing was ingested)."""
    if number is None:
        number = latest_substrate_version(store)
    if number is None:
        return SubstratePin(0, dict.fromkeys(SUBSTRATE))
    rows = store.read_arrow(SUBSTRATE_VERSIONS)
    rows = rows.filter(pc.equal(rows.column("substrate_version"), number)).to_pylist()
    if not rows:
        raise ValueError(
            f"substrate version {number} was never recorded (latest is {latest_substrate_version(store)})"
        )
    return SubstratePin(number, {r["table"]: r["delta_version"] for r in rows}, rows[0]["recorded_at"])
