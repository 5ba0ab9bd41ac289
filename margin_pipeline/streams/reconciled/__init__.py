"""The reconciled layer: ``hh_margin``, published once every stream has consumed one substrate version.

:mod:`.rules` holds the rule, :mod:`.output` what a run reads and writes; :data:`RECONCILED`
is its descriptor. The watermark gate (``margin_pipeline.defs.job_of_jobs.sensors``) decides
*when* it runs; this package only says *what* it computes.
"""

import datetime as dt

from margin_pipeline.streams.reconciled.output import HH_MARGIN_OUTPUT, ReconciledProfile
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Output, Stream

RECONCILED = Stream(
    name="reconciled",
    job_name="reconciled",
    owner="team:finance",
    description="Publish hh_margin, the reconciled layer.",
    profile=ReconciledProfile,
    sla=Sla(freshness=dt.timedelta(hours=5), warn=dt.timedelta(hours=3), max_runtime=dt.timedelta(hours=1)),
    outputs=[
        Output.of(
            HH_MARGIN_OUTPUT,
            "Half-hourly margin of HH-tariff days: revenue minus cost for the keys present in both "
            "hh_revenue and settlement_cost_hh. Published only once settlement, half_hourly and monthly "
            "have all consumed the same substrate version (docs/contract.md, 'hh_margin').",
        )
    ],
    after=("settlement", "half_hourly", "monthly"),
    gated=True,
)
