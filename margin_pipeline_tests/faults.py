"""Fault injection: each scenario breaks a real stream run and measures what survived.

Every scenario runs the real settlement stream (real Spark, real Delta tables, a real
Dagster instance) on a small substrate, injects one fault, lets the pipeline recover
the way it would in production, and compares the published tables with an
uninterrupted run on the same substrate: ``rows_lost`` counts keys missing or with
different values, ``rows_doubled`` keys present more than once.

``margin_pipeline_tests/operations/test_faults.py`` asserts on each scenario; this
module's ``__main__`` prints the reliability summary (and writes it as JSON):

    .venv/bin/python -m margin_pipeline_tests.faults [--out benchmarks/results/reliability.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from margin_pipeline.defs.job_of_jobs.sensors import gate_request
from margin_pipeline.defs.operations.sensors import failure_alert
from margin_pipeline.defs.streams.assets import ASSETS, JOBS
from margin_pipeline.gold import SETTLEMENT_COST_HH
from margin_pipeline.operations.alerts import AlertsResource
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.settlement import output as settlement_output
from margin_pipeline.streams.shared.watermarks import read_watermarks
from margin_pipeline.substrate.ingest import ingest, pending_files
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline_tests.helpers import csv, differences, rows_by_key, stream_resources

settlement_cost_hh = ASSETS["settlement_cost_hh"]
settlement_stream = JOBS["settlement"]

STREAM = "settlement"
NODE = settlement_cost_hh.node_def.name
METERS = ("1300000000007", "1400000000001")
DAYS = (dt.date(2025, 10, 1), dt.date(2025, 10, 2))
VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"
PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"
#: Fast retries for the scenarios (the profile's defaults wait seconds).
QUICK_RETRY = {"max_attempts": 3, "initial_delay_seconds": 0.2, "jitter": 0.1}


def reference_feeds() -> dict[str, str]:
    return {
        "metering_points": csv("mpan_core,gsp_group,line_loss_factor", *(f"{m},_A,1.05" for m in METERS)),
        "charges": csv(
            "charge_code,gsp_group,unit,rate,valid_from,valid_to,band_start,band_end",
            "BSUOS,,GBP_PER_MWH,3.5,2025-01-01,,,",
        ),
    }


def day_feeds(run: str, kwh: float) -> dict[str, str]:
    """SF (or a restatement ``run``) of every meter on every day of :data:`DAYS`."""
    volumes = [f"{m},{d},{p},{run},{kwh + p / 100},A" for d in DAYS for m in METERS for p in range(1, 49)]
    prices = [f"{d},{p},{run},{40 + p}" for d in DAYS for p in range(1, 49)]
    return {"settlement_volumes": csv(VOLUMES, *volumes), "prices": csv(PRICES, *prices)}


@dataclass
class Lake:
    """A data root with a substrate that publications are ingested into."""

    root: DataRoot
    store: DeltaRsStore
    drops: int = 0

    @classmethod
    def at(cls, path: Path) -> Lake:
        root = DataRoot(root=str(path))
        return cls(root, DeltaRsStore(lake_root=str(root.lake)))

    def publish(self, files: dict[str, str]) -> int:
        for feed, text in files.items():
            folder = self.root.landing / feed
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{self.drops:05d}_{feed}.csv").write_text(text, encoding="utf-8")
            self.drops += 1
        report = ingest(self.root, self.store, pending_files(self.root))
        assert not report.rejected, [str(f.rejection) for f in report.rejected]
        return record_substrate_version(self.store, "faults").number

    def history(self) -> None:
        """Two publications: reference data and SF, then an R1 of both days."""
        self.publish({**reference_feeds(), **day_feeds("SF", 0.5)})

    def restatement(self) -> None:
        self.publish(day_feeds("R1", 0.7))

    def rows(self) -> dict[tuple, dict[str, Any]]:
        return rows_by_key(self.store, SETTLEMENT_COST_HH)


def refresh(
    lake: Lake, instance: dg.DagsterInstance | None = None, **profile: Any
) -> dg.ExecuteInProcessResult:
    """One run of the real ``settlement_stream`` job on ``lake`` (in process; failures are returned)."""
    defs = dg.Definitions(
        assets=[settlement_cost_hh],
        jobs=[settlement_stream],
        resources=stream_resources(lake.store),
    )
    return defs.resolve_job_def(settlement_stream.name).execute_in_process(
        run_config={"ops": {NODE: {"config": {"retry": QUICK_RETRY, **profile}}}},
        instance=instance,
        raise_on_error=False,
    )


@dataclass
class FaultResult:
    scenario: str
    fault: str
    survived: bool
    rows_lost: int
    rows_doubled: int
    detail: dict[str, Any] = field(default_factory=dict)


def expected_rows(workdir: Path) -> dict[tuple, dict]:
    """The uninterrupted run: history, restatement, one run each."""
    lake = Lake.at(workdir / "uninterrupted")
    lake.history()
    assert refresh(lake).success
    lake.restatement()
    assert refresh(lake).success
    return lake.rows()


@contextmanager
def patched(owner: Any, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def steps_retried(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)


# --- scenarios -----------------------------------------------------------------------------------


def sigkill_mid_write(workdir: Path, expected: dict[tuple, dict]) -> FaultResult:
    """A run process killed (SIGKILL) right after its output MERGE committed, before the watermark."""
    lake = Lake.at(workdir / "sigkill")
    lake.history()
    assert refresh(lake).success
    lake.restatement()
    marks = read_watermarks(lake.store, STREAM)
    before_version = lake.store.version(SETTLEMENT_COST_HH)
    child = subprocess.run(
        [sys.executable, "-m", "margin_pipeline_tests.faults", "--kill-after-merge", lake.root.root],
        capture_output=True,
        text=True,
        timeout=600,
    )
    killed = child.returncode == -signal.SIGKILL
    written = lake.store.version(SETTLEMENT_COST_HH)
    unchanged = read_watermarks(lake.store, STREAM).versions == marks.versions
    result = refresh(lake)
    meta = result.asset_materializations_for_node(NODE)[0].metadata if result.success else {}
    rolled_back = meta["rollback"].value if "rollback" in meta else []
    lost, doubled = map(len, differences(lake.rows(), expected))
    return FaultResult(
        "sigkill_mid_write",
        "SIGKILL of the run process after the output MERGE, before the watermark commit",
        killed and written > before_version and unchanged and result.success and not lost and not doubled,
        lost,
        doubled,
        {
            "child_exit": child.returncode,
            "output_version_before_after_kill": [before_version, written],
            "watermark_unchanged_after_kill": unchanged,
            "next_run_rollback": rolled_back,
            "child_stderr_tail": child.stderr[-300:] if not killed else "",
        },
    )


def _kill_after_merge(root: str) -> None:
    """Child process of :func:`sigkill_mid_write`: run settlement, die right after the output MERGE."""
    lake = Lake.at(Path(root))

    def killing(original: Callable[..., Any]) -> Callable[..., Any]:
        def merge(self: DeltaRsStore, spec: Any, *args: Any, **kwargs: Any) -> Any:
            outcome = original(self, spec, *args, **kwargs)
            if spec.name == SETTLEMENT_COST_HH.name:
                os.kill(os.getpid(), signal.SIGKILL)
            return outcome

        return merge

    with patched(DeltaRsStore, "merge", killing):
        refresh(lake)
    sys.exit("the run finished without being killed")


def commit_conflict_retried(workdir: Path, expected: dict[tuple, dict]) -> FaultResult:
    """A Delta commit conflict on the output MERGE, once: retried with backoff, then succeeds."""
    from deltalake.exceptions import CommitFailedError

    lake = Lake.at(workdir / "conflict")
    lake.history()
    assert refresh(lake).success
    lake.restatement()
    raised: list[str] = []

    def conflicting(original: Callable[..., Any]) -> Callable[..., Any]:
        def merge(self: DeltaRsStore, spec: Any, *args: Any, **kwargs: Any) -> Any:
            if spec.name == SETTLEMENT_COST_HH.name and not raised:
                raised.append(spec.name)
                raise CommitFailedError("injected: a concurrent transaction wrote to the table")
            return original(self, spec, *args, **kwargs)

        return merge

    with patched(DeltaRsStore, "merge", conflicting):
        result = refresh(lake)
    retries = steps_retried(result)
    lost, doubled = map(len, differences(lake.rows(), expected))
    return FaultResult(
        "commit_conflict_retried",
        "CommitFailedError raised once by the output MERGE",
        result.success and retries == 1 and not lost and not doubled,
        lost,
        doubled,
        {"run_success": result.success, "step_retries": retries},
    )


def deterministic_error_not_retried(workdir: Path, expected: dict[tuple, dict]) -> FaultResult:
    """A bug in the plan (a deterministic error): fails at once, nothing written, then a clean run."""
    lake = Lake.at(workdir / "deterministic")
    lake.history()
    assert refresh(lake).success
    lake.restatement()
    rows_before, version_before = lake.rows(), lake.store.version(SETTLEMENT_COST_HH)
    marks = read_watermarks(lake.store, STREAM).versions

    def broken(original: Callable[..., Any]) -> Callable[..., Any]:
        def plan(run: Any) -> Any:
            raise ValueError("injected: a deterministic bug in the plan")

        return plan

    with _patched_plan(broken):
        failed = refresh(lake)
    retries = steps_retried(failed)
    untouched = lake.rows() == rows_before and read_watermarks(lake.store, STREAM).versions == marks
    recovered = refresh(lake)
    lost, doubled = map(len, differences(lake.rows(), expected))
    return FaultResult(
        "deterministic_error_not_retried",
        "ValueError raised by the plan",
        not failed.success and retries == 0 and untouched and recovered.success and not lost and not doubled,
        lost,
        doubled,
        {
            "failed_run_retries": retries,
            "output_version_unchanged": lake.store.version(SETTLEMENT_COST_HH) >= version_before,
            "tables_and_watermarks_untouched": untouched,
        },
    )


@contextmanager
def _patched_plan(replacement: Callable[..., Any]) -> Iterator[None]:
    """Swap the settlement output's plan (a frozen dataclass field) for the duration."""
    out = settlement_output.COST
    original = out.plan
    object.__setattr__(out, "plan", replacement(original))
    try:
        yield
    finally:
        object.__setattr__(out, "plan", original)


