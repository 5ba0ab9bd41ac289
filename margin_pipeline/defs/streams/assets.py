"""The stream assets and jobs, derived from the registry: one asset per output, one job per stream.

Outputs the shared runner refreshes get their asset from :func:`.factory.stream_asset`; the
monthly margin's for-each over months is built by hand in :mod:`.monthly_margin`. Each
stream's job selects its asset group and runs its steps in the run's process.
"""

from typing import Any

import dagster as dg

from margin_pipeline.defs.streams import monthly_margin
from margin_pipeline.defs.streams.factory import stream_asset, stream_job
from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.streams.shared.profile import StreamProfile
from margin_pipeline.streams.shared.stream import Stream

#: Assets built by hand (an output with steps of its own), by table short name.
BY_HAND: dict[str, dg.AssetsDefinition] = {MONTHLY_MARGIN.short_name: monthly_margin.monthly_margin_asset}

#: The asset of every stream output, by table short name (``hh_revenue``).
ASSETS: dict[str, dg.AssetsDefinition] = {
    o.table.short_name: stream_asset(s, o) if o.runner is not None else BY_HAND[o.table.short_name]
    for s in STREAMS.values()
    for o in s.outputs
}

#: The job of every stream, by stream name.
JOBS = {s.name: stream_job(s) for s in STREAMS.values()}


def run_config(stream: Stream, profile: StreamProfile) -> dict[str, Any]:
    """A run of ``stream``'s job with ``profile``: the profile is the config of each of its assets."""
    values = profile.model_dump(exclude_unset=False)
    return {"ops": {ASSETS[t.short_name].node_def.name: {"config": values} for t in stream.tables}}


defs = dg.Definitions(
    assets=[a for a in ASSETS.values() if a not in BY_HAND.values()], jobs=list(JOBS.values())
)
