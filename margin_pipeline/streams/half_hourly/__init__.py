"""Half-hourly stream: half-hourly revenue of MPAN-days on HH tariffs (``hh_revenue``).

:mod:`.rules` holds the business rules, :mod:`.output` what a run of the output reads and
writes, :mod:`.profile` its tuning profile; :data:`HALF_HOURLY` is the stream's descriptor.
"""

import datetime as dt

from margin_pipeline.streams.half_hourly.output import REVENUE
from margin_pipeline.streams.half_hourly.profile import HalfHourlyProfile
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Output, Stream

HALF_HOURLY = Stream(
    name="half_hourly",
    job_name="half_hourly_stream",
    owner="team:pricing",
    description="Half-hourly stream: revenue of HH-tariff days, from the substrate change feed.",
    profile=HalfHourlyProfile,
    sla=Sla(
        freshness=dt.timedelta(hours=2), warn=dt.timedelta(hours=1), max_runtime=dt.timedelta(minutes=90)
    ),
    outputs=[
        Output.of(
            REVENUE,
            "Half-hourly revenue (ex VAT) of MPAN-days on HH tariffs: kWh at the half-hour's unit rate "
            "plus the day's standing charge spread over its periods (docs/contract.md, "
            "'Half-hourly revenue').",
        )
    ],
)
