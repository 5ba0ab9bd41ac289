"""substrate_sensor (one parent per substrate version) and the watermark gate (open only at N for all).

Real Delta control tables and a real (temporary) Dagster instance; stream
progress is set by writing each consumer's watermarks exactly as a finished
stream run would (``advance_watermarks`` to the versions a run pinned to N reads).
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from margin_pipeline.defs.job_of_jobs.sensors import (
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    gate_request,
    substrate_sensor,
    watermark_gate,
)
from margin_pipeline.gold import HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.half_hourly import HALF_HOURLY
from margin_pipeline.streams.monthly import MONTHLY
from margin_pipeline.streams.reconciled import RECONCILED
from margin_pipeline.streams.settlement import SETTLEMENT
from margin_pipeline.streams.shared.runner import source_targets
from margin_pipeline.streams.shared.stream import Stream
from margin_pipeline.streams.shared.watermarks import advance_watermarks
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline.substrate.versions import resolve_pin
from margin_pipeline.synthetic import Scenario, generate_history
from margin_pipeline_tests.helpers import csv, idle_job

PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"


def prices(day: str, run: str, price: float) -> str:
    return csv(PRICES, *(f"{day},{p},{run},{price}" for p in range(1, 49)))


@pytest.fixture
def history(data_root, publish, store) -> int:
    """A small synthetic history (every feed) ingested as substrate version 1."""
    generate_history(data_root.landing, Scenario(meters=3, days=2, seed=1))
    number = publish({})
    for output in (
        SETTLEMENT_COST_HH,
        HH_REVENUE,
    ):  # hh_margin's inputs, as the streams' first runs leave them
        store.ensure_table(output)
    return number


def consume(store: DeltaRsStore, stream: Stream, number: int) -> None:
    """Record ``stream`` as having consumed substrate version ``number`` (what its run's finish does)."""
    pin = resolve_pin(store, number)
    for consumer in stream.consumers:
        targets = source_targets(store, consumer.sources, pin)
        advance_watermarks(store, consumer.watermark, targets, number, "test")


class SensorHarness:
    """Evaluates a sensor tick after tick, carrying its cursor like the daemon does."""

    def __init__(self, sensor, instance: dg.DagsterInstance, store: DeltaRsStore) -> None:
        self.sensor, self.instance, self.store = sensor, instance, store
        self.cursor: str | None = None

    def tick(self) -> dg.RunRequest | dg.SkipReason:
        context = dg.build_sensor_context(
            instance=self.instance,
            resources={"store": self.store},
            cursor=self.cursor,
            sensor_name=self.sensor.name,
        )
        result = self.sensor(context)
        self.cursor = context.cursor
        return result

    def materialized(self, key: dg.AssetKey) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(key))

    def launched(self, request: dg.RunRequest) -> str:
        """What the daemon does with a request: a run tagged with its run key and this sensor."""
        tags = {RUN_KEY_TAG: str(request.run_key), SENSOR_NAME_TAG: self.sensor.name}
        return idle_job.execute_in_process(instance=self.instance, tags=tags).run_id


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_substrate_sensor_requests_one_parent_per_substrate_version(publish, store, instance) -> None:
    sensor = SensorHarness(substrate_sensor, instance, store)
    assert isinstance(sensor.tick(), dg.SkipReason)  # nothing ingested, nothing materialized

    assert publish({"prices": prices("2025-10-01", "SF", 50.0)}) == 1
    sensor.materialized(SUBSTRATE["prices"].asset_key)
    first = sensor.tick()
    assert isinstance(first, dg.RunRequest)
    assert first.run_key == "substrate@1"
    assert first.run_config["ops"]["pin_substrate"]["config"]["substrate_version"] == 1
    assert isinstance(sensor.tick(), dg.SkipReason), "no new materialization: no request"
    parent_run = sensor.launched(first)

    # Another materialization without a new version: one version starts one parent, and the tick
    # says which (the daemon would drop a repeated run_key, recording a skip with no reason).
    sensor.materialized(SUBSTRATE["prices"].asset_key)
    again = sensor.tick()
    assert isinstance(again, dg.SkipReason), again
    assert f"run {parent_run} (success) was already launched for run_key substrate@1" in again.skip_message
    assert "N=1" in again.skip_message

    for stream in (SETTLEMENT, HALF_HOURLY, MONTHLY):
        consume(store, stream, 1)
    sensor.materialized(SUBSTRATE["prices"].asset_key)
    consumed = sensor.tick()
    assert (
        isinstance(consumed, dg.SkipReason)
        and "every stream has consumed N=1: nothing for margin_job_of_jobs to run" in consumed.skip_message
    )

    assert publish({"prices": prices("2025-10-01", "R1", 51.0)}) == 2
    sensor.materialized(SUBSTRATE["prices"].asset_key)
    second = sensor.tick()
    assert isinstance(second, dg.RunRequest) and second.run_key == "substrate@2"


