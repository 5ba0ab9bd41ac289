"""The one entry point of the code location: every definition under ``margin_pipeline/defs``.

``workspace.yaml``, ``[tool.dagster]`` and ``[tool.dg]`` (pyproject.toml) all point here, so
``dagster dev``, ``dagster job launch``, ``dg dev``, ``dg check defs`` and the daemon load the
same definitions.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
