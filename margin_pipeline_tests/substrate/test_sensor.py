"""landing_sensor: one run request per drop of files, deduplicated by cursor and run_key."""

from __future__ import annotations

import os
import time

import dagster as dg

from margin_pipeline.defs.ingest.sensor import landing_sensor
from margin_pipeline.settings import DataRoot
from margin_pipeline.substrate.ingest import SETTLE_SECONDS, drop_key
from margin_pipeline_tests.conftest import Drop


def evaluate(data_root: DataRoot, cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), cursor=cursor, resources={"data_root": data_root}
    )
    result = landing_sensor.evaluate_tick(context)
    return list(result.run_requests or []), result.cursor


def files_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["ingest_landing"]["config"]["files"]


def test_no_files_no_run(data_root: DataRoot) -> None:
    requests, _ = evaluate(data_root, None)
    assert requests == []


def test_new_files_request_one_ingest_run_in_ingest_order(data_root: DataRoot, drop: Drop) -> None:
    drop("settlement_volumes", "b.csv", "x")
    drop("metering_points", "a.csv", "x")
    requests, cursor = evaluate(data_root, None)
    assert len(requests) == 1
    assert files_of(requests[0]) == ["metering_points/a.csv", "settlement_volumes/b.csv"]
    assert requests[0].job_name in (None, "ingest")

    # Same files still waiting: nothing new, no second run.
    again, cursor_after = evaluate(data_root, cursor)
    assert again == []
    assert cursor_after == cursor


def test_only_the_new_file_is_requested_and_run_keys_differ(data_root: DataRoot, drop: Drop) -> None:
    drop("prices", "p1.csv", "x")
    first, cursor = evaluate(data_root, None)
    drop("prices", "p2.csv", "x")
    second, _ = evaluate(data_root, cursor)
    assert files_of(second[0]) == ["prices/p2.csv"]
    assert first[0].run_key != second[0].run_key


def test_redrop_after_ingest_is_a_new_request(data_root: DataRoot, drop: Drop) -> None:
    path = drop("tariffs", "t.csv", "x")
    first, cursor = evaluate(data_root, None)
    path.unlink()  # ingest moved it to archive
    _, cursor = evaluate(data_root, cursor)
    path = drop("tariffs", "t.csv", "xy")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    second, _ = evaluate(data_root, cursor)
    assert files_of(second[0]) == ["tariffs/t.csv"]
    assert second[0].run_key != first[0].run_key


def test_the_same_drop_has_a_stable_run_key(data_root: DataRoot, drop: Drop) -> None:
    drop("tariffs", "t.csv", "x")
    a, _ = evaluate(data_root, None)
    b, _ = evaluate(data_root, None)  # a lost cursor must not launch a different run for the same drop
    assert a[0].run_key == b[0].run_key


def test_files_outside_feed_folders_are_ignored(data_root: DataRoot, drop: Drop) -> None:
    drop("tariffs", "notes.txt", "x")
    (data_root.landing / "README.csv").write_text("x")
    requests, _ = evaluate(data_root, None)
    assert requests == []


def test_a_file_still_being_written_waits_until_it_has_settled(data_root: DataRoot) -> None:
    """A writer that cannot rename appends to prices/p.csv while the sensor ticks: no run is requested
    until the file has been unchanged for SETTLE_SECONDS, and then the complete file is requested."""
    folder = data_root.landing / "prices"
    folder.mkdir(parents=True)
    path = folder / "p.csv"
    path.write_text("settlement_date,settlement_period,run_type,price_gbp_per_mwh\n")
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"data_root": data_root}
    )
    first = landing_sensor.evaluate_tick(context)
    assert not first.run_requests and "1 file(s) still being written" in (first.skip_message or "")
    with path.open("a") as out:  # it grows: still being written
        out.write("2025-10-01,1,II,50.0\n")
    assert not landing_sensor.evaluate_tick(context).run_requests
    settled_at = time.time() - SETTLE_SECONDS - 1
    os.utime(path, (settled_at, settled_at))  # nothing written for longer than the settle window
    [request] = landing_sensor.evaluate_tick(context).run_requests
    assert files_of(request) == ["prices/p.csv"]
    assert request.run_config["ops"]["ingest_landing"]["config"]["seen"] == [drop_key(path)]
