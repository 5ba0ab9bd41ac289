"""Monthly stream: monthly margin of every account (``monthly_margin``), via a per-MPAN-day ledger.

:mod:`.rules` holds the business rules, :mod:`.output` the day ledger's run, :mod:`.months` the
margin's for-each over affected months, :mod:`.bridge` the margin bridge its commit writes,
:mod:`.tables` its internal tables, :mod:`.profile` its tuning profile; :data:`MONTHLY` is the
stream's descriptor.
"""

import datetime as dt

from margin_pipeline.gold import MARGIN_BRIDGE, MONTHLY_MARGIN
from margin_pipeline.streams.monthly.months import MARGIN_SOURCES, MARGIN_WATERMARK, refresh_margin
from margin_pipeline.streams.monthly.output import LEDGER
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Consumer, Output, Stream

MONTHLY = Stream(
    name="monthly",
    job_name="monthly_stream",
    owner="team:finance",
    description="Monthly stream: per-MPAN-day ledger, then monthly margin per account, one step per "
    "affected month.",
    profile=MonthlyProfile,
    sla=Sla(freshness=dt.timedelta(hours=4), warn=dt.timedelta(hours=2), max_runtime=dt.timedelta(hours=2)),
    outputs=[
        Output.of(
            LEDGER,
            "Internal to the monthly stream: one row per supplied MPAN-day with volumes: meter kWh, "
            "revenue, cost, run type and whether the day contributes to its month.",
        ),
        Output(
            MONTHLY_MARGIN,
            Consumer(MARGIN_WATERMARK, MARGIN_SOURCES),
            refresh_margin,
            "Monthly margin of every account: kWh, revenue, cost and margin over the month's "
            "contributing MPAN-days, with the billing grain and whether the month is final "
            "(docs/contract.md, 'Monthly margin'). Recomputed as a for-each over the affected months.",
            companions=(MARGIN_BRIDGE,),
        ),
    ],
    after=("settlement", "half_hourly"),
)
