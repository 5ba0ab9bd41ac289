"""Operating the pipeline: retries, rollback, quality checks, alerts, SLAs, the run log, table maintenance."""
