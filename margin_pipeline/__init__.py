"""margin_pipeline: supplier margin under MHHS, as a Dagster code location over Delta Lake."""
