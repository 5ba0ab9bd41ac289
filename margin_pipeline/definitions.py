"""The one entry point of the code location: builds ``Definitions`` from the parts."""

import dagster as dg

from margin_pipeline.resources import build_resources
from margin_pipeline.streams.settlement.assets import settlement_cost_hh, settlement_stream
from margin_pipeline.substrate.assets import ingest_job, ingest_landing
from margin_pipeline.substrate.sensor import landing_sensor


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[ingest_landing, settlement_cost_hh],
        jobs=[ingest_job, settlement_stream],
        sensors=[landing_sensor],
        resources=build_resources(),
    )


defs = build_definitions()
