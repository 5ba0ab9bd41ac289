"""Ingest throughput and change-feed rows per publication, on a synthetic MHHS history.

    python -m benchmarks.ingest_throughput [--meters 1000] [--days 90] [--seed 7]
                                           [--out benchmarks/results/ingest_throughput.json]

1. Generate ``meters x days`` of landing files into a fresh temporary data root (in a
   spawned child process, so its memory does not count towards the ingest's peak RSS;
   generation time is reported apart and is not ingest).
2. Ingest the history as a deployment would: one batch per as-of day, in publication
   order, each batch being that day's files handed to ``ingest()``. Each batch is timed;
   stage timers wrapped around a few functions of ``margin_pipeline.substrate.ingest`` and
   ``DeltaRsStore`` split the time into parse/validate, Delta log replay, held-state
   reads, MERGE, ingest-log writes and file moves (product code is not modified).
3. After each batch (outside the timed region) read the change feed of every version
   the batch created and count its rows by ``_change_type``, per publication: a
   ``(settlement_date, run_type)`` of volumes or prices, or the new / corrected rows of
   a reference feed (rate corrections, levy restatements).
4. Re-drop already-applied volumes files and check they change nothing (idempotency).
5. Print tables and write every figure, the parameters and the machine as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import logging
import multiprocessing
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from benchmarks.report import (
    RESULTS_DIR,
    Column,
    describe,
    machine_info,
    peak_rss_mb,
    print_table,
    rss_mb,
    timestamp,
    write_json,
)
from margin_pipeline.contracts.feeds import FEEDS, RUN_RANK, Kind
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.base import CHANGE_TYPE, FLOAT_TOLERANCE, TableSpec
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate import ingest as ingest_module
from margin_pipeline.substrate.ingest import FileOutcome, IngestReport, ingest
from margin_pipeline.substrate.tables import INGEST_LOG, INGEST_ORDER, SUBSTRATE
from margin_pipeline.synthetic import Scenario

NAME = "ingest_throughput"
DEFAULT_OUT = RESULTS_DIR / f"{NAME}.json"
VOLUMES = "settlement_volumes"
CHANGE_TYPES = ("insert", "update_preimage", "update_postimage", "delete")
#: How the rows of a reference (upsert) file that hit an existing key are called, per feed.
CORRECTION_LABEL = {
    "charges": "levy restatement",
    "tariff_rates": "rate correction",
    "supply_agreements": "changed agreements",
    "metering_points": "changed metering points",
    "tariffs": "changed tariffs",
}
#: The as-of days compared to tell whether a batch gets slower as the history grows.
GROWTH_WINDOW = 10


# --------------------------------------------------------------------------- generation


def _generate_child(root: str, scenario: dict[str, Any]) -> dict[str, Any]:
    """Runs in a spawned process: write the history, report time, rows and the child's peak RSS."""
    from margin_pipeline.synthetic import generate_history

    started = time.perf_counter()
    summary = generate_history(DataRoot(root=root).landing, Scenario.from_json(scenario))
    return {
        "seconds": time.perf_counter() - started,
        "files": len(summary.files),
        "rows_per_feed": summary.rows_per_feed,
        "total_rows": summary.total_rows,
        "peak_rss_mb": peak_rss_mb(),
    }


def generate(root: DataRoot, scenario: Scenario) -> dict[str, Any]:
    """Generate the history in a spawned child (delta-rs is not fork-safe; spawn keeps RSS apart)."""
    worker = importlib.import_module("benchmarks.ingest_throughput")._generate_child
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(worker, root.root, scenario.to_json()).result()
    result["seconds_with_process_start"] = time.perf_counter() - started
    return result


def batches(root: DataRoot) -> list[tuple[str, list[Path]]]:
    """Landing files grouped by as-of date (the ``<asof-date>_NN_<feed>.csv`` prefix), oldest first."""
    by_date: dict[str, list[Path]] = defaultdict(list)
    for feed in INGEST_ORDER:
        folder = root.landing / feed
        if folder.is_dir():
            for path in folder.glob("*.csv"):
                by_date[path.name.split("_", 1)[0]].append(path)
    return sorted(by_date.items())


