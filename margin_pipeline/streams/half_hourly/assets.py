"""The half_hourly stream's asset and job (its plan is :mod:`.plan`)."""

from margin_pipeline.streams.half_hourly.plan import REVENUE, STREAM
from margin_pipeline.streams.shared.assets import stream_asset, stream_job

hh_revenue_asset = stream_asset(
    REVENUE,
    description="Half-hourly revenue (ex VAT) of MPAN-days on HH tariffs: kWh at the half-hour's unit rate "
    "plus the day's standing charge spread over its periods (contracts.md 'Revenue').",
)

half_hourly_stream = stream_job(
    "half_hourly_stream",
    STREAM,
    "Half-hourly stream: revenue of HH-tariff days, from the substrate change feed.",
)
