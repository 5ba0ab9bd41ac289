"""Incremental vs full recompute of the five stream assets after one day's publication.

    python -m benchmarks.stream_incremental [--meters 1000] [--days 30 90 180] [--seed 7]
                                            [--out benchmarks/results/stream_incremental.json]

For each history length D (ascending):

1. The history: as-of days ``0..D-1`` of ``Scenario(meters, days=max(D), seed)`` are ingested
   (one ``ingest()`` per as-of day, a substrate version recorded after each) and the streams
   have processed substrate version ``N(D-1)`` (a full build for the first D, a full rebuild
   pinned at ``N(D-1)`` after that).
2. The publication: as-of day D (the SF of a new settlement date plus the restatements due
   that day) is substrate version ``N(D)``.
3. Incremental: the five stream assets are materialized one by one, pinned at ``N(D)``, on
   the lake holding the history: their change range is exactly day D's publication.
4. Full: ``lake/substrate`` and ``lake/control/substrate_versions`` are copied into a fresh
   lake and the five assets are materialized there pinned at ``N(D)`` (no watermarks: full).

The whole history (as-of days ``0..max(D)``) is generated and ingested once, before any
stream runs; streams pin the substrate version, so a stream run pinned at ``N(D)`` sees
exactly the substrate "as of after day D" (the generator is prefix-stable:
``generate_next_day`` relies on it). Ingest is not what is measured here.

Per asset the figures are the materialization's metadata (``StreamRun.metadata``: mode,
rows_read = change-feed + snapshot rows, each per source, full_rescan_rows, rows written,
wall_seconds) and the wall time of the ``dg.materialize`` call around it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.ingest_throughput import batches, generate
from benchmarks.report import (
    RESULTS_DIR,
    Column,
    RssSampler,
    machine_info,
    peak_rss_mb,
    print_table,
    timestamp,
    write_json,
)
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.ingest import ingest
from margin_pipeline.substrate.tables import RUNS, SUBSTRATE
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline.synthetic import Scenario

NAME = "stream_incremental"
DEFAULT_OUT = RESULTS_DIR / f"{NAME}.json"
PREPARED = "stream_incremental_prepared.json"
VOLUMES = "settlement_volumes"
#: Incremental wall time "grows with history" when the longest history's exceeds the shortest's by this.
GROWTH_TOLERANCE = 1.10
#: Issue 13's targets at the longest history: incremental rows read as a % of full, at most; full
#: recompute seconds over incremental seconds, at least.
TARGET_ROWS_READ_PCT = 1.0
TARGET_SPEEDUP = 20.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- substrate


def prepare(root: DataRoot, scenario: Scenario) -> dict[str, Any]:
    """Generate and ingest as-of days ``0..scenario.days``, one batch each; substrate version per day.

    Reused when ``root`` already holds a prepared substrate of the same scenario.
    """
    marker = Path(root.root) / PREPARED
    if marker.exists():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved["scenario"] == json.loads(json.dumps(scenario.to_json(), default=str)):
            log(f"reusing the prepared substrate in {root.root}")
            return saved
    store = DeltaRsStore(lake_root=str(root.lake))
    log(f"generating {scenario.meters} meters x {scenario.days} days into {root.root} ...")
    generation = generate(root, scenario)
    log(f"  {generation['total_rows']:,} rows in {generation['files']} files, {generation['seconds']:.1f} s")
    started = time.perf_counter()
    days = []
    for index, (asof, files) in enumerate(batches(root)):
        batch_started = time.perf_counter()
        report = ingest(root, store, files, run_id=f"bench-{asof}")
        if report.rejected:
            raise RuntimeError(f"as-of day {index}: rejected {[str(f.rejection) for f in report.rejected]}")
        pin = record_substrate_version(store, f"bench-{asof}")
        rows = sum(o.applied.rows for o in report.files if o.applied is not None)
        days.append(
            {
                "asof_day": index,
                "asof_date": asof,
                "substrate_version": pin.number,
                "tables": pin.tables,
                "files": len(files),
                "rows": rows,
                "seconds": time.perf_counter() - batch_started,
            }
        )
        if index % 10 == 0 or index == scenario.days:
            log(f"  ingested as-of day {index} ({asof}): {rows:,} rows, N={pin.number}")
    prepared = {
        "scenario": json.loads(json.dumps(scenario.to_json(), default=str)),
        "generation": generation,
        "ingest_seconds": time.perf_counter() - started,
        "days": days,
    }
    marker.write_text(json.dumps(prepared, indent=2, default=str), encoding="utf-8")
    return prepared


def publication(store: DeltaRsStore, before: dict[str, int | None], after: dict[str, int | None]) -> dict:
    """What as-of day D published, from the change feed of each substrate table between two pins.

    For ``settlement_volumes``: the new dates (inserts), the restated dates and their new runs (from
    ``publication_runs``, which holds the run per date) and the rows whose kWh/quality changed.
    """
    tables: dict[str, Any] = {}
    feeds: dict[str, pa.Table] = {}
    for feed, spec in SUBSTRATE.items():
        start, end = before.get(feed), after.get(feed)
        if end is None or start == end:
            continue
        changes = store.read_changes_arrow(spec, -1 if start is None else start, end)
        feeds[feed] = changes
        counts = {k: int(v) for k, v in zip(*_value_counts(changes.column("_change_type")), strict=True)}
        tables[feed] = {"cf_rows": changes.num_rows, "by_change_type": counts}
    if VOLUMES in tables:
        tables[VOLUMES].update(_volume_split(feeds[VOLUMES], feeds.get(RUNS)))
    return tables


def _value_counts(values: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counted = pc.value_counts(values).to_pylist()
    return [c["values"] for c in counted], [c["counts"] for c in counted]


def _volume_split(changes: pa.Table, runs: pa.Table | None) -> dict[str, Any]:
    types = changes.column("_change_type")
    inserts = changes.filter(pc.equal(types, "insert"))
    restated: dict[str, str] = {}
    if runs is not None:
        moved = runs.filter(
            pc.and_(
                pc.equal(runs.column("feed"), VOLUMES),
                pc.equal(runs.column("_change_type"), "update_postimage"),
            )
        )
        restated = {str(r["settlement_date"]): r["run_type"] for r in moved.to_pylist()}
    return {
        "new_dates": sorted(str(d) for d in pc.unique(inserts.column("settlement_date")).to_pylist()),
        "restated_dates": sorted(restated),
        "restated_runs": dict(sorted(restated.items())),
        "inserted_rows": inserts.num_rows,
        "updated_rows": int(pc.sum(pc.equal(types, "update_postimage")).as_py() or 0),
        "deleted_rows": int(pc.sum(pc.equal(types, "delete")).as_py() or 0),
    }


def recorded_days(store: DeltaRsStore, needed: int, wait: bool) -> dict[int, dict[str, Any]]:
    """As-of day -> its substrate version and table versions, from ``control/substrate_versions``
    (the run id of each is ``bench-<asof-date>``). With ``wait``, polls until ``needed`` days are
    recorded (a concurrent ``--prepare-only`` is still ingesting)."""
    from margin_pipeline.substrate.tables import SUBSTRATE_VERSIONS

    while True:
        rows = (
            store.read_arrow(SUBSTRATE_VERSIONS).to_pylist()
            if store.version(SUBSTRATE_VERSIONS) is not None
            else []
        )
        pins: dict[int, dict[str, Any]] = {}
        for row in rows:
            pin = pins.setdefault(row["substrate_version"], {"run_id": row["run_id"], "tables": {}})
            pin["tables"][row["table"]] = row["delta_version"]
        ordered = sorted(pins.items())
        if len(ordered) >= needed or not wait:
            break
        log(f"waiting for ingest: {len(ordered)} of {needed} as-of days recorded")
        time.sleep(30)
    return {
        index: {
            "asof_day": index,
            "asof_date": pin["run_id"].removeprefix("bench-"),
            "substrate_version": number,
            "tables": pin["tables"],
        }
        for index, (number, pin) in enumerate(ordered)
    }


# --------------------------------------------------------------------------- streams


def assets() -> list[tuple[Any, Any]]:
    """The five stream assets in dependency order (as the incremental-equals-full test runs them),
    each with the asset key of its output (``monthly_margin``'s asset also writes the margin bridge)."""
    from margin_pipeline.defs.streams.assets import ASSETS
    from margin_pipeline.streams.registry import published_tables

    tables = published_tables()
    return [(asset, tables[name].asset_key) for name, asset in ASSETS.items()]


#: The margin bridge's figures, kept on the monthly_margin record (the same run writes both).
BRIDGE_KEYS = ("mode", "account_months_moved", "bridge_rows", "substrate_rows_read", "wall_seconds")


METADATA_KEYS = (
    "mode",
    "full_rebuild_reason",
    "substrate_version",
    "rows_read",
    "change_feed_rows_read",
    "snapshot_rows_read",
    "full_rescan_rows",
    "rows_read_pct_of_full",
    "keys_recomputed",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "wall_seconds",
    "output_version",
)


def run_streams(
    store: DeltaRsStore, engine: Any, pin: int, full_rebuild: bool = False, label: str = ""
) -> list[dict[str, Any]]:
    """Materialize each stream asset on its own (dependency order), pinned at substrate version ``pin``."""
    import dagster as dg

    from margin_pipeline.gold import MARGIN_BRIDGE
    from margin_pipeline.orchestration.runs import by_source, plain

    records = []
    for asset, key in assets():
        config = {"substrate_version": pin, "full_rebuild": full_rebuild}
        run_config = {"ops": {asset.node_def.name: {"config": config}}}
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        rss = RssSampler()
        try:
            result = dg.materialize(
                [asset], resources={"store": store, "spark": engine}, run_config=run_config
            )
        finally:
            peak_mb, _ = rss.take()
            rss.stop()
        seconds = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"{key.to_user_string()} failed ({label})")
        events = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
        metadata = {k: plain(v) for k, v in events[key].items()}
        record = {"asset": key.to_user_string(), **{k: metadata.get(k) for k in METADATA_KEYS}}
        if MARGIN_BRIDGE.asset_key in events:
            bridge = {k: plain(v) for k, v in events[MARGIN_BRIDGE.asset_key].items()}
            record["margin_bridge"] = {k: bridge.get(k) for k in BRIDGE_KEYS}
        record["change_feed_rows_by_source"] = by_source(metadata, "change_feed_rows")
        record["snapshot_rows_by_source"] = by_source(metadata, "snapshot_rows")
        record["run_restamp_commits_skipped"] = {
            s: n for s, n in by_source(metadata, "restamps_skipped").items() if n
        }
        record["materialize_seconds"] = seconds
        # The process's peak RSS during the call (the engine server runs inside it, so its memory too).
        record["peak_rss_gb"] = round(peak_mb / 1024, 2)
        # Other work shares the machine: the 1-minute load average before and after the call.
        record["loadavg_1m"] = [load_before, os.getloadavg()[0]]
        records.append(record)
        log(
            f"  {label} {record['asset']}: {record['mode']}, read {record['rows_read']:,} rows "
            f"({record['rows_read_pct_of_full']}% of full), +{record['rows_inserted']:,} "
            f"~{record['rows_updated']:,} -{record['rows_deleted']:,}, {seconds:.1f} s, "
            f"peak {record['peak_rss_gb']} GB"
            + (f"; bridge {record['margin_bridge']}" if "margin_bridge" in record else "")
        )
    return records


