"""The parent job end to end on a real instance: a dagster-daemon, a queued run coordinator with the
repo's dagster.yaml limits, child runs launched as their own processes, real Delta and Spark.

Every deployment starts from the same substrate version 1 and must publish what a full recompute of
it publishes (the ``reference``). One uninterrupted deployment has its instance on PostgreSQL (a
server the module starts itself with ``pgserver``: PostgreSQL binaries in a wheel, on a unix socket),
as a deployment with several users runs; settlement is also launched twice by hand while the parent
runs it, and its tests share it (one xdist group, so one worker builds it under ``pytest -n``). In
others (SQLite, the default) a table only half_hourly reads is unavailable for a while (a storage
fault) and the parent is repaired from failure; runs are stopped from outside; the next day lands
mid-chain; the daemon is killed; and (PostgreSQL again, through ``$DAGSTER_PG_URL`` as
``margin-pipeline run`` reads it) every process is killed mid-chain.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import dagster as dg
import pytest
import yaml

from margin_pipeline.defs.job_of_jobs.sensors import gate_request
from margin_pipeline.engines import REMOTE_ENV, shared_engine
from margin_pipeline.gold import GOLD, SETTLEMENT_COST_HH
from margin_pipeline.operations.runlog import PIPELINE_RUNS
from margin_pipeline.orchestration.drive import (
    LOCATION,
    REPOSITORY,
    daemon,
    daemon_processes,
    follow_chain,
    graphql,
    launch,
    processes_of,
    reexecute_from_failure,
    wait_for_runs,
)
from margin_pipeline.orchestration.runs import (
    AUTO_RETRY_RUN_TAG,
    PARENT_JOB,
    PARENT_RUN_TAG,
    RunReport,
    report,
)
from margin_pipeline.orchestration.workers import process_started_at, worker_of
from margin_pipeline.settings import POSTGRES_URL_ENV, REPO_ROOT, ROOT_ENV, DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.substrate.ingest import ingest
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline.synthetic import Scenario, generate_history, generate_next_day
from margin_pipeline.synthetic.generator import state_path
from margin_pipeline_tests.helpers import (
    assert_same_rows,
    differences,
    full_recompute,
    rows_by_key,
    rows_doubled,
    wait_until,
)
from margin_pipeline_tests.helpers import (
    deployment as with_substrate,
)

pytestmark = pytest.mark.slow

SCENARIO = Scenario(meters=8, days=3, seed=11, start=dt.date(2025, 9, 29))  # two months: Sept and Oct
MONTH_STEP = "gold__monthly_margin.margin_month["
OUTPUTS = {**GOLD, "monthly_day_ledger": DAY_LEDGER}
#: Where the chain-fault tests write what each fault did (the reliability table of benchmarks/README.md).
RELIABILITY_ENV = "MARGIN_PIPELINE_RELIABILITY_OUT"

Survival = Callable[..., None]


@pytest.fixture(scope="module")
def survival() -> Iterator[Survival]:
    """``survival(fault, store, reference, seconds, tables=OUTPUTS)``: compares ``tables`` (default
    the four gold tables and the day ledger) of ``store`` with ``reference`` (rows lost: keys missing
    or with other values, 1e-6; doubled: keys in excess or held twice), records the fault with its
    time to recover, and asserts nothing was lost or doubled. With ``$MARGIN_PIPELINE_RELIABILITY_OUT``
    set, the records are written there as JSON when the module ends."""
    if os.environ.get(RELIABILITY_ENV) and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail(f"${RELIABILITY_ENV} gathers every fault of the module in one file: run it without -n")
    records: list[dict[str, Any]] = []

    def record(
        fault: str,
        store: DeltaRsStore,
        reference: DeltaRsStore,
        seconds: float | None,
        tables: dict[str, Any] = OUTPUTS,
    ) -> None:
        lost = doubled = 0
        for spec in tables.values():
            missing, excess = differences(rows_by_key(store, spec), rows_by_key(reference, spec))
            lost, doubled = lost + len(missing), doubled + len(excess) + rows_doubled(store, spec)
        records.append(
            {
                "fault": fault,
                "survived": lost == 0 and doubled == 0,
                "rows_lost": lost,
                "rows_doubled": doubled,
                "tables": sorted(tables),
                "rows_compared": sum(len(rows_by_key(reference, spec)) for spec in tables.values()),
                "seconds_to_recover": None if seconds is None else round(seconds, 1),
            }
        )
        for name, spec in tables.items():
            assert_same_rows(rows_by_key(store, spec), rows_by_key(reference, spec), name)
        assert doubled == 0, records[-1]

    yield record
    if os.environ.get(RELIABILITY_ENV) and records:
        out = Path(os.environ[RELIABILITY_ENV])
        out.parent.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out.write_text(json.dumps({"timestamp": stamp, "faults": records}, indent=2) + "\n")


#: The password of the PostgreSQL role the instances use: it must reach no log, metadata or file.
PG_SECRET = "pg-Secret-4711-xyz"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """A PostgreSQL server for the module; the fixture makes a database per deployment and returns
    its URL (the role's password in it, as ``$DAGSTER_PG_URL`` holds it)."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        server.psql(f"CREATE ROLE margin LOGIN PASSWORD '{PG_SECRET}';")
        socket = parse_qs(urlparse(server.get_uri()).query)["host"][0]

        def database(name: str) -> str:
            server.psql(f"CREATE DATABASE {name} OWNER margin;")
            return f"postgresql+psycopg2://margin:{PG_SECRET}@/{name}?host={socket}"

        yield database
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> DeltaRsStore:
    """What every deployment of the module publishes for substrate version 1 (the generator is
    deterministic): a full recompute of ``SCENARIO``'s, in process. The fault tests compare with it, so
    each runs without the uninterrupted chain (and in a worker of its own under ``pytest -n``)."""
    root = tmp_path_factory.mktemp("reference")
    substrate = with_substrate(root / "substrate", SCENARIO)
    return full_recompute(Path(substrate.lake_root), root / "full" / "lake")


class EngineLink:
    """A TCP relay between the runs and the engine server that can be made to hang: while
    :attr:`hung` is set it forwards nothing (an engine, or the network to it, that stopped
    answering), so a run waits on its engine without holding any lock of Dagster's. A connection
    that stalled is reset when the hang ends, as a network that heals resets one: the engine never
    gets the half-sent request of a client long gone (Sail's graceful stop then waited minutes for
    it)."""

    def __init__(self) -> None:
        self.hung = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._relayed: list[socket.socket] = []

    @contextlib.contextmanager
    def between_runs_and(self, url: str) -> Iterator[None]:
        """Relays to the Spark Connect server at ``url``, as ``$MARGIN_PIPELINE_SPARK_REMOTE`` says."""
        target = urlparse(url.replace("sc://", "http://", 1))
        previous = os.environ[REMOTE_ENV]
        os.environ[REMOTE_ENV] = f"sc://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, args=((target.hostname, target.port),), daemon=True).start()
        try:
            yield
        finally:  # ends every relayed connection: a held one would keep the engine from stopping
            os.environ[REMOTE_ENV] = previous
            self.hung.clear()
            for end in (self._listener, *self._relayed):
                with contextlib.suppress(OSError):  # shutdown wakes a thread blocked on it; close does not
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def _accept(self, target: tuple[str | None, int | None]) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(target)
                self._relayed += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError), source, sink:
            while data := source.recv(65536):
                if self.hung.is_set():  # a connection stalled this long is reset, not resumed, once it heals
                    while self.hung.is_set() and self._listener.fileno() != -1:
                        time.sleep(0.1)
                    for end in (source, sink):
                        end.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)


