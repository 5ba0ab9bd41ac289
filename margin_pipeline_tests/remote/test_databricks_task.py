"""The Databricks run each stream submits, built from its profile, and switching one stream's engine."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from margin_pipeline.definitions import defs
from margin_pipeline.defs.job_of_jobs.parent import ParentConfig
from margin_pipeline.defs.streams.assets import run_config
from margin_pipeline.streams.monthly.profile import MonthlyProfile
from margin_pipeline.streams.registry import CHILD_STREAMS, STREAMS
from margin_pipeline.streams.settlement.profile import SettlementProfile
from margin_pipeline.streams.shared.compute import ENTRY_POINT, WHEEL_NAME, submit_task

SECRET = "dapi-not-a-real-token-0123456789"
LAKE = "abfss://lake@account.dfs.core.windows.net/margin"


def test_settlement_task_is_an_autoscaling_job_cluster_running_the_wheel() -> None:
    profile = SettlementProfile(engine="databricks", substrate_version=7, databricks={"lake_root": LAKE})
    task = submit_task("gold/settlement_cost_hh", profile).as_dict()
    cluster = task["new_cluster"]
    assert cluster["node_type_id"] == "Standard_E8ds_v5"
    assert cluster["autoscale"] == {"min_workers": 2, "max_workers": 8}
    assert "num_workers" not in cluster
    # The profile's SQL settings travel as cluster Spark conf.
    assert cluster["spark_conf"]["spark.sql.shuffle.partitions"] == "8"
    assert cluster["spark_conf"]["spark.sql.autoBroadcastJoinThreshold"] == str(64 * 1024 * 1024)
    assert task["libraries"] == [{"whl": f"/Volumes/main/margin_pipeline/artifacts/{WHEEL_NAME}"}]
    assert task["python_wheel_task"] == {
        "package_name": "margin_pipeline",
        "entry_point": ENTRY_POINT,
        "parameters": ["--transport", "dbfs"],
    }
    assert task["task_key"] == "gold__settlement_cost_hh"


def test_monthly_task_is_a_small_fixed_cluster_and_pools_replace_node_types() -> None:
    task = submit_task("gold/monthly_margin", MonthlyProfile(engine="databricks")).as_dict()
    assert (task["new_cluster"]["node_type_id"], task["new_cluster"]["num_workers"]) == (
        "Standard_D4ds_v5",
        2,
    )
    pooled = MonthlyProfile(databricks={"instance_pool_id": "pool-1", "spark_conf": {"k": "v"}})
    cluster = submit_task("gold/monthly_margin", pooled).as_dict()["new_cluster"]
    assert cluster["instance_pool_id"] == "pool-1" and "node_type_id" not in cluster
    assert cluster["spark_conf"]["k"] == "v"


def test_no_credential_reaches_the_task_or_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads DATABRICKS_TOKEN from the environment; nothing we send carries it."""
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-1.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_TOKEN", SECRET)
    profile = SettlementProfile(engine="databricks", databricks={"lake_root": LAKE})
    sent = json.dumps(
        {"task": submit_task("gold/settlement_cost_hh", profile).as_dict(), "profile": profile.model_dump()}
    )
    assert SECRET not in sent and "DATABRICKS_TOKEN" not in sent
    fields = set(SettlementProfile.model_fields) | set(type(profile.cluster()).model_fields)
    assert not {f for f in fields if "token" in f or "password" in f or "secret" in f}


def test_switching_one_stream_to_databricks_changes_nothing_else() -> None:
    """The engine is run config: same definitions, same parent graph, the other children's configs equal."""
    default = ParentConfig()
    switched = ParentConfig(settlement=SettlementProfile(engine="databricks", databricks={"lake_root": LAKE}))
    for stream in (STREAMS["half_hourly"], STREAMS["monthly"]):
        before, after = getattr(default, stream.name), getattr(switched, stream.name)
        assert run_config(stream, after) == run_config(stream, before), stream.name
    config = run_config(STREAMS["settlement"], switched.settlement)
    job = defs.resolve_job_def(STREAMS["settlement"].job_name)
    resolved = dg.validate_run_config(job, config)  # the launchpad accepts it as it is
    assert resolved["ops"]["gold__settlement_cost_hh"]["config"]["engine"] == "databricks"
    for stream in CHILD_STREAMS:  # each job is defined once, whatever its engine
        assert defs.resolve_job_def(stream.job_name).tags["margin_pipeline/stream"] == stream.name


def test_the_cluster_side_needs_no_orchestrator_package() -> None:
    """What a job cluster imports (the entry point, every plan, the monthly for-each) works without the
    packages only the orchestrator installs: the wheel's own dependencies are enough there."""
    import subprocess
    import sys

    probe = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"dagster_pyspark", "dagster_databricks", "dagster_webserver", "delta"}:
            raise ImportError(f"{name} is not on a job cluster")
sys.meta_path.insert(0, Block())
from margin_pipeline.remote import entry
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.streams.monthly.months import refresh_margin
print(sorted(o.table.name for s in STREAMS.values() for o in s.outputs))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "gold/settlement_cost_hh" in done.stdout and "silver/monthly_day_ledger" in done.stdout


def test_tables_by_path_or_by_unity_catalog_name() -> None:
    from margin_pipeline.gold import HH_MARGIN
    from margin_pipeline.remote.launch import delta_spark_store
    from margin_pipeline.store.delta_spark import DeltaSparkStore

    by_path = delta_spark_store(SettlementProfile(databricks={"lake_root": LAKE}).cluster(), "x")
    assert (by_path["lake_root"], by_path["catalog"]) == (LAKE, "")
    assert DeltaSparkStore(**{k: v for k, v in by_path.items() if k != "kind"}).table_name(HH_MARGIN) is None

    uc = SettlementProfile(databricks={"catalog": "main", "schema_name": "margin"}).cluster()
    store = DeltaSparkStore(**{k: v for k, v in delta_spark_store(uc, "x").items() if k != "kind"})
    assert store.table_name(HH_MARGIN) == "main.margin.gold_hh_margin"

    with pytest.raises(dg.Failure, match=r"needs databricks\.lake_root"):
        delta_spark_store(SettlementProfile().cluster(), "gold/settlement_cost_hh")


def test_the_launchpad_shows_no_cluster_until_a_stream_goes_to_databricks() -> None:
    """The parent's default config has no Databricks block (each child's ``databricks`` is null); a
    databricks run without one gets its stream's cluster defaults, and a partial block keeps them."""
    from margin_pipeline.streams.monthly.profile import MonthlyCompute
    from margin_pipeline.streams.settlement.profile import SettlementCompute

    job = defs.resolve_job_def("margin_job_of_jobs")
    config = dg.validate_run_config(job, {})["ops"]["pin_substrate"]["config"]
    assert all(config[s.name]["databricks"] is None for s in CHILD_STREAMS)
    assert SettlementProfile(engine="databricks").cluster() == SettlementCompute()
    partial = MonthlyProfile(databricks={"lake_root": LAKE}).cluster()
    assert partial == MonthlyCompute(lake_root=LAKE) and partial.node_type_id == MonthlyCompute().node_type_id
