"""Settlement stream: half-hourly industry cost of every metering point (``settlement_cost_hh``).

:mod:`.rules` holds the business rules (pure DataFrame functions), :mod:`.output` what a run
of the output reads and writes, :mod:`.profile` its tuning profile; :data:`SETTLEMENT` is the
stream's descriptor, listed once in :mod:`margin_pipeline.streams.registry`.
"""

import datetime as dt

from margin_pipeline.streams.settlement.output import COST
from margin_pipeline.streams.settlement.profile import SettlementProfile
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Output, Stream

SETTLEMENT = Stream(
    name="settlement",
    job_name="settlement_stream",
    owner="team:settlement",
    description="Settlement stream: half-hourly cost for every meter, from the substrate change feed.",
    profile=SettlementProfile,
    # Settlement data lands through the day: a day's publication must be margin-ready within hours.
    sla=Sla(
        freshness=dt.timedelta(hours=2), warn=dt.timedelta(hours=1), max_runtime=dt.timedelta(minutes=90)
    ),
    outputs=[
        Output.of(
            COST,
            "Half-hourly industry cost of every MPAN with volumes: energy at the wholesale price plus "
            "network, balancing and policy charges (docs/contract.md, 'Settlement cost').",
        )
    ],
)