@contextlib.contextmanager
def deployment(
    root: Path,
    postgres_url: str | None = None,
    settings: dict[str, Any] | None = None,
    engine_link: EngineLink | None = None,
) -> Iterator[dg.DagsterInstance]:
    """A data root with one ingested substrate version, its instance (SQLite, or the PostgreSQL
    database at ``postgres_url``, named in dagster.yaml by its variable only; ``settings`` over the
    repo's dagster.yaml), and a daemon. With ``engine_link``, runs reach the engine through it."""
    saved = {k: os.environ.get(k) for k in (ROOT_ENV, "DAGSTER_HOME", POSTGRES_URL_ENV)}
    os.environ[ROOT_ENV] = str(root)  # the daemon, code server and run workers inherit it
    try:
        home = root / "dagster"
        home.mkdir(parents=True)
        os.environ["DAGSTER_HOME"] = str(home)
        # instance_for_test writes its dagster.yaml (the repo's, plus test settings) into home.
        repo_config = {**yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text()), **(settings or {})}
        if postgres_url:
            os.environ[POSTGRES_URL_ENV] = postgres_url
            repo_config["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
        with_substrate(root, SCENARIO)  # ingested in process: no sensor sees it
        with contextlib.ExitStack() as stack:
            instance = stack.enter_context(dg.instance_for_test(overrides=repo_config, temp_dir=str(home)))
            url = stack.enter_context(shared_engine())  # as `margin-pipeline run`: one for all runs
            if engine_link is not None and url is not None:
                stack.enter_context(engine_link.between_runs_and(url))
            stack.enter_context(daemon(instance, home / "daemon.log"))
            yield instance
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def children_of(instance: dg.DagsterInstance, parent_id: str) -> dict[str, RunReport]:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_TAG: parent_id}))
    return {r.job_name: report(instance, r.run_id) for r in runs}


