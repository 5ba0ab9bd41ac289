"""The remote entry point end to end through Dagster Pipes, on this machine.

The ``pipes_subprocess`` engine runs :mod:`margin_pipeline.remote.entry` in a child process
(its own Spark session) exactly as a Databricks task runs it from the wheel, with the profile
and N as Pipes extras and the metadata back as a Pipes message. Its tables must equal those
of the local engine on the same substrate.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from margin_pipeline.gold import GOLD
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline_tests.helpers import (
    STREAM_OUTPUTS,
    assert_same_rows,
    deployment,
    rows_by_key,
    stream_assets,
    stream_resources,
)

pytestmark = pytest.mark.slow


def run_all(store: DeltaRsStore, engine: str) -> dict[str, dict]:
    """Materialize every stream output on ``engine``; returns each asset's metadata."""
    resources = stream_resources(store)
    config = {"ops": {a.node_def.name: {"config": {"engine": engine}} for a in stream_assets()}}
    result = dg.materialize(stream_assets(), resources=resources, run_config=config)
    assert result.success
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def test_pipes_subprocess_engine_publishes_what_the_local_engine_does(tmp_path: Path, spark) -> None:
    local_store, remote_store = deployment(tmp_path / "local"), deployment(tmp_path / "remote")
    local = run_all(local_store, "local")
    remote = run_all(remote_store, "pipes_subprocess")

    for name, spec in STREAM_OUTPUTS.items():
        assert_same_rows(rows_by_key(remote_store, spec), rows_by_key(local_store, spec), name)
    assert rows_by_key(remote_store, GOLD["hh_margin"]), "the comparison is over published rows"
    # The same figures come back through Pipes as the local engine records (the margin bridge's too:
    # the remote commit step writes it).
    for key, figures in local.items():
        assert set(remote[key]) == set(figures), key
        names = (
            ("mode", "bridge_rows", "account_months_moved", "from_version", "to_version")
            if key == "gold/margin_bridge"
            else ("mode", "sources", "rows_read", "full_rescan_rows", "rows_inserted", "keys_recomputed")
        )
        for name in names:
            assert remote[key][name] == figures[name], (key, name)

    # A replay through Pipes reads nothing and writes nothing.
    replay = run_all(remote_store, "pipes_subprocess")
    assert {k: (m["mode"], m.get("rows_read", 0)) for k, m in replay.items()} == {
        k: ("skipped (no changes)", 0) for k in local
    }