def forget_pairs(store: DeltaRsStore, number: int) -> None:
    """Forget the margin bridge's pairs to substrate version ``number`` and later (their history rows
    and bridge rows). Attached to a lake an earlier run of the benchmark left, the pairs this run is
    about to record are recorded and explained already, and a replay of a pair leaves it be: without
    this, the monthly runs would not explain their movements, as they do on a fresh lake."""
    from margin_pipeline.gold import MARGIN_BRIDGE
    from margin_pipeline.store.base import replace_rows
    from margin_pipeline.streams.monthly.bridge import MARGIN_HISTORY

    for spec in (MARGIN_HISTORY, MARGIN_BRIDGE):
        if store.version(spec) is not None:
            held = store.read_arrow(spec)
            gone = held.filter(pc.greater_equal(held.column("to_version"), number))
            if gone.num_rows:
                replace_rows(store, spec, spec.schema.empty_table(), gone, None)


def fresh_lake(source: DataRoot, workdir: Path, name: str) -> DeltaRsStore:
    """A new lake holding only the substrate and its versions (what a full recompute starts from)."""
    lake = workdir / name / "lake"
    shutil.rmtree(lake.parent, ignore_errors=True)
    shutil.copytree(source.lake / "substrate", lake / "substrate")
    shutil.copytree(source.lake / "control" / "substrate_versions", lake / "control" / "substrate_versions")
    return DeltaRsStore(lake_root=str(lake))


