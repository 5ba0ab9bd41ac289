"""Ingest a batch of landing files: validate, apply, then archive or quarantine each file.

Files are handled one at a time, reference feeds first, in name order within a
feed. A file is applied in one Delta commit or not at all. Rejected files move to
``quarantine/<feed>/`` beside ``<file>.error.json``; applied, unchanged and stale
files move to ``archive/<feed>/``. A crash between the commit and the move is
harmless: the file is still in landing and re-applying it changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.contracts.validation import FileRejected, read_landing_file
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.publish import Applied, apply_file
from margin_pipeline.substrate.tables import INGEST_LOG, INGEST_ORDER

log = logging.getLogger(__name__)


@dataclass
class FileOutcome:
    feed: str
    file: str
    status: str  # applied | unchanged | stale | rejected
    applied: Applied | None = None
    rejection: FileRejected | None = None
    moved_to: str = ""


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)

    def by_feed(self, feed: str) -> list[FileOutcome]:
        return [f for f in self.files if f.feed == feed]

    @property
    def changed(self) -> bool:
        return any(f.applied is not None and f.applied.changed for f in self.files)

    @property
    def rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "rejected"]


def pending_files(root: DataRoot) -> list[Path]:
    """Landing files waiting to be ingested, in ingest order."""
    found: list[Path] = []
    for feed in INGEST_ORDER:
        folder = root.landing / feed
        if folder.is_dir():
            found.extend(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"))
    return found


def ordered(files: Iterable[Path]) -> list[Path]:
    rank = {feed: i for i, feed in enumerate(INGEST_ORDER)}
    return sorted(files, key=lambda p: (rank.get(p.parent.name, len(rank)), p.name))


def ingest(root: DataRoot, store: DeltaRsStore, files: Iterable[Path], run_id: str = "") -> IngestReport:
    """Apply ``files`` (paths under ``landing/<feed>/``) to the substrate."""
    report = IngestReport()
    for path in ordered(files):
        if not path.exists():
            log.info("%s is no longer in landing (handled by an earlier run); skipping", path)
            continue
        feed_name = path.parent.name
        if feed_name not in FEEDS:
            outcome = FileOutcome(feed_name, path.name, "rejected")
            outcome.rejection = FileRejected(path, "feed", f"unknown feed folder {feed_name!r}")
        else:
            outcome = _ingest_one(root, store, path, run_id)
        if outcome.rejection is not None:
            outcome.moved_to = str(_move(path, root.quarantine / feed_name))
            outcome.rejection.write_beside(Path(outcome.moved_to), feed_name)
            log.warning("%s; file moved to quarantine, nothing applied", outcome.rejection)
        else:
            outcome.moved_to = str(_move(path, root.archive / feed_name))
        report.files.append(outcome)
        _record(store, outcome, run_id)
    return report


def _ingest_one(root: DataRoot, store: DeltaRsStore, path: Path, run_id: str) -> FileOutcome:
    feed = FEEDS[path.parent.name]
    try:
        landing = read_landing_file(feed, path)
        applied = apply_file(
            store, landing, {"margin_pipeline.file": f"{feed.name}/{path.name}", "run_id": run_id}
        )
    except FileRejected as rejection:
        return FileOutcome(feed.name, path.name, "rejected", rejection=rejection)
    for stale in applied.stale:
        log.info("%s: stale publication ignored: %s", path, stale)
    return FileOutcome(feed.name, path.name, applied.status, applied=applied)


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{path.stem}.{stamp}{path.suffix}"
    shutil.move(path, target)
    return target


def _record(store: DeltaRsStore, outcome: FileOutcome, run_id: str) -> None:
    applied, rejection = outcome.applied, outcome.rejection
    now = dt.datetime.now(dt.UTC)
    row = {
        "ingest_id": hashlib.sha256(f"{run_id}|{outcome.moved_to}|{now.isoformat()}".encode()).hexdigest()[
            :32
        ],
        "run_id": run_id,
        "feed": outcome.feed,
        "file": outcome.file,
        "status": outcome.status,
        "rows": applied.rows if applied else None,
        "inserted": applied.outcome.inserted if applied else None,
        "updated": applied.outcome.updated if applied else None,
        "deleted": applied.outcome.deleted if applied else None,
        "table_version": applied.outcome.version if applied else None,
        "publications": "; ".join(applied.publications) if applied else None,
        "stale_publications": "; ".join(applied.stale) if applied else None,
        "rule": rejection.rule if rejection else None,
        "line": rejection.line if rejection else None,
        "message": rejection.message if rejection else None,
        "ingested_at": now,
    }
    store.append(INGEST_LOG, pa.Table.from_pylist([row], schema=INGEST_LOG.schema))
