"""Per-stream service levels: how soon a stream must consume a new substrate version, and how
long one of its runs may take.

- **Freshness**: the stream assets carry a Dagster ``FreshnessPolicy.time_window`` (shown in
  the UI; WARN / FAIL after ``warn`` / ``freshness`` without a materialization). Because a
  stream with nothing to consume is skipped, not re-materialized, "stale" for this pipeline
  means *lagging*: :func:`lagging` finds streams that have not consumed the latest recorded
  substrate version N within ``freshness`` of N being recorded, and ``sla_sensor`` alerts
  once per (stream, N).
- **Run duration**: every stream job carries ``dagster/max_runtime`` (seconds); run
  monitoring (``dagster.yaml``) cancels a run that exceeds it, and the run-failure alert
  reports it as an SLA breach.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from margin_pipeline.store.delta_rs import DeltaRsStore


@dataclass(frozen=True)
class Sla:
    freshness: dt.timedelta  # a recorded N must be consumed within this
    warn: dt.timedelta
    max_runtime: dt.timedelta  # one run of the stream's job

    def policy(self) -> dg.FreshnessPolicy:
        return dg.FreshnessPolicy.time_window(fail_window=self.freshness, warn_window=self.warn)

    def job_tags(self) -> dict[str, str]:
        return {"dagster/max_runtime": str(int(self.max_runtime.total_seconds()))}


# Settlement data lands through the day; a day's publication must be margin-ready within hours.
SLAS: dict[str, Sla] = {
    "settlement": Sla(dt.timedelta(hours=2), dt.timedelta(hours=1), dt.timedelta(minutes=90)),
    "half_hourly": Sla(dt.timedelta(hours=2), dt.timedelta(hours=1), dt.timedelta(minutes=90)),
    "monthly": Sla(dt.timedelta(hours=4), dt.timedelta(hours=2), dt.timedelta(hours=2)),
    "reconciled": Sla(dt.timedelta(hours=5), dt.timedelta(hours=3), dt.timedelta(hours=1)),
}
#: The parent waits for its children, so it may run as long as the slowest chain.
PARENT_MAX_RUNTIME = dt.timedelta(hours=4)


@dataclass(frozen=True)
class Lag:
    stream: str
    substrate_version: int
    recorded_at: dt.datetime
    waited: dt.timedelta
    sla: Sla
    behind: str  # which sources, as ``StreamProgress.describe`` says

    @property
    def key(self) -> str:
        return f"{self.stream}@{self.substrate_version}"


def lagging(store: DeltaRsStore, now: dt.datetime | None = None) -> list[Lag]:
    """Streams that have not consumed the latest substrate version within their freshness window."""
    from margin_pipeline.orchestration.progress import stream_progress
    from margin_pipeline.orchestration.streams import STREAMS
    from margin_pipeline.substrate.versions import latest_substrate_version, resolve_pin

    number = latest_substrate_version(store)
    if number is None:
        return []
    pin = resolve_pin(store, number)
    if pin.recorded_at is None:
        return []
    now = now or dt.datetime.now(dt.UTC)
    waited = now - pin.recorded_at
    lags = []
    for name, sla in SLAS.items():
        if waited <= sla.freshness:
            continue
        progress = stream_progress(store, STREAMS[name], pin)
        if not progress.consumed:
            lags.append(Lag(name, number, pin.recorded_at, waited, sla, progress.describe()))
    return lags
