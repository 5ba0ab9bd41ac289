"""The code location loads, and its graph is what we mean it to be (a snapshot of specs and jobs)."""

from __future__ import annotations

import dagster as dg

from margin_pipeline.definitions import defs


def test_definitions_load_and_resolve() -> None:
    defs.resolve_all_job_defs()
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"ingest"}


def test_substrate_asset_specs() -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    substrate = {k for k, s in specs.items() if s.group_name == "substrate"}
    assert substrate == {
        "substrate/metering_points",
        "substrate/tariffs",
        "substrate/tariff_rates",
        "substrate/supply_agreements",
        "substrate/charges",
        "substrate/prices",
        "substrate/settlement_volumes",
    }
    assert all(specs[k].description for k in substrate)


def test_landing_sensor_targets_ingest_and_starts_running() -> None:
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.job_name == "ingest"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
