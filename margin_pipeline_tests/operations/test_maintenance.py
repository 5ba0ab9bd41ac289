"""table_maintenance: compaction and vacuum that never break a lagging stream's change-feed read."""

from __future__ import annotations

import datetime as dt

from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import SETTLEMENT_COST_HH
from margin_pipeline.operations.maintenance import MaintenanceConfig, maintain, retention_hours
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline_tests.helpers import csv, metadata_of, read

settlement_cost_hh = ASSETS["settlement_cost_hh"]

MPAN = "1200000000002"
DAY = "2025-10-01"
VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"
NOW = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)


def volumes(run: str, kwh: float) -> str:
    return csv(VOLUMES, *(f"{MPAN},{DAY},{p},{run},{kwh},A" for p in range(1, 49)))


BASE = {
    "metering_points": csv("mpan_core,gsp_group,line_loss_factor", f"{MPAN},_A,1.05"),
    "prices": csv(
        "settlement_date,settlement_period,run_type,price_gbp_per_mwh",
        *(f"{DAY},{p},SF,50" for p in range(1, 49)),
    ),
    "settlement_volumes": volumes("SF", 0.1),
}


def test_retention_reaches_back_to_the_oldest_commit_a_stream_needs() -> None:
    assert retention_hours(None, NOW, 168) == 168
    assert retention_hours(NOW - dt.timedelta(days=10), NOW, 168) == 241  # 240 h old, plus an hour's margin
    assert retention_hours(NOW - dt.timedelta(minutes=5), NOW, 0) == 2


def lag_behind_restatements(publish, materialize) -> None:
    """Settlement last ran before any volumes; then SF arrived (an insert-only commit, whose change
    rows are read from its data files) and R1 and R2 rewrote those files, leaving them unreferenced."""
    publish({k: v for k, v in BASE.items() if k != "settlement_volumes"})
    assert materialize([settlement_cost_hh]).success
    publish({"settlement_volumes": volumes("SF", 0.1)})
    publish({"settlement_volumes": volumes("R1", 0.2)})
    publish({"settlement_volumes": volumes("R2", 0.3)})


def test_protected_vacuum_keeps_a_lagging_streams_change_feed(publish, materialize, store) -> None:
    lag_behind_restatements(publish, materialize)
    result = maintain(
        store, "settlement_volumes", MaintenanceConfig(min_retention_hours=0), dt.datetime.now(dt.UTC)
    )
    assert result["vacuum_retention_hours"] >= 1
    assert result["files_after"] <= result["files_before"]

    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "incremental"
    assert {r["run_type"] for r in read(store, SETTLEMENT_COST_HH)} == {"R2"}


def test_vacuum_retention_covers_the_lagging_watermark(publish, materialize, store) -> None:
    """delta-rs keeps every MERGE's change rows in _change_data/, which its vacuum leaves alone, so here
    only the retention arithmetic can be checked; on Delta-on-Spark, insert-only commits are read from
    data files and _change_data expires with retention, which is what the watermark floor protects."""
    lag_behind_restatements(publish, materialize)
    result = maintain(
        store, "settlement_volumes", MaintenanceConfig(min_retention_hours=0), dt.datetime.now(dt.UTC)
    )
    created = store.history(SUBSTRATE["settlement_volumes"])[-1]["timestamp"] / 1000
    age_hours = (dt.datetime.now(dt.UTC).timestamp() - created) / 3600
    assert result["vacuum_retention_hours"] >= age_hours


def test_compaction_adds_no_change_feed_rows(publish, materialize, store) -> None:
    lag_behind_restatements(publish, materialize)
    spec = SUBSTRATE["settlement_volumes"]
    before = store.version(spec)
    maintain(store, "settlement_volumes", MaintenanceConfig(vacuum=False), NOW)
    assert store.read_changes_arrow(spec, before, store.version(spec)).num_rows == 0
