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
        "substrate/publication_runs",
    }
    assert all(specs[k].description for k in substrate)


def test_sensors_target_their_jobs_and_start_running() -> None:
    """The event-driven chain: files -> ingest -> parent -> (children) -> gate -> reconciled."""
    targets = {
        "landing_sensor": "ingest",
        "substrate_sensor": "margin_job_of_jobs",
        "watermark_gate": "reconciled",
    }
    for name, job in targets.items():
        sensor = defs.resolve_sensor_def(name)
        assert sensor.job_name == job
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


#: The sensor daemon starts a loop over its sensors every 5 s at the most often (Dagster's own pace).
DAEMON_LOOP_SECONDS = 5


def test_the_sensors_that_carry_the_chain_are_due_on_every_daemon_loop() -> None:
    """A sensor's interval is counted from its last tick's start, and within a loop the daemon evaluates
    sensors one after another: an interval of one loop (5 s) is not yet over at the next loop whenever
    the last tick started later in its loop, so the sensor waits a loop more (ticks 10 s apart, each
    hop of the chain up to 10 s late). Due on every loop needs an interval shorter than a loop by more
    than the loop's own jitter."""
    for name in ("landing_sensor", "substrate_sensor", "watermark_gate"):
        interval = defs.resolve_sensor_def(name).minimum_interval_seconds
        assert interval is not None and interval <= DAEMON_LOOP_SECONDS / 2, (name, interval)


def test_parent_graph_runs_two_streams_side_by_side_then_monthly() -> None:
    job = defs.resolve_job_def("margin_job_of_jobs")
    deps = job.graph.dependency_structure
    upstream = {
        n: sorted({o.node_name for o in deps.all_upstream_outputs_from_node(n)}) for n in job.graph.node_dict
    }
    assert upstream == {
        "pin_substrate": [],
        "settlement": ["pin_substrate"],
        "half_hourly": ["pin_substrate"],
        "monthly": ["half_hourly", "pin_substrate", "settlement"],
        "summary": ["half_hourly", "monthly", "settlement"],
    }


def test_asset_graph_snapshot() -> None:
    """The whole graph: an accidental change to what depends on what shows up here in review."""
    graph = {
        s.key.to_user_string(): (s.group_name, sorted(d.asset_key.to_user_string() for d in s.deps))
        for s in defs.resolve_all_asset_specs()
        if s.group_name != "substrate"
    }
    assert graph == {
        "gold/settlement_cost_hh": (
            "settlement",
            [
                "substrate/charges",
                "substrate/metering_points",
                "substrate/prices",
                "substrate/publication_runs",
                "substrate/settlement_volumes",
            ],
        ),
        "gold/hh_revenue": (
            "half_hourly",
            [
                "substrate/metering_points",
                "substrate/settlement_volumes",
                "substrate/supply_agreements",
                "substrate/tariff_rates",
                "substrate/tariffs",
            ],
        ),
        "silver/monthly_day_ledger": (
            "monthly",
            [
                "gold/hh_revenue",
                "gold/settlement_cost_hh",
                "substrate/metering_points",
                "substrate/publication_runs",
                "substrate/settlement_volumes",
                "substrate/supply_agreements",
                "substrate/tariff_rates",
                "substrate/tariffs",
            ],
        ),
        "gold/monthly_margin": ("monthly", ["silver/monthly_day_ledger", "substrate/supply_agreements"]),
        # Written by monthly_margin's commit step (the same graph, so the same inputs); it also reads
        # monthly_margin's change feed and the substrate at the two versions it explains.
        "gold/margin_bridge": ("monthly", ["silver/monthly_day_ledger", "substrate/supply_agreements"]),
        # Reads hh_revenue and settlement_cost_hh; published after every stream's outputs (the gate).
        "gold/hh_margin": (
            "reconciled",
            [
                "gold/hh_revenue",
                "gold/monthly_margin",
                "gold/settlement_cost_hh",
                "silver/monthly_day_ledger",
            ],
        ),
    }


def test_each_stream_is_its_own_job_with_its_own_tag() -> None:
    jobs = {j.name: j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert {name: j.tags.get("margin_pipeline/stream") for name, j in jobs.items()} == {
        "margin_job_of_jobs": "parent",
        "ingest": "ingest",
        "settlement_stream": "settlement",
        "half_hourly_stream": "half_hourly",
        "monthly_stream": "monthly",
        "reconciled": "reconciled",
        "table_maintenance": "maintenance",
    }


def test_stream_profiles_are_their_own_run_config() -> None:
    """Each stream's launchpad shows its own profile, with its own defaults."""
    from margin_pipeline.streams.half_hourly.profile import HalfHourlyProfile
    from margin_pipeline.streams.monthly.profile import MonthlyProfile
    from margin_pipeline.streams.settlement.profile import SettlementProfile

    defaults = {
        p.__name__: p().shuffle_partitions for p in (SettlementProfile, HalfHourlyProfile, MonthlyProfile)
    }
    assert defaults == {"SettlementProfile": 8, "HalfHourlyProfile": 4, "MonthlyProfile": 2}
    job = defs.resolve_job_def("settlement_stream")
    fields = job.run_config_schema.config_type.fields["ops"].config_type.fields
    assert (
        "shuffle_partitions"
        in fields["gold__settlement_cost_hh"].config_type.fields["config"].config_type.fields
    )


def test_monthly_margin_fans_out_over_months() -> None:
    """monthly_margin is plan -> one mapped step per month -> commit -> bridge, the steps in the run's
    process; the graph still takes the stream's profile as its config, like every other stream output."""
    job = defs.resolve_job_def("monthly_stream")
    graph = job.graph.node_named("gold__monthly_margin").definition
    nodes = sorted(n.name for n in graph.nodes)
    assert nodes == ["margin_bridge", "margin_commit", "margin_month", "margin_months"]
    assert graph.node_named("margin_months").definition.output_def_named("months").is_dynamic
    resolved = dg.validate_run_config(
        job, {"ops": {"gold__monthly_margin": {"config": {"substrate_version": 3}}}}
    )
    assert list(resolved["execution"]) == ["in_process"]
    assert resolved["ops"]["gold__monthly_margin.margin_months"]["config"]["substrate_version"] == 3


def test_no_job_starts_step_processes() -> None:
    """A step process costs a Python start and an import of the code location: every job runs its
    steps in the run's process, the parent too (its children run side by side as runs of their own)."""
    executors = {job.name: job.executor_def.name for job in defs.resolve_all_job_defs()}
    assert set(executors.values()) == {"in_process"}, executors
