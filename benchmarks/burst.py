"""A burst: many days of publications landing at once, against the same days one at a time.

    .venv/bin/python -m benchmarks.burst [--meters 200] [--days 30] [--workdir DIR]
        [--out benchmarks/results/burst.json]

Two data roots from one seed, each starting with the first day's publications
(``margin-pipeline generate --days 1``, then ``run``):

- **one day at a time**: ``generate --next-day`` then ``run``, ``days - 1`` times;
- **burst**: ``generate --next-day`` ``days - 1`` times with nothing running, then one ``run``.

The generator is deterministic, so both roots receive the same files. Reported: the burst's
``run`` (wall seconds, peak RSS of its process tree: the CLI with the Sail server inside it, the
daemon, the code server, every run worker), the one-day-at-a-time total, the burst's runs (how long
each waited in the queue), whether any job ran twice at once, and the four gold tables of the two
roots compared: **lost** = keys missing or with other values (1e-6), **excess** = keys only the
burst has, **doubled** = rows held twice under one key. Exit status 1 unless they are equal and no
job overlapped itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chain import REPO, cli_step, instance_at
from benchmarks.report import machine_info, print_table, timestamp, write_json


def runs_since(root: Path, since: float) -> list[dict[str, Any]]:
    """The runs of ``root``'s instance created after ``since``: job, status, queue wait, start, end."""
    with instance_at(root) as instance:
        records = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() > since]
    runs = []
    for record in sorted(records, key=lambda r: r.create_timestamp):
        created = record.create_timestamp.timestamp()
        runs.append(
            {
                "job": record.dagster_run.job_name,
                "status": record.dagster_run.status.value,
                "queued_seconds": round(record.start_time - created, 2) if record.start_time else None,
                "started": record.start_time,
                "ended": record.end_time,
            }
        )
    return runs


def overlaps(runs: list[dict[str, Any]]) -> list[str]:
    """Jobs that had two runs going at the same moment."""
    found = set()
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["job"] != b["job"] or None in (a["started"], a["ended"], b["started"], b["ended"]):
                continue
            if a["started"] < b["ended"] and b["started"] < a["ended"]:
                found.add(a["job"])
    return sorted(found)


def compare_gold(burst: Path, daily: Path) -> dict[str, dict[str, int]]:
    """Each gold table of ``burst`` against ``daily``'s: rows, lost, excess, doubled."""
    from margin_pipeline.gold import GOLD
    from margin_pipeline.settings import DataRoot
    from margin_pipeline.store.delta_rs import DeltaRsStore
    from margin_pipeline_tests.helpers import differences, rows_by_key, rows_doubled

    stores = [DeltaRsStore(lake_root=str(DataRoot(root=str(r)).lake)) for r in (burst, daily)]
    result = {}
    for name, spec in GOLD.items():
        actual, expected = (rows_by_key(s, spec) for s in stores)
        lost, excess = differences(actual, expected)
        result[name] = {
            "rows": len(expected),
            "lost": len(lost),
            "excess": len(excess),
            "doubled": rows_doubled(stores[0], spec),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="folder of the two data roots")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "burst.json")
    args = parser.parse_args(argv)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="burst-"))).resolve()
    roots = {"burst": work / "burst", "daily": work / "daily"}
    log = work / "commands.log"
    work.mkdir(parents=True, exist_ok=True)
    print(f"data roots under {work}; output of every command in {log}", file=sys.stderr)

    def step(root: Path, *words: str) -> dict[str, Any]:
        return cli_step(root, "sail", log, *words, quiet=True)

    first = ("generate", "--meters", str(args.meters), "--days", "1", "--seed", str(args.seed))
    for root in roots.values():
        step(root, *first)
        step(root, "run")

    daily_seconds, daily_peak = 0.0, 0.0
    for day in range(2, args.days + 1):
        step(roots["daily"], "generate", "--next-day")
        ran = step(roots["daily"], "run")
        daily_seconds += ran["seconds"]
        daily_peak = max(daily_peak, ran["peak_rss_mb"])
        print(f"  one day at a time: day {day} in {ran['seconds']} s", file=sys.stderr)

    for _ in range(2, args.days + 1):
        step(roots["burst"], "generate", "--next-day")
    since = time.time()
    burst = step(roots["burst"], "run")
    print(f"  burst of {args.days - 1} days: {burst['seconds']} s", file=sys.stderr)
    runs = runs_since(roots["burst"], since)
    twice = overlaps(runs)
    tables = compare_gold(roots["burst"], roots["daily"])
    equal = all(t["lost"] == t["excess"] == t["doubled"] == 0 for t in tables.values())

    payload = {
        "benchmark": "burst",
        "timestamp": timestamp(),
        "command": "python -m benchmarks.burst " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(("pyarrow", "deltalake", "pyspark", "pysail", "dagster")),
        "parameters": {"meters": args.meters, "days": args.days, "seed": args.seed, "engine": "sail"},
        "burst_run": burst,
        "one_day_at_a_time": {
            "runs": args.days - 1,
            "seconds": round(daily_seconds, 2),
            "peak_rss_mb": daily_peak,
        },
        "burst_runs": runs,
        "jobs_overlapping_themselves": twice,
        "gold_tables": tables,
        "equal": equal,
    }
    write_json(args.out, payload)
    print_table(
        [
            {
                "what": f"burst: {args.days - 1} days at once",
                "seconds": burst["seconds"],
                "peak": burst["peak_rss_mb"],
            },
            {"what": "the same days one at a time", "seconds": daily_seconds, "peak": daily_peak},
        ],
        [("what", "margin-pipeline run", "{}"), ("seconds", "wall s", ".1f"), ("peak", "peak RSS MB", ".0f")],
        f"burst on sail, {args.meters} meters",
    )
    print_table(
        [{"job": r["job"], "status": r["status"], "queued": r["queued_seconds"]} for r in runs],
        [("job", "run of the burst", ""), ("status", "status", ""), ("queued", "queued s", "")],
        f"jobs overlapping themselves: {', '.join(twice) or 'none'}",
    )
    print_table(
        [{"table": n, **t} for n, t in tables.items()],
        [
            ("table", "gold table", ""),
            ("rows", "rows", "d"),
            ("lost", "lost", "d"),
            ("excess", "excess", "d"),
            ("doubled", "doubled", "d"),
        ],
        "burst against one day at a time: " + ("equal" if equal else "NOT EQUAL"),
    )
    print(f"record: {args.out}")
    return 0 if equal and not twice else 1


if __name__ == "__main__":
    sys.exit(main())
