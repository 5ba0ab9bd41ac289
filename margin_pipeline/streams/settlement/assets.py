"""The settlement stream's asset and job (its plan is :mod:`.plan`)."""

from margin_pipeline.streams.settlement.plan import COST, STREAM
from margin_pipeline.streams.shared.assets import stream_asset, stream_job

settlement_cost_hh = stream_asset(
    COST,
    description="Half-hourly industry cost of every MPAN with volumes: energy at the wholesale price plus "
    "network, balancing and policy charges (contracts.md 'Settlement cost').",
)

settlement_stream = stream_job(
    "settlement_stream",
    STREAM,
    "Settlement stream: half-hourly cost for every meter, from the substrate change feed.",
)
