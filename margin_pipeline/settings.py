"""Where a deployment keeps its data: one root folder, ``$MARGIN_PIPELINE_ROOT``.

Layout (docs/contract.md, 'Data root'): ``landing/<feed>/`` dropped files, ``quarantine/<feed>/``
rejected files with ``<file>.error.json``, ``archive/<feed>/`` files that were
applied (kept, never deleted), ``lake/`` Delta tables (``substrate/``, ``gold/``,
``control/``) and ``dagster/`` the Dagster instance home.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

ROOT_ENV = "MARGIN_PIPELINE_ROOT"
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
    """Point ``DAGSTER_HOME`` at ``<root>/dagster``, linking the repo's one ``dagster.yaml`` into it.

    Instance state (run history, event logs, compute logs) thus lives under the data
    root, never in the source tree, while ``dagster.yaml`` stays a single versioned file.
    """
    home = root / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if source.exists() and not link.exists():
        link.symlink_to(source)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault(ROOT_ENV, str(root))
    return home