def proxy_full(incremental: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``--skip-full``: what a full recompute would read is the incremental run's ``full_rescan_rows``
    (equal to a measured full run's rows read at every size measured); its wall time is taken from
    the history rebuild, a full rebuild pinned at ``N(D-1)`` (one settlement date less)."""
    return [
        {
            "asset": inc["asset"],
            "mode": "full (not run: rows = full_rescan_rows, seconds = history rebuild at N(D-1))",
            "rows_read": inc["full_rescan_rows"],
            "full_rescan_rows": inc["full_rescan_rows"],
            "materialize_seconds": hist["materialize_seconds"],
            "wall_seconds": hist["wall_seconds"],
            "proxy": True,
        }
        for inc, hist in zip(incremental, history, strict=True)
    ]


def warm_engine(engine: Any) -> float:
    """Start the engine (and its session) before anything is timed; the resource keeps the session."""
    started = time.perf_counter()
    engine.spark_session.range(1).count()
    return time.perf_counter() - started


def summarise(days: int, incremental: list[dict[str, Any]], full: list[dict[str, Any]]) -> dict[str, Any]:
    per_asset = []
    for inc, ful in zip(incremental, full, strict=True):
        per_asset.append(
            {
                "asset": inc["asset"],
                "incremental_rows_read": inc["rows_read"],
                "full_rows_read": ful["rows_read"],
                "rows_read_pct": 100.0 * inc["rows_read"] / ful["rows_read"] if ful["rows_read"] else None,
                "incremental_seconds": inc["materialize_seconds"],
                "full_seconds": ful["materialize_seconds"],
                "wall_pct": 100.0 * inc["materialize_seconds"] / ful["materialize_seconds"],
            }
        )
    inc_rows = sum(r["rows_read"] for r in incremental)
    full_rows = sum(r["rows_read"] for r in full)
    inc_wall = sum(r["materialize_seconds"] for r in incremental)
    full_wall = sum(r["materialize_seconds"] for r in full)
    return {
        "days": days,
        "per_asset": per_asset,
        "incremental_rows_read": inc_rows,
        "full_rows_read": full_rows,
        "rows_read_pct": 100.0 * inc_rows / full_rows if full_rows else None,
        "incremental_seconds": inc_wall,
        "full_seconds": full_wall,
        "wall_pct": 100.0 * inc_wall / full_wall if full_wall else None,
    }


def attribution(incremental: list[dict[str, Any]]) -> dict[str, Any]:
    """Incremental rows read by origin (change feed and snapshot per source, all five assets), and the
    run re-stamp commits the consumers of ``settlement_cost_hh`` left out of their change feeds."""
    totals: dict[str, int] = {}
    skipped: dict[str, Any] = {}
    for record in incremental:
        for source, rows in (record["change_feed_rows_by_source"] or {}).items():
            totals[f"change feed {source}"] = totals.get(f"change feed {source}", 0) + rows
        for source, rows in (record["snapshot_rows_by_source"] or {}).items():
            totals[f"snapshot {source}"] = totals.get(f"snapshot {source}", 0) + rows
        if record.get("run_restamp_commits_skipped"):
            skipped[record["asset"]] = record["run_restamp_commits_skipped"]
    return {
        "rows_read": sum(r["rows_read"] for r in incremental),
        "totals": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
        "run_restamp_commits_skipped": skipped,
    }


# --------------------------------------------------------------------------- run and report


def run(args: argparse.Namespace) -> dict[str, Any]:
    from margin_pipeline.engines import LOCAL_SPARK_CONFIG, SparkEngine

    engine = SparkEngine()
    lengths = sorted(set(args.days))
    scenario = Scenario(meters=args.meters, days=lengths[-1], seed=args.seed)
    if args.data_root:
        workdir = Path(args.data_root)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="margin-bench-stream-", dir=args.workdir))
    root = DataRoot(root=str(workdir / "history"))
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "timestamp": timestamp(),
        "machine": machine_info(("pyarrow", "deltalake", "pyspark", "pysail", "dagster", "numpy")),
        "parameters": {
            "meters": args.meters,
            "days": lengths,
            "seed": args.seed,
            "scenario": scenario.to_json(),
            "engine": engine.engine,
            "spark_config": LOCAL_SPARK_CONFIG if engine.engine == "spark" else None,
            "materialize": "one dg.materialize per asset, dependency order, pinned substrate_version",
        },
        "results": [],
    }
    try:
        store = DeltaRsStore(lake_root=str(root.lake))
        if args.attach:
            payload["prepare"] = {"attached": str(root.root)}
        else:
            prepared = prepare(root, scenario)
            payload["prepare"] = {k: v for k, v in prepared.items() if k != "days"}
            payload["prepare"]["days"] = [
                {k: v for k, v in d.items() if k != "tables"} for d in prepared["days"]
            ]
        if args.prepare_only:
            return payload
        payload["engine_start_seconds"] = warm_engine(engine)
        for days in lengths:
            by_day = recorded_days(store, days + 1, wait=args.attach)
            history, day = by_day[days - 1], by_day[days]
            log(f"D={days}: history = as-of days 0..{days - 1} (N={history['substrate_version']})")
            if args.attach:
                forget_pairs(store, history["substrate_version"])
            started = time.perf_counter()
            history_runs = run_streams(
                store, engine, history["substrate_version"], full_rebuild=True, label="history"
            )
            history_seconds = time.perf_counter() - started
            published = publication(store, history["tables"], day["tables"])
            vol = published.get(VOLUMES, {})
            log(
                f"D={days}: day {days} publishes {vol.get('new_dates')} + restated "
                f"{vol.get('restated_runs')} ({vol.get('cf_rows', 0):,} volumes CF rows)"
            )
            incremental = run_streams(store, engine, day["substrate_version"], label="incremental")
            if args.skip_full:
                full = proxy_full(incremental, history_runs)
            else:
                full_store = fresh_lake(root, workdir, f"full-{days}")
                full = run_streams(full_store, engine, day["substrate_version"], label="full")
                shutil.rmtree(workdir / f"full-{days}", ignore_errors=True)
            result = {
                "days": days,
                "history_substrate_version": history["substrate_version"],
                "publication_substrate_version": day["substrate_version"],
                "publication_asof_date": day["asof_date"],
                "publication": published,
                "history_build": {"seconds": history_seconds, "assets": history_runs},
                "incremental": incremental,
                "full": full,
                "full_measured": not args.skip_full,
                "summary": summarise(days, incremental, full),
                "attribution": attribution(incremental),
                "peak_rss_mb": peak_rss_mb(),
            }
            payload["results"].append(result)
            payload["summary"] = overall(payload["results"])
            payload["timestamp"] = timestamp()
            write_json(args.out, payload)
            log(f"D={days}: written to {args.out}")
    finally:
        if args.data_root is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"data root kept at {workdir}")
    return payload


def overall(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets (issue 13, which tightened issue 3's <= 2%): at the longest history, incremental
    rows read <= 1% of full and an incremental run >= 20x faster than the full recompute; an
    incremental wall time that does not grow with history length."""
    rows = [r["summary"] for r in results]
    longest, shortest = rows[-1], rows[0]
    speedup = (
        longest["full_seconds"] / longest["incremental_seconds"] if longest["incremental_seconds"] else None
    )
    growth = longest["incremental_seconds"] / shortest["incremental_seconds"] if len(rows) > 1 else None
    slope = None
    if len(rows) > 2:
        slope = statistics.linear_regression(
            [r["days"] for r in rows], [r["incremental_seconds"] for r in rows]
        )
        slope = slope.slope
    return {
        "rows_read_pct_by_days": {r["days"]: r["rows_read_pct"] for r in rows},
        "incremental_seconds_by_days": {r["days"]: r["incremental_seconds"] for r in rows},
        "full_seconds_by_days": {r["days"]: r["full_seconds"] for r in rows},
        "target_rows_read_pct": TARGET_ROWS_READ_PCT,
        "rows_read_target_days": longest["days"],
        "rows_read_target_met": longest["rows_read_pct"] is not None
        and longest["rows_read_pct"] <= TARGET_ROWS_READ_PCT,
        "full_over_incremental": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "speedup_target_met": speedup is not None and speedup >= TARGET_SPEEDUP,
        "incremental_wall_growth": growth,
        "incremental_wall_slope_s_per_day": slope,
        "incremental_wall_grows": None if growth is None else growth > GROWTH_TOLERANCE,
    }


def print_report(payload: dict[str, Any]) -> None:
    m = payload["machine"]
    print(
        f"stream_incremental  {payload['timestamp']}  {m['platform']}  {m['cpu_count']} CPUs  "
        f"{m['memory_gib']} GiB  Python {m['python']}  pyspark {m['packages'].get('pyspark')}  "
        f"deltalake {m['packages'].get('deltalake')}\n"
    )
    for result in payload["results"]:
        rows = []
        for inc, ful, s in zip(
            result["incremental"], result["full"], result["summary"]["per_asset"], strict=True
        ):
            rows.append(
                {
                    "asset": inc["asset"],
                    "cf": inc["change_feed_rows_read"],
                    "snap": inc["snapshot_rows_read"],
                    "inc": inc["rows_read"],
                    "full": ful["rows_read"],
                    "pct": s["rows_read_pct"],
                    "written": inc["rows_inserted"] + inc["rows_updated"] + inc["rows_deleted"],
                    "inc_s": inc["materialize_seconds"],
                    "full_s": ful["materialize_seconds"],
                    "wall_pct": s["wall_pct"],
                }
            )
        s = result["summary"]
        rows.append(
            {
                "asset": "all five",
                "cf": sum(r["cf"] for r in rows),
                "snap": sum(r["snap"] for r in rows),
                "inc": s["incremental_rows_read"],
                "full": s["full_rows_read"],
                "pct": s["rows_read_pct"],
                "written": sum(r["written"] for r in rows),
                "inc_s": s["incremental_seconds"],
                "full_s": s["full_seconds"],
                "wall_pct": s["wall_pct"],
            }
        )
        vol = result["publication"].get(VOLUMES, {})
        print_table(
            rows,
            [
                "asset",
                Column("cf", "inc CF rows", ","),
                Column("snap", "inc snapshot rows", ","),
                Column("inc", "inc rows read", ","),
                Column("full", "full rows read", ","),
                Column("pct", "inc/full rows", ".2f"),
                Column("written", "inc rows written", ","),
                Column("inc_s", "inc s", ".1f"),
                Column("full_s", "full s", ".1f"),
                Column("wall_pct", "inc/full s %", ".0f"),
            ],
            f"D={result['days']} days of history; publication = as-of day {result['days']} "
            f"({result['publication_asof_date']}): new {', '.join(vol.get('new_dates', []))}, restated "
            f"{vol.get('restated_runs', {})}; volumes CF rows {vol.get('cf_rows', 0):,}",
        )
        sections = (
            ("history", result["history_build"]["assets"]),
            ("incremental", result["incremental"]),
            ("full", result["full"] if result.get("full_measured") else []),
        )
        for section, runs in sections:
            if runs and all("peak_rss_gb" in r for r in runs):
                peaks = ", ".join(f"{r['asset'].split('/')[-1]} {r['peak_rss_gb']}" for r in runs)
                print(f"D={result['days']} {section}: peak RSS (GB, the process with its engine) {peaks}")
        bridge = [
            dict(r["margin_bridge"], asset=r["asset"]) for r in result["incremental"] if "margin_bridge" in r
        ]
        for b in bridge:
            full_rows = result["summary"]["full_rows_read"]
            if b["bridge_rows"] is None:
                print(f"margin bridge of the incremental monthly run: {b['mode']}\n")
                continue
            print(
                f"margin bridge of the incremental monthly run: {b['account_months_moved']} account-months "
                f"moved, {b['bridge_rows']} rows, {b['substrate_rows_read']:,} substrate rows read "
                f"({100.0 * b['substrate_rows_read'] / full_rows:.2f}% of the five assets' full rows read), "
                f"{b['wall_seconds']:.1f} s (its own step, inside the monthly_margin asset's time above)\n"
            )
        att = result["attribution"]
        print_table(
            [{"origin": k, "rows": v, "pct": 100.0 * v / att["rows_read"]} for k, v in att["totals"].items()],
            ["origin", Column("rows", "rows read", ","), Column("pct", "% of inc rows read", ".1f")],
            f"D={result['days']}: where the incremental rows read come from (all five assets); run "
            f"re-stamp commits left out of change feeds: {att['run_restamp_commits_skipped'] or 'none'}",
        )
    if payload.get("summary"):
        s = payload["summary"]
        rows = [
            {
                "days": r["summary"]["days"],
                "inc": r["summary"]["incremental_rows_read"],
                "full": r["summary"]["full_rows_read"],
                "pct": r["summary"]["rows_read_pct"],
                "inc_s": r["summary"]["incremental_seconds"],
                "full_s": r["summary"]["full_seconds"],
                "wall_pct": r["summary"]["wall_pct"],
            }
            for r in payload["results"]
        ]
        print_table(
            rows,
            [
                Column("days", "history days"),
                Column("inc", "inc rows read", ","),
                Column("full", "full rows read", ","),
                Column("pct", "inc/full rows %", ".2f"),
                Column("inc_s", "inc s", ".1f"),
                Column("full_s", "full s", ".1f"),
                Column("wall_pct", "inc/full s %", ".0f"),
            ],
            "Summary (all five stream assets)",
        )
        growth = s["incremental_wall_growth"]
        print(
            f"target rows read <= {s['target_rows_read_pct']:g}% of full at "
            f"{s['rows_read_target_days']} days: {'met' if s['rows_read_target_met'] else 'MISSED'} "
            f"({rows[-1]['pct']:.2f}%)"
        )
        if s.get("full_over_incremental") is not None:
            print(
                f"target incremental >= {s['target_speedup']:g}x faster than full at "
                f"{s['rows_read_target_days']} days: {'met' if s['speedup_target_met'] else 'MISSED'} "
                f"(x{s['full_over_incremental']:.1f})"
            )
        if growth is not None:
            print(
                f"incremental wall {rows[0]['days']} -> {rows[-1]['days']} days: x{growth:.2f} "
                f"({'grows' if s['incremental_wall_grows'] else 'does not grow'}, "
                f"tolerance x{GROWTH_TOLERANCE})"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_incremental", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, nargs="+", default=[30, 90, 180])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp data root")
    parser.add_argument("--keep", action="store_true", help="keep the temp data root")
    parser.add_argument(
        "--data-root", type=Path, default=None, help="persistent data root; its prepared substrate is reused"
    )
    parser.add_argument(
        "--attach",
        action="store_true",
        help="use the substrate of --data-root as it is (waiting for a concurrent --prepare-only)",
    )
    parser.add_argument(
        "--skip-full",
        action="store_true",
        help="no full recompute run: full rows read = full_rescan_rows, full wall = history rebuild",
    )
    parser.add_argument("--prepare-only", action="store_true", help="generate and ingest, run no stream")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    payload = run(args)
    if args.prepare_only:
        log("prepared; no stream run")
        return 0
    print_report(payload)
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