def step_spans(instance: dg.DagsterInstance, run_id: str, prefix: str) -> dict[str, tuple[float, float]]:
    """Start and end time of each successful step of ``run_id`` whose key starts with ``prefix`` (a
    dynamic step's key up to its ``[``), by mapping key."""
    starts, ends = {}, {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    for record in instance.all_logs(run_id, of_type=kinds):
        if record.step_key and record.step_key.startswith(prefix):
            into = starts if record.dagster_event.event_type == dg.DagsterEventType.STEP_START else ends
            into[record.step_key[len(prefix) : -1]] = record.timestamp
    return {key: (starts[key], ends[key]) for key in ends}


def logged_runs(data_root: DataRoot, run_ids: set[str], timeout: float = 90.0) -> dict[str, dict]:
    """Rows of control/pipeline_runs once run_log_sensor (on the daemon) has logged all of ``run_ids``."""
    store = DeltaRsStore(lake_root=str(data_root.lake))
    deadline = time.time() + timeout
    rows: dict[str, dict] = {}
    while time.time() < deadline and not run_ids <= set(rows):
        time.sleep(2)
        if store.version(PIPELINE_RUNS) is not None:
            rows = {r["run_id"]: r for r in store.read_arrow(PIPELINE_RUNS).to_pylist()}
    return rows


def alerts_of(data_root: DataRoot, count: int, timeout: float = 90.0) -> list[dict]:
    """The JSON-lines alerts of the deployment, once there are ``count`` (or the timeout passed)."""
    sink = data_root.path / "alerts" / "alerts.jsonl"
    deadline = time.time() + timeout
    lines: list[str] = []
    while time.time() < deadline and len(lines) < count:
        time.sleep(2)
        lines = sink.read_text().splitlines() if sink.exists() else []
    return [json.loads(line) for line in lines]


def runs_of(instance: dg.DagsterInstance, job: str) -> list[RunReport]:
    return [report(instance, r.run_id) for r in instance.get_runs(filters=dg.RunsFilter(job_name=job))]


#: The tests that read the uninterrupted chain: one xdist group, so it is built once under ``pytest -n``.
SHARES_THE_CHAIN = pytest.mark.xdist_group("uninterrupted")


@SHARES_THE_CHAIN
def test_the_tests_sharing_the_chain_are_one_group_under_xdist(request: pytest.FixtureRequest) -> None:
    """``--dist loadgroup`` (``make test``) keeps a group on one worker by a suffix it adds to the node
    ids. pytest 9.2 drops that suffix without a word (pytest-xdist#1386): every worker then built the
    chain again, 165 s of a 19-minute suite. pyproject keeps pytest below 9.2 until xdist mends it."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest -n --dist loadgroup")
    assert request.node.nodeid.endswith("@uninterrupted"), (
        f"{request.node.nodeid}: --dist loadgroup ignores xdist_group with this pytest/pytest-xdist"
    )


@dataclass
class Uninterrupted:
    root: Path
    postgres_url: str  # its instance's database ($DAGSTER_PG_URL)
    parent: RunReport
    children: dict[str, RunReport]
    child_configs: dict[str, dict]
    second: RunReport
    second_children: dict[str, RunReport]
    month_steps: dict[str, tuple[float, float]]
    children_created: dict[str, float]  # when each child run was created (launched), by job
    second_statuses_while_first_ran: set[str]
    by_hand: list[RunReport]  # settlement_stream launched twice by hand while the parent ran it
    settlement_at_once: int  # the most settlement_stream runs seen starting or started together
    reconciled: list[RunReport]
    run_log: dict[str, dict]  # control/pipeline_runs by run id
    ui: dict[str, Any]  # what the UI reads (GraphQL), gathered while the daemon still ran


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, postgres: Callable[[str], str]) -> Uninterrupted:
    root = tmp_path_factory.mktemp("uninterrupted")
    url = postgres("uninterrupted")
    with deployment(root, url) as instance:
        since = time.time()
        first = launch(PARENT_JOB)
        second = launch(PARENT_JOB)  # a second request while the first one runs
        seen: set[str] = set()
        by_hand: list[str] = []
        settlement_at_once = 0  # the most settlement_stream runs seen starting or started together
        live = dg.RunsFilter(
            job_name="settlement_stream", statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
        )
        while not all(instance.get_run_by_id(r).is_finished for r in [first, *by_hand]):
            if instance.get_run_by_id(first).status == dg.DagsterRunStatus.STARTED:
                seen.add(instance.get_run_by_id(second).status.value)
            if not by_hand and children_of(instance, first).get("settlement_stream"):
                # The parent has launched its settlement child: the same stream twice more, by hand, at once.
                with ThreadPoolExecutor(2) as pool:
                    by_hand = list(pool.map(launch, ["settlement_stream"] * 2))
            settlement_at_once = max(settlement_at_once, len(instance.get_runs(filters=live)))
            time.sleep(0.3)
        parent, second_report = wait_for_runs(instance, [first, second])
        hand_reports = wait_for_runs(instance, by_hand)
        outcome = follow_chain(instance, DataRoot(root=str(root)), since, on_progress=lambda _: None)
        assert outcome.done, outcome.message
        children = children_of(instance, first)
        reconciled = runs_of(instance, "reconciled")
        finished = {
            first,
            second,
            *by_hand,
            *(c.run_id for c in children.values()),
            *(r.run_id for r in reconciled),
        }
        run_log = logged_runs(DataRoot(root=str(root)), finished)
        ui = operator_view(instance, root, first, children)
        return Uninterrupted(
            root=root,
            postgres_url=url,
            parent=parent,
            children=children,
            child_configs={j: instance.get_run_by_id(c.run_id).run_config for j, c in children.items()},
            second=second_report,
            second_children=children_of(instance, second),
            month_steps=step_spans(instance, children["monthly_stream"].run_id, MONTH_STEP),
            children_created={j: created_at(instance, c.run_id) for j, c in children.items()},
            second_statuses_while_first_ran=seen,
            by_hand=hand_reports,
            settlement_at_once=settlement_at_once,
            reconciled=reconciled,
            run_log=run_log,
            ui=ui,
        )


RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      tags { key value }
      eventConnection { events { __typename
        ... on MessageEvent { message stepKey }
        ... on ExecutionStepOutputEvent { metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } }
      } }
    }
  }
}"""
GATE_QUERY = """
query Gate($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 100) { status skipReason } } }
  }
}"""
ASSET_QUERY = """
query Asset($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        metadataEntries { label __typename
          ... on TableMetadataEntry { table { records schema { columns { name } } } }
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on FloatMetadataEntry { floatValue } }
      }
      definition {
        owners { ... on TeamAssetOwner { team } }
        tags { key value }
        metadataEntries { label ... on TableSchemaMetadataEntry { schema { columns { name } } } }
      }
    }
  }
}"""


def operator_view(
    instance: dg.DagsterInstance, root: Path, parent_id: str, children: dict[str, RunReport]
) -> dict[str, Any]:
    """What an operator sees in the UI after the chain, read through GraphQL as the UI reads it; then a
    manual hh_margin materialization launched while the gate is closed (a newer N no stream consumed)."""
    child = children["settlement_stream"]
    gate = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "watermark_gate"}
    view = {
        "child": graphql(RUN_QUERY, {"runId": child.run_id})["runOrError"],
        "parent": graphql(RUN_QUERY, {"runId": parent_id})["runOrError"],
        "gate": graphql(GATE_QUERY, {"selector": gate})["sensorOrError"],
        "asset": graphql(ASSET_QUERY, {"key": {"path": ["gold", "settlement_cost_hh"]}})["assetOrError"],
    }
    data_root = DataRoot(root=str(root))
    store = DeltaRsStore(lake_root=str(data_root.lake))
    hh_margin_version = store.version(GOLD["hh_margin"])
    # The next day, generated beside landing/ (landing_sensor must not see it) and ingested in process
    # (no sensor sees that either): N=2 is recorded and no stream has consumed it.
    scratch = root / "scratch" / "landing"
    scratch.mkdir(parents=True)
    shutil.copy(state_path(data_root.landing), state_path(scratch))
    generate_next_day(scratch)
    ingest(data_root, store, sorted(scratch.rglob("*.csv")))
    record_substrate_version(store, "test")
    (view["manual_hh_margin"],) = wait_for_runs(instance, [launch("reconciled")], timeout=300)
    view["hh_margin_version_before_after"] = (hh_margin_version, store.version(GOLD["hh_margin"]))
    return view


