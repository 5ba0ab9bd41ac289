"""Per-stream service levels: how soon a stream must consume a new substrate version, and how
long one of its runs may take.

- **Freshness**: the stream assets carry a Dagster ``FreshnessPolicy.time_window`` (shown in
  the UI; WARN / FAIL after ``warn`` / ``freshness`` without a materialization). Because a
  stream with nothing to consume is skipped, not re-materialized, "stale" for this pipeline
  means *lagging*: :func:`margin_pipeline.streams.progress.lagging` finds streams that have
  not consumed the latest recorded substrate version N within ``freshness`` of N being
  recorded, and ``sla_sensor`` alerts once per (stream, N).
- **Run duration**: every stream job carries ``dagster/max_runtime`` (seconds); run
  monitoring (``dagster.yaml``) cancels a run that exceeds it, and the run-failure alert
  reports it as an SLA breach.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Sla:
    """A stream's service level (each stream's descriptor carries one)."""

    freshness: dt.timedelta  # a recorded N must be consumed within this
    warn: dt.timedelta
    max_runtime: dt.timedelta  # one run of the stream's job


#: The parent waits for its children, so it may run as long as the slowest chain.
PARENT_MAX_RUNTIME = dt.timedelta(hours=4)
