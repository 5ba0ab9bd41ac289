"""The whole chain, run synchronously in this process: ingest, then each stream in dependency order.

Each step is its own Dagster run recorded in the instance, so the UI shows them
beside the runs sensors launch. The order is the streams' data dependencies:
settlement and half_hourly read only the substrate, monthly reads both of their
outputs, and the reconciled layer reads the two half-hourly outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

CHAIN: tuple[str, ...] = ("ingest", "settlement_stream", "half_hourly_stream", "monthly_stream", "reconciled")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class StepResult:
    job: str
    run_id: str
    success: bool
    seconds: float
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset key -> metadata values


def run_chain(
    defs: dg.Definitions, instance: dg.DagsterInstance, jobs: tuple[str, ...] = CHAIN
) -> list[StepResult]:
    """Run ``jobs`` one after another; stop at the first failure (nothing downstream of it runs)."""
    results: list[StepResult] = []
    for name in jobs:
        started = time.perf_counter()
        outcome = defs.resolve_job_def(name).execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET, tags={"margin_pipeline/chain": "cli"}
        )
        assets = {
            event.asset_key.to_user_string(): {k: v.value for k, v in event.materialization.metadata.items()}
            for event in outcome.get_asset_materialization_events()
        }
        results.append(
            StepResult(name, outcome.run_id, outcome.success, time.perf_counter() - started, assets)
        )
        if not outcome.success:
            break
    return results