@SHARES_THE_CHAIN
def test_a_child_run_leads_back_to_its_parent(uninterrupted: Uninterrupted) -> None:
    child = uninterrupted.ui["child"]
    tags = {t["key"]: t["value"] for t in child["tags"]}
    assert tags["margin_pipeline/parent_run_id"] == uninterrupted.parent.run_id
    events = child["eventConnection"]["events"]
    messages = [e.get("message") or "" for e in events if e["__typename"] == "LogMessageEvent"]
    assert messages and f"{PARENT_JOB} run {uninterrupted.parent.run_id}" in messages[0]
    assert uninterrupted.children["settlement_stream"].assets["gold/settlement_cost_hh"]["parent_run"]


@SHARES_THE_CHAIN
def test_the_parent_summary_lists_every_child(uninterrupted: Uninterrupted) -> None:
    outputs = [
        e
        for e in uninterrupted.ui["parent"]["eventConnection"]["events"]
        if e["__typename"] == "ExecutionStepOutputEvent" and e["stepKey"] == "summary"
    ]
    [table] = [m["mdStr"] for e in outputs for m in e["metadataEntries"] if m["label"] == "children"]
    for job, child in uninterrupted.children.items():
        assert f"| {job} | [{child.run_id[:8]}](/runs/{child.run_id}) | succeeded | 1 |" in table


@SHARES_THE_CHAIN
def test_gate_ticks_name_the_stream_that_is_behind(uninterrupted: Uninterrupted) -> None:
    ticks = uninterrupted.ui["gate"]["sensorState"]["ticks"]
    assert ticks and [t for t in ticks if t["status"] == "SKIPPED" and not t["skipReason"]] == []
    reasons = [t["skipReason"] or "" for t in ticks]
    assert any("waiting for monthly" in r for r in reasons), reasons


@SHARES_THE_CHAIN
def test_asset_metadata_reads_at_a_glance(uninterrupted: Uninterrupted) -> None:
    asset = uninterrupted.ui["asset"]
    [materialization] = asset["assetMaterializations"]
    entries = {m["label"]: m for m in materialization["metadataEntries"]}
    assert next(iter(entries)) == "rows_read_pct_of_full"  # the headline first
    sources = entries["sources"]["table"]
    assert [c["name"] for c in sources["schema"]["columns"]][:3] == ["source", "from", "to"]
    assert {json.loads(r)["source"] for r in sources["records"]} >= {"settlement_volumes", "prices"}
    assert entries["dagster/row_count"]["intValue"] > 0
    assert entries["substrate_version"]["__typename"] == "TextMetadataEntry"
    definition = asset["definition"]
    assert {o["team"] for o in definition["owners"]} == {"settlement"}
    assert {"key": "layer", "value": "gold"} in definition["tags"]
    schema = {m["label"]: m for m in definition["metadataEntries"]}["dagster/column_schema"]["schema"]
    assert "total_cost_gbp" in [c["name"] for c in schema["columns"]]


@SHARES_THE_CHAIN
def test_a_manual_hh_margin_with_the_gate_closed_refuses_and_names_who_is_behind(
    uninterrupted: Uninterrupted,
) -> None:
    manual = uninterrupted.ui["manual_hh_margin"]
    assert manual.status == "FAILURE"
    assert "the gate is closed: N=2" in manual.error and "waiting for settlement" in manual.error
    before, after = uninterrupted.ui["hh_margin_version_before_after"]
    assert before is not None and after == before, "nothing was written"


@SHARES_THE_CHAIN
def test_children_run_side_by_side_and_monthly_waits_for_both(uninterrupted: Uninterrupted) -> None:
    assert uninterrupted.parent.success, uninterrupted.parent.error
    children = uninterrupted.children
    assert set(children) == {"settlement_stream", "half_hourly_stream", "monthly_stream"}
    assert all(c.success for c in children.values())
    settlement, half_hourly, monthly = (
        children[j] for j in ("settlement_stream", "half_hourly_stream", "monthly_stream")
    )
    # Side by side: pin_substrate launches settlement and half_hourly together, each a run of its own,
    # so neither waits for the other to end. (The child runs themselves take 2-3 s on Sail: whether
    # they overlap depends on when each run worker happened to start.)
    created = uninterrupted.children_created
    assert max(created["settlement_stream"], created["half_hourly_stream"]) < min(
        settlement.ended, half_hourly.ended
    ), f"the second child was launched after the first ended: {created}"
    assert monthly.started >= max(settlement.ended, half_hourly.ended)
    for job, config in uninterrupted.child_configs.items():  # each child gets its own profile, N pinned
        ops = config["ops"]
        assert ops and all(op["config"]["substrate_version"] == 1 for op in ops.values()), job
    assert (
        uninterrupted.child_configs["settlement_stream"] != uninterrupted.child_configs["half_hourly_stream"]
    )
    assert all(c.tags["margin_pipeline/substrate_version"] == "1" for c in children.values())


@SHARES_THE_CHAIN
def test_monthly_child_fans_out_one_step_per_month(uninterrupted: Uninterrupted) -> None:
    """The for-each: each month monthly_margin recomputes is its own step (shown, retried and
    re-executed on its own), run one after the other in the monthly run's process (test_definitions)."""
    steps = uninterrupted.month_steps
    assert set(steps) == {"2025_09", "2025_10"}
    (_, end_a), (start_b, _) = sorted(steps.values())
    assert end_a <= start_b, f"the month steps overlapped: {steps}"


@SHARES_THE_CHAIN
def test_second_parent_request_waits_in_the_queue_and_then_skips_every_child(
    uninterrupted: Uninterrupted,
) -> None:
    assert uninterrupted.second_statuses_while_first_ran == {"QUEUED"}
    assert uninterrupted.second.success
    assert uninterrupted.second.started >= uninterrupted.parent.ended
    assert uninterrupted.second_children == {}, "every stream had consumed N: nothing to launch"


