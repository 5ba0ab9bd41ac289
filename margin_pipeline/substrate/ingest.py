"""Ingest a batch of landing files: validate, apply, then archive or quarantine each file.

Files are handled one at a time, reference feeds first, in name order within a
feed. A file is applied in one Delta commit or not at all. Rejected files move to
``quarantine/<feed>/`` beside ``<file>.error.json``; applied, unchanged and stale
files move to ``archive/<feed>/``. A crash between the commit and the move is
harmless: the file is still in landing and re-applying it changes nothing.

**Handing a file over.** A writer writes under a name that does not end in ``.csv``
(``prices/2025-10-02_01_prices.csv.part``, or any dot-name) and renames it to its
``.csv`` name when complete: a rename within one folder is atomic, and only ``.csv``
names are ever read. For writers that cannot rename, a ``.csv`` file is taken only once
it has not changed for :data:`SETTLE_SECONDS` (``$MARGIN_PIPELINE_LANDING_SETTLE_SECONDS``,
default 2 s), and ingest skips a file whose size or modification time changed since the
sensor saw it (a later tick takes it, complete). A half-written file is thus never applied,
in part or whole.

**Names.** Ingest reads only ``landing/<feed>/<name>.csv``: a requested path that leaves
landing (``..``, an absolute path) is refused, nothing moved; a file whose name is not
UTF-8 or is longer than :data:`MAX_NAME` characters is quarantined (rule ``file name``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
import time
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

#: Seconds a landing file must have been unchanged before it is taken (writers that cannot rename).
SETTLE_SECONDS = float(os.environ.get("MARGIN_PIPELINE_LANDING_SETTLE_SECONDS", "2"))
#: Longest landing file name taken (longer names are quarantined: they do not round-trip everywhere).
MAX_NAME = 200


class LandingPathError(ValueError):
    """A requested landing file is not a ``landing/<feed>/<name>.csv`` path: refused, nothing moved."""


def drop_key(path: Path) -> str:
    """Identity of one drop of a file (its folder, name, modification time and size): a file that
    grows or is re-dropped gets a new key."""
    stat = path.stat()
    return f"{path.parent.name}/{path.name}:{stat.st_mtime_ns}:{stat.st_size}"


def settled(path: Path, settle_seconds: float = SETTLE_SECONDS, now: float | None = None) -> bool:
    """Whether ``path`` has not been modified for ``settle_seconds``."""
    return path.stat().st_mtime <= (time.time() if now is None else now) - settle_seconds


def landing_path(root: DataRoot, relative: str) -> Path:
    """``landing/<feed>/<name>.csv`` for ``relative`` (as the ingest job's config lists it), or
    :class:`LandingPathError` when it is absolute, climbs out with ``..`` or is not one folder deep."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or len(parts) != 2:
        raise LandingPathError(
            f"refused landing file {relative!r}: files are named relative to landing/ as "
            "<feed>/<name>.csv (no absolute path, no '..'); nothing was read or moved"
        )
    return root.landing / parts[0] / parts[1]


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
    """Landing files waiting to be ingested, in ingest order (settled or not: see :func:`settled`)."""
    found: list[Path] = []
    for feed in INGEST_ORDER:
        folder = root.landing / feed
        if folder.is_dir():
            found.extend(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"))
    return found


def ordered(files: Iterable[Path]) -> list[Path]:
    rank = {feed: i for i, feed in enumerate(INGEST_ORDER)}
    return sorted(files, key=lambda p: (rank.get(p.parent.name, len(rank)), p.name))


def ingest(
    root: DataRoot,
    store: DeltaRsStore,
    files: Iterable[Path],
    run_id: str = "",
    seen: Iterable[str] = (),
) -> IngestReport:
    """Apply ``files`` (paths under ``landing/<feed>/``) to the substrate.

    ``seen`` holds the :func:`drop_key` each file had when the sensor chose it: a file whose key
    changed since (still being written) is left in landing for a later run.
    """
    report = IngestReport()
    chosen = {key.rsplit(":", 2)[0]: key for key in seen}  # <feed>/<name> -> its drop key
    for path in ordered(files):
        if not path.exists():
            log.info("%s is no longer in landing (handled by an earlier run); skipping", path)
            continue
        known = chosen.get(f"{path.parent.name}/{path.name}")
        if known is not None and drop_key(path) != known:
            log.warning(
                "%s changed since landing_sensor saw it (still being written?); left in landing", path
            )
            continue
        feed_name = path.parent.name
        if not _readable_name(path.name):
            shown = _shown(path.name)
            outcome = FileOutcome(feed_name, shown, "rejected")
            outcome.rejection = FileRejected(
                path.parent / shown,
                "file name",
                f"the name is not UTF-8 or longer than {MAX_NAME} characters",
            )
        elif feed_name not in FEEDS:
            outcome = FileOutcome(feed_name, path.name, "rejected")
            outcome.rejection = FileRejected(path, "feed", f"unknown feed folder {feed_name!r}")
        else:
            outcome = _ingest_one(root, store, path, run_id)
        if outcome.rejection is not None:
            # A name that cannot be kept is quarantined under a digest of it (the error names it).
            kept = path.name if _readable_name(path.name) else _digest_name(path.name)
            outcome.moved_to = str(_move(path, root.quarantine / feed_name, kept))
            outcome.rejection.write_beside(Path(outcome.moved_to), feed_name)
            log.warning("%s; file moved to quarantine, nothing applied", outcome.rejection)
        else:
            outcome.moved_to = str(_move(path, root.archive / feed_name))
        report.files.append(outcome)
        _record(store, outcome, run_id)
    return report


def _readable_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of the file system name, as surrogates
        return False
    return len(name) <= MAX_NAME


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


def _shown(name: str) -> str:
    """A name as it can be printed and logged: undecodable bytes escaped, at most MAX_NAME characters."""
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return shown if len(shown) <= MAX_NAME else shown[:MAX_NAME] + "..."


def _digest_name(name: str) -> str:
    return "name-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16] + ".csv"


def _move(path: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or path.name)
    if target.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{target.stem}.{stamp}{target.suffix}"
    shutil.move(path, target)
    return target


def _record(store: DeltaRsStore, outcome: FileOutcome, run_id: str) -> None:
    applied, rejection = outcome.applied, outcome.rejection
    now = dt.datetime.now(dt.UTC)
    row = {
        "ingest_id": hashlib.sha256(
            f"{run_id}|{outcome.moved_to}|{now.isoformat()}".encode("utf-8", "surrogateescape")
        ).hexdigest()[:32],
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
