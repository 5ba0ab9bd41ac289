"""Operating the pipeline: table maintenance (and, later, alerts, SLAs, rollback)."""