@SHARES_THE_CHAIN
def test_a_stream_launched_twice_by_hand_while_the_parent_runs_it_waits_and_doubles_nothing(
    uninterrupted: Uninterrupted,
) -> None:
    """The per-stream concurrency limit: the parent's settlement child and two launches by hand run one
    at a time; the child consumed N, the hand launches find nothing to do and write nothing."""
    assert uninterrupted.settlement_at_once == 1
    child = uninterrupted.children["settlement_stream"]
    runs = sorted([child, *uninterrupted.by_hand], key=lambda r: r.started)
    assert all(r.success for r in runs), [r.error for r in runs]
    assert runs[0].run_id == child.run_id, "the child, launched first, ran first"
    spans = [(r.run_id[:8], r.started, r.ended) for r in runs]
    for earlier, later in itertools.pairwise(runs):
        assert later.started >= earlier.ended, f"two settlement runs at once: {spans}"
    for run in uninterrupted.by_hand:
        row = uninterrupted.run_log[run.run_id]
        assert row["rows_written"] == 0 and row["parent_run_id"] is None, row
    assert uninterrupted.run_log[child.run_id]["rows_written"] > 0


@SHARES_THE_CHAIN
def test_the_chain_with_the_hand_launches_equals_a_full_recompute(
    uninterrupted: Uninterrupted, survival: Survival, reference: DeltaRsStore
) -> None:
    """The uninterrupted chain (settlement launched twice by hand while the parent ran it) published
    what a full recompute of its substrate version 1 publishes, nothing twice (its N=2 came later, unread)."""
    store = DeltaRsStore(lake_root=str(DataRoot(root=str(uninterrupted.root)).lake))
    survival("a stream launched twice by hand while the parent runs it", store, reference, None)