# --------------------------------------------------------------------------- stage timers


class StageClock:
    """Exclusive wall time per ``(stage, feed)`` of wrapped functions, plus inclusive time per feed.

    Wrapped calls may nest (MERGE opens the table); each stage gets only its own time, so
    the stages add up to at most the batch time. Only counts while ``enabled``.
    """

    def __init__(self) -> None:
        self.exclusive: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.feed_seconds: dict[str, float] = defaultdict(float)
        self.enabled = False
        self._stack: list[float] = []
        self._feed = "-"
        self._patches: list[tuple[Any, str, Any]] = []

    def wrap(
        self,
        owner: Any,
        name: str,
        stage: str | Callable[[tuple[Any, ...]], str],
        feed_of: Callable[[tuple[Any, ...]], str] | None = None,
    ) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        clock = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not clock.enabled:
                return original(*args, **kwargs)
            label = stage(args) if callable(stage) else stage
            outer_feed = clock._feed
            if feed_of is not None:
                clock._feed = feed_of(args)
            clock._stack.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                children = clock._stack.pop()
                clock.exclusive[(label, clock._feed)] += elapsed - children
                clock.calls[(label, clock._feed)] += 1
                if clock._stack:
                    clock._stack[-1] += elapsed
                if feed_of is not None:
                    clock.feed_seconds[clock._feed] += elapsed
                    clock._feed = outer_feed

        setattr(owner, name, timed)
        self._patches.append((owner, name, original))

    def install(self) -> None:
        def merge_stage(args: tuple[Any, ...]) -> str:
            spec: TableSpec = args[1]
            return "MERGE substrate" if spec.name.startswith("substrate/") else "MERGE ingest_log"

        self.wrap(ingest_module, "_ingest_one", "publish logic (Arrow, Python)", lambda a: a[2].parent.name)
        self.wrap(ingest_module, "_record", "ingest_log row (Python)", lambda a: a[1].feed)
        self.wrap(ingest_module, "_move", "move file to archive", lambda a: a[1].name)
        self.wrap(ingest_module, "read_landing_file", "parse + validate CSV")
        self.wrap(ingest_module, "apply_file", "publish logic (Arrow, Python)")
        self.wrap(DeltaRsStore, "table", "open Delta table (log replay)")
        self.wrap(DeltaRsStore, "ensure_table", "create table")
        self.wrap(DeltaRsStore, "read_arrow", "read held state")
        self.wrap(DeltaRsStore, "merge", merge_stage)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()

    def by_stage(self) -> dict[str, dict[str, float | int]]:
        stages: dict[str, dict[str, float | int]] = {}
        for (label, _feed), seconds in self.exclusive.items():
            entry = stages.setdefault(label, {"seconds": 0.0, "calls": 0})
            entry["seconds"] += seconds
            entry["calls"] += self.calls[(label, _feed)]
        return stages

    def matrix(self) -> dict[str, dict[str, float]]:
        """Seconds per feed per stage."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (label, feed), seconds in self.exclusive.items():
            out[feed][label] = seconds
        return dict(out)


# --------------------------------------------------------------------------- change feed


def _count_by(table: pa.Table, keys: list[str]) -> dict[tuple[Any, ...], int]:
    if table.num_rows == 0:
        return {}
    counted = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    columns = [counted.column(k).to_pylist() for k in keys]
    return dict(zip(zip(*columns, strict=True), counted.column("count_all").to_pylist(), strict=True))


def _differs(left: pa.ChunkedArray, right: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whether two columns differ row by row (null vs value differs; doubles beyond tolerance)."""
    if pa.types.is_floating(left.type):
        values = pc.greater(pc.abs(pc.subtract(left, right)), FLOAT_TOLERANCE)
    else:
        values = pc.not_equal(left, right)
    return pc.fill_null(values, pc.xor(pc.is_null(left), pc.is_null(right)))


