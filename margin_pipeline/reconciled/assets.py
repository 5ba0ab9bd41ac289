"""The reconciled layer's asset and job (its plan is :mod:`.plan`)."""

from margin_pipeline.reconciled.plan import HH_MARGIN_OUTPUT, STREAM
from margin_pipeline.streams.shared.assets import stream_asset, stream_job

hh_margin_asset = stream_asset(
    HH_MARGIN_OUTPUT,
    description="Half-hourly margin of HH-tariff days: revenue minus cost for the keys present in both "
    "hh_revenue and settlement_cost_hh. Published only once settlement, half_hourly and monthly have all "
    "consumed the same substrate version.",
)

reconciled_job = stream_job(
    "reconciled",
    STREAM,
    "Publish hh_margin (launched by the watermark gate once every stream has consumed N).",
)