@SHARES_THE_CHAIN
def test_the_instance_is_on_postgres_and_its_password_leaks_nowhere(
    uninterrupted: Uninterrupted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password is in the environment only: not in the instance (run configs, tags, every event of
    every run), any log, metadata, alert, dagster.yaml or the lake (the run log table included)."""
    home = uninterrupted.root / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml names both variables
    monkeypatch.setenv(POSTGRES_URL_ENV, uninterrupted.postgres_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        runs = instance.get_runs()
        assert {r.job_name for r in runs} >= {PARENT_JOB, "settlement_stream", "reconciled"}
        recorded = [json.dumps(r.run_config) + json.dumps(dict(r.tags)) for r in runs]
        recorded += [str(e.message) + str(e.dagster_event) for r in runs for e in instance.all_logs(r.run_id)]
    assert not any(PG_SECRET in text for text in recorded)
    assert not list(home.rglob("runs.db")), "nothing was stored in SQLite"
    leaked = [
        p for p in uninterrupted.root.rglob("*") if p.is_file() and PG_SECRET.encode() in p.read_bytes()
    ]
    assert leaked == []


@SHARES_THE_CHAIN
def test_gate_publishes_hh_margin_once_all_streams_consumed_n(uninterrupted: Uninterrupted) -> None:
    [reconciled] = uninterrupted.reconciled
    assert reconciled.success
    assert reconciled.tags.get("dagster/sensor_name") == "watermark_gate"
    assert reconciled.started >= uninterrupted.children["monthly_stream"].ended
    store = DeltaRsStore(lake_root=str(DataRoot(root=str(uninterrupted.root)).lake))
    assert rows_by_key(store, GOLD["hh_margin"]), "hh_margin was published"


@SHARES_THE_CHAIN
def test_every_finished_run_is_in_the_run_log(uninterrupted: Uninterrupted) -> None:
    log = uninterrupted.run_log
    parent, children = uninterrupted.parent, uninterrupted.children
    assert log[parent.run_id]["stream"] == "parent" and log[parent.run_id]["status"] == "SUCCESS"
    for job, child in children.items():
        row = log[child.run_id]
        assert (row["job"], row["status"], row["parent_run_id"]) == (job, "SUCCESS", parent.run_id)
        assert row["substrate_version"] == 1 and row["duration_seconds"] > 0
        assert row["rows_read"] > 0 and row["rows_written"] > 0, row
        assert json.loads(row["modes"]) and json.loads(row["watermarks"]), row
    [reconciled] = uninterrupted.reconciled
    assert log[reconciled.run_id]["stream"] == "reconciled"
    assert log[uninterrupted.second.run_id]["rows_written"] == 0


def test_failed_child_stops_downstream_and_repair_reruns_only_what_failed(
    reference: DeltaRsStore, survival: Survival, tmp_path: Path
) -> None:
    root = tmp_path / "repaired"
    rates = DataRoot(root=str(root)).lake / SUBSTRATE["tariff_rates"].name
    aside = tmp_path / "aside"
    with deployment(root) as instance:
        # A storage fault only half_hourly meets: tariff_rates' data files are unreadable for a while.
        aside.mkdir()
        for data_file in rates.glob("*.parquet"):
            data_file.rename(aside / data_file.name)
        store = DeltaRsStore(lake_root=str(DataRoot(root=str(root)).lake))

        (failed,) = wait_for_runs(instance, [launch(PARENT_JOB)])
        assert failed.status == "FAILURE"
        children = children_of(instance, failed.run_id)
        assert children["settlement_stream"].success
        assert children["half_hourly_stream"].status == "FAILURE"
        assert "monthly_stream" not in children, "nothing downstream of a failed child starts"
        parent_error = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        [message] = [e.dagster_event.step_failure_data.error.message for e in parent_error]
        assert "half_hourly_stream" in message and children["half_hourly_stream"].run_id in message
        assert rows_by_key(store, SETTLEMENT_COST_HH), "the sibling's committed output stays"
        time.sleep(15)  # give the gate sensor time to (wrongly) act on settlement's publication
        assert isinstance(gate_request(store), dg.SkipReason)
        assert runs_of(instance, "reconciled") == [], "the gate stays closed"

        # One alert for the incident: the parent's, routed to the child that failed, listing every child.
        [alert] = alerts_of(DataRoot(root=str(root)), 1)
        assert (alert["kind"], alert["stream"], alert["run_id"]) == ("stream", "half_hourly", failed.run_id)
        assert alert["route"]["owner"] and alert["route"]["channel"]
        assert "half_hourly_stream failed" in alert["title"]
        for job, child in children.items():
            assert f"child {job} run {child.run_id}" in alert["text"]
        assert alert["details"]["children"]["half_hourly_stream"]["status"] == "FAILURE"

        for data_file in aside.iterdir():  # the fault is cleared; repair
            (rates / data_file.name).write_bytes(data_file.read_bytes())
        since = time.time()
        (repaired,) = wait_for_runs(instance, [reexecute_from_failure(failed.run_id)])
        assert repaired.success, repaired.error
        assert set(children_of(instance, repaired.run_id)) == {"half_hourly_stream", "monthly_stream"}
        outcome = follow_chain(instance, DataRoot(root=str(root)), since, on_progress=lambda _: None)
        assert outcome.done, outcome.message

        survival(
            "a child fails (storage fault), repaired from failure", store, reference, time.time() - since
        )

        # Re-running the whole parent is safe: every stream has consumed N, nothing is rewritten.
        versions = {name: store.version(spec) for name, spec in OUTPUTS.items()}
        (rerun,) = wait_for_runs(instance, [launch(PARENT_JOB)])
        assert rerun.success and children_of(instance, rerun.run_id) == {}
        assert {name: store.version(spec) for name, spec in OUTPUTS.items()} == versions
        assert len(alerts_of(DataRoot(root=str(root)), 2, timeout=20)) == 1, "successful runs alert nobody"


#: The max-runtime test's limit: its retry inherits it, and must finish well within it under load.
MAX_RUNTIME = 20
#: Run monitoring's poll in the max-runtime test (the repo's dagster.yaml keeps Dagster's 120 s).
QUICK_MONITORING = {
    "run_monitoring": {
        **yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_monitoring"],
        "poll_interval_seconds": 1,
    }
}


def worker_pid(instance: dg.DagsterInstance, run_id: str, timeout: float = 300.0) -> int:
    """The pid of ``run_id``'s run worker, once it has written it (as ``dead_run_sensor`` finds it)."""
    worker = wait_until(lambda: worker_of(instance, run_id), timeout, f"run {run_id} to start", interval=0.2)
    return worker[0]


def test_a_parent_stopped_while_it_waits_cancels_every_child_it_launched(tmp_path: Path) -> None:
    """The operator terminates the parent while its children are held (their streams' pools have no
    slot: they wait in the queue). The parent waits in one child's op, yet both children, launched
    together by pin_substrate, are canceled: none is left to run without its parent."""
    with deployment(tmp_path / "parent_stopped") as instance:
        for pool in ("settlement", "half_hourly"):
            instance.event_log_storage.set_concurrency_slots(pool, 0)
        parent = launch(PARENT_JOB)
        waiting = dg.RunsFilter(job_name=PARENT_JOB, statuses=[dg.DagsterRunStatus.STARTED])
        wait_until(
            lambda: len(children_of(instance, parent)) == 2 and instance.get_runs(filters=waiting),
            300,
            "the parent to launch its two children",
        )
        time.sleep(2)  # into the op that waits
        # Its run worker was forked from the code server's zygote (warm_workers), not spawned afresh.
        status = Path(f"/proc/{worker_pid(instance, parent)}/status").read_text()
        forked_by = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        assert b"warm_workers\0zygote" in Path(f"/proc/{forked_by}/cmdline").read_bytes()
        instance.run_coordinator.cancel_run(parent)
        (stopped,) = wait_for_runs(instance, [parent], timeout=300)
        children = children_of(instance, parent)
        assert set(children) == {"settlement_stream", "half_hourly_stream"}
        ended = wait_for_runs(instance, [c.run_id for c in children.values()], timeout=300)
        assert stopped.status == "CANCELED", stopped.status
        assert {c.status for c in ended} == {"CANCELED"}, [(c.job, c.status) for c in ended]


def test_runs_stopped_from_outside_are_recovered_and_the_chain_finishes(
    reference: DeltaRsStore, survival: Survival, tmp_path: Path
) -> None:
    """Runs stopped by something outside the pipeline, mid-run, in one deployment:

    1. a settlement run launched with ``dagster/max_runtime`` 20 s (a stream job carries its SLA's,
       90 min) hangs on its engine (which stops answering) and overruns it: run monitoring fails
       it (its step is interrupted), the operator gets one SLA alert, and once the engine answers
       again, the run that run retries launch in its place does its work;
    2. then the parent's half_hourly child has its run worker SIGKILLed (the OOM killer's way) while
       its step holds the stream's pool slot: its code server reports it failed, ``dead_run_sensor``
       gives the slot back (run monitoring would hold it 300 s), run retries relaunch it, the parent
       follows the retry and the chain finishes, alerting nobody.

    Each ends with a full recompute's rows, none twice."""
    root = tmp_path / "stopped"
    data_root = DataRoot(root=str(root))
    store = DeltaRsStore(lake_root=str(data_root.lake))
    link = EngineLink()
    with deployment(root, settings=QUICK_MONITORING, engine_link=link) as instance:
        link.hung.set()
        hung = launch("settlement_stream", tags={"dagster/max_runtime": str(MAX_RUNTIME)})
        pid = worker_pid(instance, hung)
        (overran,) = wait_for_runs(instance, [hung])
        stopped = time.time()
        # Run monitoring marks it canceling, asks its code server to stop it, then reports it failed
        # (the failure alerts and run retries act on). The stopped worker reports it canceled,
        # before or after that failure: the status is whichever came last (both seen here).
        assert overran.status in ("FAILURE", "CANCELED"), overran.status
        failed_by_monitoring = time.monotonic() + 30  # a moment after the worker's CANCELED, if first

        def failures() -> list[str]:
            records = instance.get_records_for_run(hung, of_type=dg.DagsterEventType.RUN_FAILURE).records
            return [r.event_log_entry.message or "" for r in records]

        while not failures() and time.monotonic() < failed_by_monitoring:
            time.sleep(0.2)
        assert failures() == [f"Exceeded maximum runtime of {MAX_RUNTIME} seconds."], failures()
        link.hung.clear()  # before run retries launch the run again
        # Dagster's cancel reaches the hung call: the worker ends.
        wait_until(lambda: process_started_at(pid) is None, 60, f"the hung run's worker {pid} to end", 0.2)

        alerts = alerts_of(data_root, 1)
        assert len(alerts) == 1, alerts
        [alert] = alerts
        assert (alert["kind"], alert["stream"], alert["run_id"]) == ("sla", "settlement", hung), alert
        assert "maximum runtime" in alert["text"], alert["text"]

        retry = wait_until(
            lambda: instance.get_run_by_id(hung).tags.get(AUTO_RETRY_RUN_TAG),
            stopped + 120 - time.time(),
            "run retries to relaunch the overrun run (120 s after it stopped)",
            interval=0.5,
        )
        (recovered,) = wait_for_runs(instance, [retry])
        assert recovered.success, recovered.error
        [written] = [m["rows_inserted"] for m in recovered.assets.values()]
        assert written > 0, "the stopped run wrote nothing: its retry builds the table"
        survival(
            "a run over its dagster/max_runtime (run monitoring stops it)",
            store,
            reference,
            time.time() - stopped,
            tables={"settlement_cost_hh": SETTLEMENT_COST_HH},
        )

        since = time.time()
        parent = launch(PARENT_JOB)
        running = dg.RunsFilter(job_name="half_hourly_stream", statuses=[dg.DagsterRunStatus.STARTED])
        child = wait_until(lambda: instance.get_runs(filters=running), 300, "the parent's half_hourly child")
        pool = instance.event_log_storage.get_concurrency_info  # killed holding its stream's pool slot:
        wait_until(
            lambda: child[0].run_id in pool("half_hourly").active_run_ids,
            300,
            "the half_hourly child to take its pool slot",
            interval=0.1,
        )
        killed = time.time()
        os.kill(worker_pid(instance, child[0].run_id), signal.SIGKILL)
        (finished,) = wait_for_runs(instance, [parent])
        assert finished.success, finished.error
        children = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_TAG: parent}))
        half_hourly = {r.run_id: r for r in children if r.job_name == "half_hourly_stream"}
        dead = half_hourly[child[0].run_id]
        assert dead.status == dg.DagsterRunStatus.FAILURE
        retry = dead.tags.get(AUTO_RETRY_RUN_TAG)
        assert retry in half_hourly and half_hourly[retry].status == dg.DagsterRunStatus.SUCCESS
        # dead_run_sensor gave the dead run's pool slot back: its retry did not wait for run monitoring
        ended, began = (instance.get_run_record_by_id(r) for r in (dead.run_id, retry))
        assert ended is not None and began is not None and ended.end_time and began.start_time
        slot_release = QUICK_MONITORING["run_monitoring"]["free_slots_after_run_end_seconds"]
        assert began.start_time - ended.end_time < slot_release, (ended.end_time, began.start_time)
        assert "settlement_stream" not in {r.job_name for r in children}, "settlement had consumed N"
        outcome = follow_chain(instance, data_root, since, on_progress=lambda _: None)
        assert outcome.done, outcome.message
        worker_seconds = time.time() - killed
        assert len(alerts_of(data_root, 2, timeout=20)) == 1, "alerted once; the recoveries alert nobody"

    survival("a child's run worker SIGKILLed (run retries relaunch it)", store, reference, worker_seconds)