def value_changed_updates(changes: pa.Table, spec: TableSpec) -> pa.Table:
    """Post-images of updates whose values changed (MERGE writes no others; a check of that)."""
    kind = changes.column(CHANGE_TYPE)
    key = list(spec.key)
    compared = list(spec.value_columns)
    pre = changes.filter(pc.equal(kind, "update_preimage")).select([*key, *compared])
    post = changes.filter(pc.equal(kind, "update_postimage")).select([*key, *compared])
    if pre.num_rows == 0 or not compared:
        return post.slice(0, 0)
    pairs = pre.join(post, key, join_type="inner", left_suffix="_pre", right_suffix="_post")
    mask = None
    for column in compared:
        differs = _differs(pairs.column(f"{column}_pre"), pairs.column(f"{column}_post"))
        mask = differs if mask is None else pc.or_(mask, differs)
    return pairs.filter(mask)


def _file_rows_by_date(path: Path) -> dict[Any, int]:
    """Data rows per settlement date of a (volumes or prices) landing file."""
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            include_columns=["settlement_date"], column_types={"settlement_date": pa.date32()}
        ),
    )
    return {key[0].isoformat(): n for key, n in _count_by(table, ["settlement_date"]).items()}


def publication_records(
    outcome: FileOutcome, changes: pa.Table, asof: str, spec: TableSpec
) -> list[dict[str, Any]]:
    """One record per publication a file carried, with its change-feed rows by type."""
    applied = outcome.applied
    assert applied is not None
    feed = FEEDS[outcome.feed]
    records: list[dict[str, Any]] = []
    if feed.kind is Kind.PUBLICATION:
        rows_by_date = _file_rows_by_date(Path(outcome.moved_to))
        by_date_type = _count_by(changes, ["settlement_date", CHANGE_TYPE])
        counts = {(d.isoformat(), t): n for (d, t), n in by_date_type.items()}
        real = value_changed_updates(changes, spec)
        real_by_date = {k[0].isoformat(): n for k, n in _count_by(real, ["settlement_date"]).items()}
        for publication in applied.publications:
            day, run = publication.split()
            by_type = {t: counts.get((day, t), 0) for t in CHANGE_TYPES}
            records.append(
                {
                    "type": f"{outcome.feed} {run}",
                    "feed": outcome.feed,
                    "run": run,
                    "asof_date": asof,
                    "settlement_date": day,
                    "file_rows": rows_by_date[day],
                    "cf": by_type,
                    "cf_rows": sum(by_type.values()),
                    # rows whose kwh/quality/price changed (the run is held in publication_runs)
                    "value_changed_rows": by_type["insert"] + by_type["delete"] + real_by_date.get(day, 0),
                }
            )
        for stale in applied.stale:
            records.append(
                {
                    "type": f"{outcome.feed} stale",
                    "feed": outcome.feed,
                    "run": stale.split()[1],
                    "asof_date": asof,
                    "settlement_date": stale.split()[0],
                    "file_rows": rows_by_date.get(stale.split()[0], 0),
                    "cf": dict.fromkeys(CHANGE_TYPES, 0),
                    "cf_rows": 0,
                    "value_changed_rows": 0,
                }
            )
        return records

    # Upsert feed: every new key inserts; the other rows of the file hit a held key.
    by_type = {t: 0 for t in CHANGE_TYPES} | {t: n for (t,), n in _count_by(changes, [CHANGE_TYPE]).items()}
    existing_rows = applied.rows - applied.outcome.inserted
    if applied.outcome.inserted:
        records.append(
            {
                "type": f"{outcome.feed} new rows",
                "feed": outcome.feed,
                "run": None,
                "asof_date": asof,
                "settlement_date": None,
                "file_rows": applied.outcome.inserted,
                "cf": {**dict.fromkeys(CHANGE_TYPES, 0), "insert": by_type["insert"]},
                "cf_rows": by_type["insert"],
                "value_changed_rows": by_type["insert"],
            }
        )
    if existing_rows:
        cf = {**by_type, "insert": 0}
        records.append(
            {
                "type": f"{outcome.feed} {CORRECTION_LABEL.get(outcome.feed, 'existing keys')}",
                "feed": outcome.feed,
                "run": None,
                "asof_date": asof,
                "settlement_date": None,
                "file_rows": existing_rows,
                "cf": cf,
                "cf_rows": sum(cf.values()),
                "value_changed_rows": cf["update_postimage"] + cf["delete"],
            }
        )
    return records


