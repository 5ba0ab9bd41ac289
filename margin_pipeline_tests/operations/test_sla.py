"""SLA breaches: a stream that has not consumed a recorded substrate version within its freshness window."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from margin_pipeline.defs.operations.sensors import sla_sensor
from margin_pipeline.operations.alerts import AlertsResource
from margin_pipeline.orchestration.runs import STREAM_TAG
from margin_pipeline.streams.progress import lagging
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.substrate.versions import resolve_pin
from margin_pipeline_tests.helpers import csv

#: With only substrate data, reconciled has nothing to consume (its sources are the streams' outputs).
BEHIND = {"settlement", "half_hourly", "monthly"}
POINTS = {"metering_points": csv("mpan_core,gsp_group,line_loss_factor", "1300000000007,_A,1.0")}


def test_lagging_streams_breach_only_after_their_own_window(publish, store) -> None:
    number = publish(POINTS)
    recorded = resolve_pin(store, number).recorded_at
    assert lagging(store, now=recorded + dt.timedelta(minutes=5)) == []
    just_past = recorded + STREAMS["settlement"].sla.freshness + dt.timedelta(minutes=1)
    assert {lag.stream for lag in lagging(store, now=just_past)} == {
        name for name, s in STREAMS.items() if s.sla.freshness < just_past - recorded and name in BEHIND
    }
    late = lagging(store, now=recorded + dt.timedelta(days=1))
    assert {lag.stream for lag in late} == BEHIND
    assert all(lag.substrate_version == number and "behind" in lag.behind for lag in late)


def test_sla_sensor_alerts_once_per_stream_and_version(publish, store, tmp_path, monkeypatch) -> None:
    publish(POINTS)
    sink = tmp_path / "alerts.jsonl"
    alerts = AlertsResource(jsonl_path=str(sink))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    real = lagging
    monkeypatch.setattr("margin_pipeline.defs.operations.sensors.lagging", lambda s: real(s, now=later))

    context = dg.build_sensor_context(resources={"store": store, "alerts": alerts})
    sla_sensor(context)
    first = [json.loads(line) for line in sink.read_text().splitlines()]
    assert sorted(a["stream"] for a in first) == sorted(BEHIND)
    assert all(a["kind"] == "sla" and "has not consumed substrate version" in a["title"] for a in first)

    again = dg.build_sensor_context(cursor=context.cursor, resources={"store": store, "alerts": alerts})
    sla_sensor(again)
    assert len(sink.read_text().splitlines()) == len(first), "one alert per (stream, N)"


def test_every_stream_job_carries_its_max_runtime() -> None:
    from margin_pipeline.definitions import defs

    for name, stream in STREAMS.items():
        sla = stream.sla
        job = defs.resolve_job_def(stream.job_name)
        assert job.tags[STREAM_TAG] == name
        assert job.tags["dagster/max_runtime"] == str(int(sla.max_runtime.total_seconds()))