def test_a_file_landing_while_the_parent_runs_for_n_is_n_plus_1_and_runs_after_it(
    survival: Survival, tmp_path: Path
) -> None:
    """The next day's files land while the parent runs for N=1 (its settlement child running). The
    parent and its children stay on N=1 (pinned, whatever ingest records meanwhile); ingest makes
    N=2; the parent for N=2 waits in the queue and runs after; the published tables equal a full
    recompute of substrate version 2, no key twice.

    The parent's monthly child is held (its stream's pool has no slot) until ingest has recorded
    N=2, so ingest always commits while the parent for N=1 runs: on Sail the rest of the parent
    takes a few seconds, less than a landing file takes to settle and be seen by a sensor tick."""
    root = tmp_path / "landed"
    data_root = DataRoot(root=str(root))
    with deployment(root) as instance:
        pools = instance.event_log_storage
        pools.set_concurrency_slots("monthly", 0)
        since = time.time()
        first = launch(PARENT_JOB)
        wait_until(lambda: children_of(instance, first).get("settlement_stream"), 300, "a settlement child")
        generate_next_day(data_root.landing)  # written in place: landing_sensor takes it once settled
        landed = time.time()
        wait_until(
            lambda: any(r.success for r in runs_of(instance, "ingest")), 300, "the landed files ingested"
        )
        pools.set_concurrency_slots("monthly", 1)  # the parent for N=1 goes on to its monthly child
        outcome = follow_chain(instance, data_root, since, on_progress=lambda _: None)
        caught_up = time.time()
        assert outcome.done, outcome.message
        assert "substrate version 2" in outcome.message

        first_parent, second_parent = sorted(runs_of(instance, PARENT_JOB), key=lambda r: r.started)
        # launched by hand, the first pins N when it starts (its children say which); the sensor's carries N
        assert second_parent.tags.get("margin_pipeline/substrate_version") == "2"
        assert first_parent.run_id == first and first_parent.success and second_parent.success
        assert landed < first_parent.ended, "the files landed while the parent for N=1 ran"
        [ingested] = runs_of(instance, "ingest")
        assert ingested.success and ingested.started < first_parent.ended, "ingested while it ran"
        assert second_parent.started >= first_parent.ended, "the parent for N=2 waited for N=1's"
        for parent, number in ((first_parent, 1), (second_parent, 2)):
            children = children_of(instance, parent.run_id)
            assert set(children) == {"settlement_stream", "half_hourly_stream", "monthly_stream"}
            for job, child in children.items():
                assert child.success, child.error
                assert child.tags["margin_pipeline/substrate_version"] == str(number), job
                config = instance.get_run_by_id(child.run_id).run_config
                assert {op["config"]["substrate_version"] for op in config["ops"].values()} == {number}, job
        reconciled = [r for r in runs_of(instance, "reconciled") if r.success]
        assert reconciled and reconciled[-1].tags["margin_pipeline/substrate_version"] == "2"

        store = DeltaRsStore(lake_root=str(data_root.lake))
        full = full_recompute(data_root.lake, tmp_path / "full" / "lake")
        survival("a file lands while the parent runs for N", store, full, caught_up - landed)