def test_gate_opens_only_when_every_stream_has_consumed_n(history, publish, store) -> None:
    assert history == 1
    closed = gate_request(store)
    assert isinstance(closed, dg.SkipReason)
    assert "gate closed for N=1" in closed.skip_message and "settlement is behind" in closed.skip_message

    consume(store, SETTLEMENT, 1)
    consume(store, HALF_HOURLY, 1)
    closed = gate_request(store)
    assert isinstance(closed, dg.SkipReason)
    assert "monthly is behind" in closed.skip_message and "settlement is behind" not in closed.skip_message

    consume(store, MONTHLY, 1)
    opened = gate_request(store)
    assert isinstance(opened, dg.RunRequest)
    assert opened.run_key.startswith("hh_margin@1:")
    assert all(cfg["config"]["substrate_version"] == 1 for cfg in opened.run_config["ops"].values())

    consume(store, RECONCILED, 1)
    done = gate_request(store)
    assert isinstance(done, dg.SkipReason) and "already reflects N=1" in done.skip_message

    # N=2 restates prices: settlement has not consumed it yet, so the gate is closed again,
    # even though the other two streams have nothing new to read.
    assert publish({"prices": prices("2025-10-01", "RF", 51.0)}) == 2
    consume(store, HALF_HOURLY, 2)
    consume(store, MONTHLY, 2)
    closed = gate_request(store)
    assert (
        isinstance(closed, dg.SkipReason)
        and "settlement is behind substrate version 2" in closed.skip_message
    )


def test_watermark_gate_sensor_acts_on_stream_publications(history, store, instance) -> None:
    sensor = SensorHarness(watermark_gate, instance, store)
    for stream in (SETTLEMENT, HALF_HOURLY, MONTHLY):
        consume(store, stream, 1)
    assert isinstance(sensor.tick(), dg.SkipReason), "no stream published yet"
    sensor.materialized(MONTHLY.tables[-1].asset_key)
    request = sensor.tick()
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("hh_margin@1:")
    reconciled = sensor.launched(request)

    # A stream publishes again (a hand-launched run) before reconciled has consumed N: the same
    # inputs, so the same run_key, and the tick names the run that already publishes them.
    sensor.materialized(SETTLEMENT.tables[-1].asset_key)
    again = sensor.tick()
    assert isinstance(again, dg.SkipReason), again
    assert (
        f"run {reconciled} (success) was already launched for run_key {request.run_key}" in again.skip_message
    )


def test_the_gate_cursor_names_what_it_has_seen(history, store, instance) -> None:
    """A person reading a tick can tell what the gate had seen: its cursor is, per stream output, the
    event storage id of the last materialization it saw."""
    sensor = SensorHarness(watermark_gate, instance, store)
    sensor.tick()
    assert sensor.cursor == "{}"
    sensor.materialized(SETTLEMENT.tables[0].asset_key)
    sensor.tick()
    seen = json.loads(sensor.cursor or "")
    assert list(seen) == ["gold/settlement_cost_hh"] and isinstance(seen["gold/settlement_cost_hh"], int)
