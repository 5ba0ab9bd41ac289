"""Where a deployment keeps its data: one root folder, ``$MARGIN_PIPELINE_ROOT``.

Layout (docs/contract.md, 'Data root'): ``landing/<feed>/`` dropped files, ``quarantine/<feed>/``
rejected files with ``<file>.error.json``, ``archive/<feed>/`` files that were
applied (kept, never deleted), ``lake/`` Delta tables (``substrate/``, ``gold/``,
``control/``) and ``dagster/`` the Dagster instance home.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg

ROOT_ENV = "MARGIN_PIPELINE_ROOT"
#: A PostgreSQL URL for the Dagster instance (``postgresql+psycopg2://user:password@host:port/db``, the
#: driver dagster-postgres installs); unset: SQLite.
POSTGRES_URL_ENV = "DAGSTER_PG_URL"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, Path.cwd() / ".margin")).resolve()


class DataRoot(dg.ConfigurableResource):
    """The deployment's data root and the folders under it."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def landing(self) -> Path:
        return self.path / "landing"

    @property
    def quarantine(self) -> Path:
        return self.path / "quarantine"

    @property
    def archive(self) -> Path:
        return self.path / "archive"

    @property
    def lake(self) -> Path:
        return self.path / "lake"

    @property
    def dagster_home(self) -> Path:
        return self.path / "dagster"


def prepare_dagster_home(root: Path) -> Path:
    """Point ``DAGSTER_HOME`` at ``<root>/dagster``, with the repo's one ``dagster.yaml`` in it.

    Instance state (run history, event logs, compute logs) thus lives under the data root,
    never in the source tree, while ``dagster.yaml`` stays a single versioned file: linked as
    it is (SQLite, the default), or, when ``$DAGSTER_PG_URL`` is set, written with its storage
    switched to that PostgreSQL database (the URL, password included, stays in the
    environment: the file names the variable, never its value). The instance's storage is created
    here too, under a lock on ``<root>/dagster/.prepare.lock``, so processes preparing the same
    new home at once take turns.
    """
    home = root / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / PREPARE_LOCK):
        _link_config(home)
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ.setdefault(ROOT_ENV, str(root))
        # Create (or migrate) the instance's storage here, one process at a time: two processes
        # opening a new SQLite instance at once (`make ui` started beside `margin-pipeline run`) both
        # create its tables, and one fails ("table alembic_version already exists") or both record a
        # schema version, leaving an instance that no process can open again ("more than one head").
        with dg.DagsterInstance.get():
            pass
    return home


#: The file whose lock :func:`prepare_dagster_home` holds while it prepares an instance home.
PREPARE_LOCK = ".prepare.lock"


class FileLock:
    """An exclusive ``flock`` on a file (created if missing), held until :meth:`release` or the
    holding process's exit, however it exits. The holder writes its pid and command into the file,
    so a process that finds it held can say who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self, blocking: bool = True, shared: bool = False) -> bool:
        """Take the lock (waiting for it when ``blocking``); False if another process holds it.
        A ``shared`` lock is held by any number of processes at once, and keeps out exclusive ones."""
        handle = self.path.open("a+")
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        if not shared:
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
            handle.flush()
        self._handle = handle
        return True

    def holder(self) -> str:
        """Who holds (or last held) the lock, as it wrote itself down."""
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or "another process"
        return "another process"

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _link_config(home: Path) -> None:
    """``home/dagster.yaml``: the repo's file linked, or rendered for ``$DAGSTER_PG_URL``."""
    config = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    # Replaced in one rename, never removed first: a daemon, code server or run worker opening the
    # instance meanwhile would find no file and fall back to SQLite without a word.
    staged = home / f".dagster.yaml.{os.getpid()}"
    staged.unlink(missing_ok=True)
    if os.environ.get(POSTGRES_URL_ENV):
        import yaml

        rendered = yaml.safe_load(source.read_text())
        rendered["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
        header = f"# Rendered from {source}, storage on ${POSTGRES_URL_ENV}.\n"
        text = header + yaml.safe_dump(rendered)
        if config.is_symlink() or not config.exists() or config.read_text() != text:
            staged.write_text(text)
            staged.replace(config)
    elif source.exists() and not (config.is_symlink() and config.resolve() == source.resolve()):
        staged.symlink_to(source)  # none yet, or a PostgreSQL rendering: back to the default
        staged.replace(config)