def blocking_check_rolls_back(workdir: Path, expected: dict[tuple, dict]) -> FaultResult:
    """A plan that costs a meter with no metering point: known_meters fails after the MERGE, the output is
    restored, the watermark stays, the gate stays closed and one alert names the stream and the check."""
    lake = Lake.at(workdir / "check")
    lake.history()
    assert refresh(lake).success
    lake.restatement()
    rows_before = lake.rows()
    marks = read_watermarks(lake.store, STREAM).versions

    def unknown_meter(original: Callable[..., Any]) -> Callable[..., Any]:
        def plan(run: Any) -> Any:
            from pyspark.sql import functions as F

            desired, scope = original(run)
            return desired.withColumn("mpan_core", F.lit("1999999999993")), scope

        return plan

    instance = dg.DagsterInstance.ephemeral()
    with _patched_plan(unknown_meter):
        failed = refresh(lake, instance)
    restored = lake.rows() == rows_before
    unchanged = read_watermarks(lake.store, STREAM).versions == marks
    gate = gate_request(lake.store)
    gate_closed = isinstance(gate, dg.SkipReason) and "settlement" in (gate.skip_message or "")
    sink = workdir / "check-alerts.jsonl"
    alert = failure_alert(instance, failed.run_id)
    if alert is not None:
        AlertsResource(jsonl_path=str(sink)).send(alert)
    alerts = [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []
    named = len(alerts) == 1 and alerts[0]["stream"] == STREAM and "known_meters" in alerts[0]["title"]
    recovered = refresh(lake)
    lost, doubled = map(len, differences(lake.rows(), expected))
    return FaultResult(
        "blocking_check_rolls_back",
        "a plan bug that costs an unknown meter (check known_meters fails after the write)",
        not failed.success
        and restored
        and unchanged
        and gate_closed
        and named
        and recovered.success
        and not lost
        and not doubled,
        lost,
        doubled,
        {
            "output_restored": restored,
            "watermark_unchanged": unchanged,
            "gate": gate.skip_message if isinstance(gate, dg.SkipReason) else "OPEN",
            "alerts": [{k: a[k] for k in ("kind", "stream", "title")} for a in alerts],
        },
    )


def _bad_name(case: str) -> str:
    return "bad_" + "".join(c if c.isalnum() else "_" for c in case)


def malformed_files_quarantined(workdir: Path, expected: dict[tuple, dict]) -> FaultResult:
    """Every contract rule broken by its own file, dropped in one batch with the valid publication: each
    bad file is quarantined beside an error naming its rule and line; the valid files apply in full."""
    from margin_pipeline_tests.contracts.test_validation import REJECTIONS, text

    lake = Lake.at(workdir / "malformed")
    lake.history()
    assert refresh(lake).success
    drops = {**{_bad_name(n): (feed, text(feed, rows)) for n, (feed, rows, _, _) in REJECTIONS.items()}}
    drops.update({f"good_{feed}": (feed, body) for feed, body in day_feeds("R1", 0.7).items()})
    for name, (feed, body) in drops.items():
        (lake.root.landing / feed).mkdir(parents=True, exist_ok=True)
        (lake.root.landing / feed / f"{name}.csv").write_text(body, encoding="utf-8")
    report = ingest(lake.root, lake.store, pending_files(lake.root))
    record_substrate_version(lake.store, "faults")
    wrong = []
    for case, (feed, _, rule, line) in REJECTIONS.items():
        errors = list((lake.root.quarantine / feed).glob(f"{_bad_name(case)}*.error.json"))
        error = json.loads(errors[0].read_text()) if len(errors) == 1 else {}
        if (error.get("rule"), error.get("line")) != (rule, line):
            wrong.append(f"{case}: {error.get('rule')}@{error.get('line')} (expected {rule}@{line})")
    applied = sorted(Path(f.file).name for f in report.files if f.rejection is None)
    result = refresh(lake)
    lost, doubled = map(len, differences(lake.rows(), expected))
    return FaultResult(
        "malformed_files_quarantined",
        f"{len(REJECTIONS)} malformed files (one per contract rule case) in one batch with the valid ones",
        not wrong
        and len(report.rejected) == len(REJECTIONS)
        and applied == ["good_prices.csv", "good_settlement_volumes.csv"]
        and result.success
        and not lost
        and not doubled,
        lost,
        doubled,
        {"rejected": len(report.rejected), "cases": len(REJECTIONS), "wrong": wrong, "applied": applied},
    )


SCENARIOS = (
    sigkill_mid_write,
    commit_conflict_retried,
    deterministic_error_not_retried,
    blocking_check_rolls_back,
    malformed_files_quarantined,
)


def run_all(workdir: Path) -> list[FaultResult]:
    expected = expected_rows(workdir)
    return [scenario(workdir, expected) for scenario in SCENARIOS]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results/reliability.json")
    parser.add_argument("--kill-after-merge", metavar="DATA_ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kill_after_merge:
        _kill_after_merge(args.kill_after_merge)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp))
    print(f"{'scenario':<34} {'survived':<9} {'rows lost':>9} {'doubled':>8}  fault")
    for r in results:
        print(
            f"{r.scenario:<34} {'yes' if r.survived else 'NO':<9} {r.rows_lost:>9} {r.rows_doubled:>8}  "
            f"{r.fault}"
        )
    survived = sum(r.survived for r in results)
    lost = sum(r.rows_lost for r in results)
    print(f"\nfaults injected {len(results)}, survived {survived}, rows lost {lost}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "faults_injected": len(results),
                "survived": survived,
                "rows_lost": lost,
                "scenarios": [asdict(r) for r in results],
            },
            indent=2,
            default=str,
        )
    )
    sys.exit(0 if survived == len(results) and lost == 0 else 1)


if __name__ == "__main__":
    main()