def _type_order(name: str) -> tuple[int, int, str]:
    feed, _, rest = name.partition(" ")
    feed_rank = {VOLUMES: 0, "prices": 1}.get(feed, 2)
    return feed_rank, RUN_RANK.get(rest, 99 if rest == "new rows" else 50), name


def summarise_publications(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per publication type: count, medians of rows in file / change-feed rows / ratios, totals."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_type[record["type"]].append(record)
    rows = []
    for name in sorted(by_type, key=_type_order):
        group = by_type[name]
        file_rows = sum(r["file_rows"] for r in group)
        cf_rows = sum(r["cf_rows"] for r in group)
        changed = sum(r["value_changed_rows"] for r in group)
        rows.append(
            {
                "type": name + (" (new date)" if name.endswith(" SF") else ""),
                "publications": len(group),
                "median_file_rows": statistics.median(r["file_rows"] for r in group),
                "median_cf_rows": statistics.median(r["cf_rows"] for r in group),
                "median_cf_per_file_row": statistics.median(
                    r["cf_rows"] / r["file_rows"] for r in group if r["file_rows"]
                )
                if file_rows
                else None,
                "median_value_changed_rows": statistics.median(r["value_changed_rows"] for r in group),
                "median_value_changed_share": statistics.median(
                    r["value_changed_rows"] / r["file_rows"] for r in group if r["file_rows"]
                )
                if file_rows
                else None,
                "total_file_rows": file_rows,
                "total_cf_rows": cf_rows,
                "total_value_changed_rows": changed,
                "cf_rows_per_value_change": cf_rows / changed if changed else None,
                "cf_by_change_type": {t: sum(r["cf"][t] for r in group) for t in CHANGE_TYPES},
            }
        )
    return rows


# --------------------------------------------------------------------------- ingest loop


def _merge_metrics(report: IngestReport, feed: str) -> dict[str, Any] | None:
    outcomes = [o for o in report.by_feed(feed) if o.applied is not None]
    if not outcomes:
        return None
    metrics = outcomes[-1].applied.outcome.metrics  # type: ignore[union-attr]
    keep = (
        "num_source_rows",
        "num_target_rows_copied",
        "num_target_files_scanned",
        "num_target_files_skipped_during_scan",
        "num_target_files_added",
        "num_target_files_removed",
        "execution_time_ms",
        "scan_time_ms",
        "rewrite_time_ms",
    )
    return {k: metrics.get(k) for k in keep} if metrics else None


def ingest_history(
    root: DataRoot, store: DeltaRsStore, clock: StageClock, progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Ingest every as-of day as one batch; return per-day records, publication records, totals."""
    days: list[dict[str, Any]] = []
    publications: list[dict[str, Any]] = []
    rows_per_feed: Counter[str] = Counter()
    files_per_feed: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    cf_read_seconds = 0.0
    cf_rows_read = 0
    versions = {feed: store.version(spec) for feed, spec in SUBSTRATE.items()}
    for index, (asof, files) in enumerate(batches(root)):
        stages_before = {k: v["seconds"] for k, v in clock.by_stage().items()}
        clock.enabled = True
        started = time.perf_counter()
        report = ingest(root, store, files, run_id=f"bench-{asof}")
        seconds = time.perf_counter() - started
        clock.enabled = False

        batch_rows = 0
        batch_cf = 0
        for outcome in report.files:
            statuses[outcome.status] += 1
            files_per_feed[outcome.feed] += 1
            if outcome.applied is None:
                continue
            rows_per_feed[outcome.feed] += outcome.applied.rows
            batch_rows += outcome.applied.rows
            spec = SUBSTRATE[outcome.feed]
            before, after = versions[outcome.feed], outcome.applied.outcome.version
            read_started = time.perf_counter()
            changes = store.read_changes_arrow(spec, before or 0, after)
            cf_read_seconds += time.perf_counter() - read_started
            cf_rows_read += changes.num_rows
            batch_cf += changes.num_rows
            versions[outcome.feed] = after
            publications.extend(publication_records(outcome, changes, asof, spec))
        day = {
            "asof_date": asof,
            "asof_day": index,
            "files": len(report.files),
            "rows": batch_rows,
            "seconds": seconds,
            "rows_per_s": batch_rows / seconds if seconds else None,
            "us_per_row": seconds / batch_rows * 1e6 if batch_rows else None,
            "cf_rows": batch_cf,
            "rejected": [f"{o.feed}/{o.file}: {o.rejection}" for o in report.rejected],
            "rss_mb": rss_mb(),
            "volumes_merge": _merge_metrics(report, VOLUMES),
            "stages": {k: v["seconds"] - stages_before.get(k, 0.0) for k, v in clock.by_stage().items()},
        }
        days.append(day)
        if progress:
            merge = day["volumes_merge"] or {}
            print(
                f"  {asof} day {index:3d}: {len(files)} files {batch_rows:>9,} rows "
                f"{seconds:6.2f} s  cf {batch_cf:>9,}  rss {day['rss_mb'] or 0:6.0f} MB  "
                f"volumes MERGE scan {merge.get('scan_time_ms', '-')} ms",
                file=sys.stderr,
                flush=True,
            )
    totals = {
        "rows_per_feed": dict(rows_per_feed),
        "files_per_feed": dict(files_per_feed),
        "statuses": dict(statuses),
        "cf_read_seconds": cf_read_seconds,
        "cf_rows_read": cf_rows_read,
    }
    return days, publications, totals


def redrop(root: DataRoot, store: DeltaRsStore, archived: Path, label: str) -> dict[str, Any]:
    """Copy an already-applied file back into landing, ingest it, count what it changed."""
    feed = archived.parent.name
    spec = SUBSTRATE[feed]
    target = root.landing / feed / archived.name
    shutil.copy2(archived, target)
    before = store.version(spec)
    started = time.perf_counter()
    report = ingest(root, store, [target], run_id=f"bench-redrop-{label}")
    seconds = time.perf_counter() - started
    after = store.version(spec)
    changes = store.read_changes_arrow(spec, before or 0, after or 0)
    [outcome] = report.files
    applied = outcome.applied
    return {
        "label": label,
        "file": f"{feed}/{archived.name}",
        "status": outcome.status,
        "rows": applied.rows if applied else None,
        "publications": applied.publications if applied else [],
        "stale": applied.stale if applied else [],
        "inserted": applied.outcome.inserted if applied else None,
        "updated": applied.outcome.updated if applied else None,
        "deleted": applied.outcome.deleted if applied else None,
        "version_before": before,
        "version_after": after,
        "cf_rows": changes.num_rows,
        "seconds": seconds,
        "idempotent": changes.num_rows == 0 and before == after,
    }


def lake_size(root: DataRoot, store: DeltaRsStore) -> dict[str, Any]:
    """Files and MB per table: active data files, all data files on disk (nothing is vacuumed),
    change-data files and commits."""
    tables = {}
    for spec in [*SUBSTRATE.values(), INGEST_LOG]:
        folder = root.lake / spec.name
        if not folder.is_dir():
            continue
        parquet = [p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts]
        cdc = [p for p in parquet if "_change_data" in p.parts]
        tables[spec.name] = {
            "version": store.version(spec),
            "active_files": len(store.files(spec)),
            "data_files_on_disk": len(parquet) - len(cdc),
            "change_data_files": len(cdc),
            "mb": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2,
        }
    total = sum(p.stat().st_size for p in root.lake.rglob("*") if p.is_file()) / 1024**2
    return {"total_mb": total, "tables": tables}


def _compare(first: list[dict[str, Any]], last: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per batch of two groups of as-of days: seconds, rows, us/row, MERGE scan, stages."""

    def median(group: list[dict[str, Any]], value: Callable[[dict[str, Any]], Any]) -> float | None:
        values = [v for v in map(value, group) if v is not None]
        return statistics.median(values) if values else None

    def pair(value: Callable[[dict[str, Any]], Any]) -> dict[str, float | None]:
        a, b = median(first, value), median(last, value)
        return {"first": a, "last": b, "ratio": b / a if a and b is not None else None}

    names = sorted({name for d in first + last for name in d["stages"]})
    return {
        "first_days": [d["asof_day"] for d in first],
        "last_days": [d["asof_day"] for d in last],
        "seconds": pair(lambda d: d["seconds"]),
        "rows": pair(lambda d: d["rows"]),
        "us_per_row": pair(lambda d: d["us_per_row"]),
        "volumes_merge_scan_ms": pair(lambda d: (d["volumes_merge"] or {}).get("scan_time_ms")),
        "stage_seconds": {name: pair(lambda d, n=name: d["stages"].get(n, 0.0)) for name in names},
    }


def _growth(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Does a batch get slower as the history grows?

    ``first_vs_last``: median of the first vs the last ``GROWTH_WINDOW`` as-of days (day 0,
    reference data only, left out); confounded by batch size, since restatements start
    arriving over the first ``RF offset`` days. ``steady_state``: the same comparison
    among days that publish every run (rows within 5% of the largest batch), i.e. equal
    work on a longer history; its slope is the extra batch time per as-of day of history.
    """
    daily = [d for d in days if d["asof_day"] >= 1 and d["rows"]]
    window = min(GROWTH_WINDOW, len(daily) // 2) or 1
    out: dict[str, Any] = {"window_days": window, "first_vs_last": _compare(daily[:window], daily[-window:])}
    largest = max((d["rows"] for d in daily), default=0)
    steady = [d for d in daily if d["rows"] >= 0.95 * largest]
    span = min(GROWTH_WINDOW, len(steady) // 2)
    if span >= 2:
        out["steady_state"] = _compare(steady[:span], steady[-span:])
        slope = statistics.linear_regression([d["asof_day"] for d in steady], [d["seconds"] for d in steady])
        out["steady_state"]["slope_ms_per_day_of_history"] = slope.slope * 1000
        ratio = out["steady_state"]["seconds"]["ratio"]
        out["grows"] = bool(ratio and ratio > 1.1)
    else:
        out["steady_state"] = None
        out["grows"] = None
    return out


# --------------------------------------------------------------------------- run and report


def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = Scenario(meters=args.meters, days=args.days, seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="margin-bench-", dir=args.workdir))
    root = DataRoot(root=str(workdir))
    store = DeltaRsStore(lake_root=str(root.lake))
    clock = StageClock()
    profiler = cProfile.Profile() if args.profile else None
    try:
        print(f"generating {args.meters} meters x {args.days} days into {workdir} ...", file=sys.stderr)
        generation = generate(root, scenario)
        print(
            f"  {generation['total_rows']:,} rows in {generation['files']} files, "
            f"{generation['seconds']:.1f} s",
            file=sys.stderr,
        )
        baseline_rss = rss_mb()
        clock.install()
        print("ingesting one batch per as-of day ...", file=sys.stderr)
        if profiler:
            profiler.enable()
        days, publications, totals = ingest_history(root, store, clock, progress=not args.quiet)
        if profiler:
            profiler.disable()
        clock.uninstall()
        peak = peak_rss_mb()

        archived = sorted((root.archive / VOLUMES).glob("*.csv"))
        redrops = [redrop(root, store, archived[-1], "latest (same runs held)")]
        if len(archived) > 1:
            redrops.append(redrop(root, store, archived[0], "earliest (higher runs held)"))
        lake = lake_size(root, store)
    finally:
        clock.uninstall()
        if args.keep:
            print(f"data root kept at {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    total_seconds = sum(d["seconds"] for d in days)
    total_rows = sum(d["rows"] for d in days)
    stages = clock.by_stage()
    attributed = sum(s["seconds"] for s in stages.values())
    stages["unattributed (ingest loop)"] = {"seconds": max(0.0, total_seconds - attributed), "calls": 0}
    per_feed = {
        feed: {
            "files": totals["files_per_feed"].get(feed, 0),
            "rows": totals["rows_per_feed"].get(feed, 0),
            "seconds": clock.feed_seconds.get(feed, 0.0),
            "rows_per_s": totals["rows_per_feed"].get(feed, 0) / clock.feed_seconds[feed]
            if clock.feed_seconds.get(feed)
            else None,
        }
        for feed in INGEST_ORDER
        if totals["files_per_feed"].get(feed)
    }
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "timestamp": timestamp(),
        "machine": machine_info(),
        "parameters": {**scenario.to_json(), "batches": len(days), "batch": "one ingest() per as-of day"},
        "generation": generation,
        "ingest": {
            "batches": len(days),
            "files": sum(d["files"] for d in days),
            "rows": total_rows,
            "rows_check": {
                "generated": generation["rows_per_feed"],
                "ingested": totals["rows_per_feed"],
                "equal": {k: v for k, v in generation["rows_per_feed"].items() if v}
                == totals["rows_per_feed"],
            },
            "statuses": totals["statuses"],
            "seconds": total_seconds,
            "rows_per_s": total_rows / total_seconds if total_seconds else None,
            "baseline_rss_mb": baseline_rss,
            "peak_rss_mb": peak,
            "batch_seconds": describe(d["seconds"] for d in days),
            "batch_seconds_excluding_day0": describe(d["seconds"] for d in days if d["asof_day"] >= 1),
            "growth": _growth(days),
            "per_feed": per_feed,
            "stages": dict(sorted(stages.items(), key=lambda kv: -kv[1]["seconds"])),
            "stages_by_feed": clock.matrix(),
        },
        "change_feed": {
            "read_seconds": totals["cf_read_seconds"],
            "rows_read": totals["cf_rows_read"],
            "by_publication_type": summarise_publications(publications),
            "publications": publications,
        },
        "redrop": redrops,
        "lake": lake,
        "days": days,
    }
    if profiler:
        profiler.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        payload["profile"] = {"path": str(args.profile), "top_tottime": text.getvalue()}
        print(text.getvalue(), file=sys.stderr)
    return payload


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def print_report(payload: dict[str, Any]) -> None:
    p, g, i, cf = payload["parameters"], payload["generation"], payload["ingest"], payload["change_feed"]
    m = payload["machine"]
    growth = i["growth"]
    naive, steady = growth["first_vs_last"], growth["steady_state"]
    batch = i["batch_seconds"]
    print(
        f"ingest_throughput  {payload['timestamp']}  {m['platform']}  {m['cpu_count']} CPUs  "
        f"{m['memory_gib']} GiB  Python {m['python']}  pyarrow {m['packages']['pyarrow']}  "
        f"deltalake {m['packages']['deltalake']}\n"
    )
    summary = [
        ("history", f"{p['meters']:,} meters x {p['days']} days, seed {p['seed']}, {p['batches']} batches"),
        ("generation (not ingest)", f"{g['seconds']:.1f} s, {g['total_rows']:,} rows, {g['files']} files"),
        ("rows in files", f"{i['rows']:,}"),
        ("ingest wall time", f"{i['seconds']:.1f} s"),
        ("ingest throughput", f"{i['rows_per_s']:,.0f} rows/s"),
        ("peak RSS (ingest process)", f"{_mb(i['peak_rss_mb'])} (after imports {_mb(i['baseline_rss_mb'])})"),
        ("batch s min / median / max", f"{batch['min']:.2f} / {batch['median']:.2f} / {batch['max']:.2f}"),
        (
            f"batch s, median first vs last {growth['window_days']} days",
            f"{naive['seconds']['first']:.2f} -> {naive['seconds']['last']:.2f} "
            f"(x{naive['seconds']['ratio']:.2f}; rows x{naive['rows']['ratio']:.2f})",
        ),
        (
            "same-size batches, first vs last",
            "-"
            if steady is None
            else f"days {steady['first_days'][0]}-{steady['first_days'][-1]} vs "
            f"{steady['last_days'][0]}-{steady['last_days'][-1]}: "
            f"{steady['seconds']['first']:.2f} -> {steady['seconds']['last']:.2f} s "
            f"(x{steady['seconds']['ratio']:.2f}, +{steady['slope_ms_per_day_of_history']:.0f} ms per day)",
        ),
        ("batch time grows with history", {True: "yes", False: "no", None: "-"}[growth["grows"]]),
        (
            "volumes MERGE scan ms, same-size batches",
            "-"
            if steady is None
            else f"{steady['volumes_merge_scan_ms']['first'] or 0:,.0f} -> "
            f"{steady['volumes_merge_scan_ms']['last'] or 0:,.0f}",
        ),
        ("change feed read (not ingest)", f"{cf['rows_read']:,} rows in {cf['read_seconds']:.1f} s"),
        ("lake on disk", f"{payload['lake']['total_mb']:,.0f} MB"),
    ]
    print_table([{"figure": k, "value": v} for k, v in summary], ["figure", "value"], "Ingest")

    feeds = [{"feed": feed, **figures} for feed, figures in i["per_feed"].items()]
    for row in feeds:
        row["share"] = row["seconds"] / i["seconds"] if i["seconds"] else None
    print_table(
        feeds,
        [
            "feed",
            Column("files", fmt=","),
            Column("rows", fmt=","),
            Column("seconds", fmt=".1f"),
            Column("rows_per_s", "rows/s", ",.0f"),
            Column("share", "time share", ".1%"),
        ],
        "Throughput per feed (time = the feed's files in ingest(), incl. their ingest_log rows)",
    )
    stages = [
        {"stage": name, **figures, "share": figures["seconds"] / i["seconds"] if i["seconds"] else None}
        for name, figures in i["stages"].items()
    ]
    print_table(
        stages,
        ["stage", Column("calls", fmt=","), Column("seconds", fmt=".1f"), Column("share", fmt=".1%")],
        "Where ingest time goes (exclusive time per stage, all feeds)",
    )
    compared = steady or naive
    by_stage = sorted(compared["stage_seconds"].items(), key=lambda kv: -(kv[1]["last"] or 0))
    first = f"days {compared['first_days'][0]}-{compared['first_days'][-1]}"
    last = f"days {compared['last_days'][0]}-{compared['last_days'][-1]}"
    print_table(
        [{"stage": name, **f} for name, f in by_stage],
        ["stage", Column("first", first, ".3f"), Column("last", last, ".3f"), Column("ratio", "x", ".2f")],
        "Growth with history: median seconds per batch by stage" + (" (same-size batches)" if steady else ""),
    )
    print_table(
        cf["by_publication_type"],
        [
            "type",
            Column("publications", "n", ","),
            Column("median_file_rows", "file rows", ",.0f"),
            Column("median_cf_rows", "CF rows", ",.0f"),
            Column("median_cf_per_file_row", "CF/file", ".3f"),
            Column("median_value_changed_rows", "values changed", ",.0f"),
            Column("median_value_changed_share", "changed/file", ".2%"),
            Column("cf_rows_per_value_change", "CF/change", ".1f"),
        ],
        "Change-feed rows per publication (medians; 'values changed' = rows whose values changed)",
    )
    print_table(
        payload["redrop"],
        [
            "label",
            "file",
            "status",
            Column("rows", fmt=","),
            Column("cf_rows", "CF rows", ","),
            "version_before",
            "version_after",
            Column("seconds", fmt=".2f"),
            "idempotent",
        ],
        "Re-drop of an already-applied volumes file",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp data root")
    parser.add_argument("--keep", action="store_true", help="keep the temp data root")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the ingest loop into PATH")
    parser.add_argument("--quiet", action="store_true", help="no per-day progress on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    payload = run(args)
    print_report(payload)
    path = write_json(args.out, payload)
    print(f"results written to {path}")
    rejected = [r for d in payload["days"] for r in d["rejected"]]
    if rejected:
        print(f"WARNING: {len(rejected)} file(s) rejected: {rejected[:3]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