CLI_RUN = [str(REPO_ROOT / ".venv" / "bin" / "margin-pipeline"), "run"]


def run_until_a_child_starts(home: Path, env: dict[str, str], out: Any) -> subprocess.Popen:
    """``margin-pipeline run`` started in the background (its output to ``out``), returned once the
    parent's settlement child is running. The instance is opened here only once the CLI has said it
    started its daemon, so it was created by then: two processes creating a new SQLite instance at
    once can both try to create its tables ("table alembic_version already exists")."""
    env = {**env, "PYTHONUNBUFFERED": "1"}  # its lines reach ``out`` as printed
    process = subprocess.Popen(CLI_RUN, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "no child run started"
        if "dagster-daemon: " in Path(out.name).read_text(errors="replace"):
            with _instance(home) as instance:
                running = dg.RunsFilter(job_name="settlement_stream", statuses=[dg.DagsterRunStatus.STARTED])
                if instance.get_runs(filters=running):
                    return process
        time.sleep(0.5)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the dead-worker check reads /proc (Linux)")
def test_every_process_killed_mid_chain_then_run_again_finishes_it(
    reference: DeltaRsStore,
    survival: Survival,
    postgres: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash of the machine while the children run: every process of the data root SIGKILLed (the
    CLI, its daemon and engine, the code server, the run workers). Nothing of Dagster's is left to
    notice, and the runs stay STARTED (or STARTING: launched, no worker yet), holding their streams'
    slots. The next ``margin-pipeline run`` starts a daemon (the dead one's heartbeats are not
    trusted), fails the dead runs naming their pids, and finishes the chain with a full
    recompute's tables. The instance is on PostgreSQL, chosen as a deployment chooses it:
    ``$DAGSTER_PG_URL``."""
    root = tmp_path / "crashed"
    data_root = DataRoot(root=str(root))
    generate_history(data_root.landing, SCENARIO)
    home = root / "dagster"
    url = postgres("crashed")
    env = {
        **os.environ,
        ROOT_ENV: str(root),
        "DAGSTER_HOME": str(home),
        POSTGRES_URL_ENV: url,
        "RUST_LOG": "error",
    }
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's dagster.yaml reads both
    monkeypatch.setenv(POSTGRES_URL_ENV, url)
    with (home.parent / "first.out").open("w") as out:
        first = run_until_a_child_starts(home, env, out)
    try:
        killed = time.time()
        for pid in processes_of(str(home)) or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        first.wait(timeout=30)
        with _instance(home) as instance:
            stuck = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            assert {r.job_name for r in stuck} >= {"margin_job_of_jobs", "settlement_stream"}

        again = subprocess.run(CLI_RUN, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        recovered = time.time() - killed
        assert again.returncode == 0, f"{again.stdout[-3000:]}\n{again.stderr[-3000:]}"
        assert "dagster-daemon: started for this run" in again.stdout
        assert again.stdout.count("recovered: run worker process") >= 2, again.stdout[:3000]
        with _instance(home) as instance:
            assert "Postgres" in type(instance.run_storage).__name__
            live = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
            assert not instance.get_runs(filters=dg.RunsFilter(statuses=live))
        config = (home / "dagster.yaml").read_text()
        assert POSTGRES_URL_ENV in config and PG_SECRET not in config and not list(home.rglob("runs.db"))
        store = DeltaRsStore(lake_root=str(data_root.lake))
        survival("every process SIGKILLed while children run; run again", store, reference, recovered)
    finally:
        for pid in processes_of(str(home)) or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="finding the daemon reads /proc (Linux)")
def test_the_daemon_killed_while_a_child_runs_is_started_again_and_the_chain_finishes(
    reference: DeltaRsStore, survival: Survival, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the daemon dies (SIGKILL: the OOM killer's way) while the children run: its sensors and
    run queue stop, the parent's next child would wait in the queue for ever. ``margin-pipeline run``
    notices its daemon has exited, starts it again, fails what the dead one left without a worker,
    and the chain finishes with a full recompute's tables, in the same command."""
    root = tmp_path / "daemon_killed"
    data_root = DataRoot(root=str(root))
    generate_history(data_root.landing, SCENARIO)
    home = root / "dagster"
    env = {**os.environ, ROOT_ENV: str(root), "DAGSTER_HOME": str(home), "RUST_LOG": "error"}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env.pop(POSTGRES_URL_ENV, None)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    output = tmp_path / "run.out"
    with output.open("w") as out:
        command = run_until_a_child_starts(home, env, out)
    try:
        (pid,) = daemon_processes(str(home)) or []
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        assert command.wait(timeout=400) == 0, output.read_text()[-4000:]
        recovered = time.time() - killed
        printed = output.read_text()
        assert "dagster-daemon exited (status -9): started again" in printed, printed[-4000:]
        assert "every stream and hh_margin reflect substrate version 1" in printed
        with _instance(home) as instance:
            live = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
            assert not instance.get_runs(filters=dg.RunsFilter(statuses=live))
        store = DeltaRsStore(lake_root=str(data_root.lake))
        survival("the daemon SIGKILLed while a child runs", store, reference, recovered)
    finally:
        command.kill()
        for pid in processes_of(str(home)) or []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def created_at(instance: dg.DagsterInstance, run_id: str) -> float:
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    return record.create_timestamp.timestamp()


@contextlib.contextmanager
def _instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The data root's instance, opened from this process (its dagster.yaml, written by the CLI)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance
