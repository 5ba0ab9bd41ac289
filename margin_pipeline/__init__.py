"""margin_pipeline: supplier margin under MHHS, as a Dagster code location over Delta Lake."""

from importlib.metadata import version

__version__ = version("margin_pipeline")
