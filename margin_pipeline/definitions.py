"""The one entry point of the code location: builds ``Definitions`` from the parts."""

import dagster as dg

from margin_pipeline.executors import IN_RUN
from margin_pipeline.operations.maintenance import table_maintenance
from margin_pipeline.operations.sensors import alert_on_failure, run_log_sensor, sla_sensor
from margin_pipeline.orchestration.parent import margin_job_of_jobs
from margin_pipeline.orchestration.sensors import substrate_sensor, watermark_gate
from margin_pipeline.reconciled.assets import hh_margin_asset, reconciled_job
from margin_pipeline.resources import build_resources
from margin_pipeline.streams.half_hourly.assets import half_hourly_stream, hh_revenue_asset
from margin_pipeline.streams.monthly.assets import monthly_day_ledger, monthly_stream
from margin_pipeline.streams.monthly.margin import monthly_margin_asset
from margin_pipeline.streams.settlement.assets import settlement_cost_hh, settlement_stream
from margin_pipeline.substrate.assets import ingest_job, ingest_landing
from margin_pipeline.substrate.sensor import landing_sensor


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            ingest_landing,
            settlement_cost_hh,
            hh_revenue_asset,
            monthly_day_ledger,
            monthly_margin_asset,
            hh_margin_asset,
        ],
        jobs=[
            margin_job_of_jobs,
            ingest_job,
            settlement_stream,
            half_hourly_stream,
            monthly_stream,
            reconciled_job,
            table_maintenance,
        ],
        sensors=[
            landing_sensor,
            substrate_sensor,
            watermark_gate,
            alert_on_failure,
            sla_sensor,
            run_log_sensor,
        ],
        resources=build_resources(),
        executor=IN_RUN,
    )


defs = build_definitions()
