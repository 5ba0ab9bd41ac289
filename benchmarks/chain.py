"""End to end through the real daemon chain: landing files to ``hh_margin`` published.

    .venv/bin/python -m benchmarks.chain [--meters 1000] [--days 30] [--engine sail|spark]
        [--workdir DIR] [--out benchmarks/results/chain_<engine>.json]

What a user does, timed from outside: ``margin-pipeline generate --meters M --days D``, then
``margin-pipeline run`` (the history: every publication of D days), then ``generate --next-day``
and ``run`` again (one more day's publications), then ``run`` with nothing new. Each ``run`` is
timed as a command (wall seconds, install and data generation excluded). Afterwards the Dagster
instance is read for each run of the day: its start and end, and the seconds the work itself took
(the ingest asset's and every stream asset's own ``wall_seconds``). From those:

- **critical path**: ingest, then the slower of settlement and half_hourly, then monthly, then
  reconciled; **gaps** are the seconds between the output the next run waits for (a run's last
  materialization; monthly's is ``monthly_margin``, the margin bridge written after it is off the
  path) and the next run's start (sensor ticks, the run queue, run worker start); ingest's work is
  its step's seconds, the bridge's are reported apart (``off_path_seconds``);
- **orchestration overhead**: the command's wall time less the work on the critical path
  (ingest's and the stream assets' own seconds), as a share of the wall time;
- **peak memory**: the largest summed RSS of the command's process tree (the CLI with the Sail
  server inside it, the daemon, the code server and every run worker), sampled every 0.2 s; run
  workers forked from the zygote share its pages until they write them, so the sum overstates;
- **CPU by process role**: the CPU seconds (user + system) each kind of process of that tree used
  (the CLI with the Sail server, the daemon, the code server, its zygote, the trampolines it
  spawns and the run workers the zygote forks for them; every job runs its steps in its run
  worker), from the same samples: on 2 cores, what the processes
  that are not the work cost is what the chain waits for when they run beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.report import machine_info, print_table, timestamp, write_json

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "margin-pipeline")
STREAM_JOBS = ("settlement_stream", "half_hourly_stream", "monthly_stream")


#: Process roles of a ``margin-pipeline run`` tree, by what their command line holds (first match).
ROLES = (
    ("dagster-daemon", "daemon"),
    ("api grpc", "code server"),
    ("warm_workers zygote", "zygote"),  # loads the code location once; run workers fork from it
    # one per run, in the code server's folder: what it spawns, handing over to the zygote
    ("margin-code-", "trampolines"),
    ("multiprocessing.spawn", "run workers"),  # spawned afresh (no zygote serving yet)
)


def role_of(command: str, root: bool) -> str | None:
    """The role of a process by its command line; None when it has none (it ended: a zombie). A run
    worker forked by the zygote has the zygote's: :func:`tree_sample` tells them apart."""
    if root:
        return "margin-pipeline (Sail server inside)"
    if not command:
        return None
    return next((role for marker, role in ROLES if marker in command), "other")


def tree_sample(root_pid: int) -> tuple[float, dict[tuple[int, str], tuple[str | None, float]]]:
    """Summed RSS (MB) of ``root_pid`` and all its descendants, and each one's role (:func:`role_of`)
    and CPU seconds so far (user + system), keyed by pid and start time (from /proc)."""
    children: dict[int, list[int]] = {}
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry.name), int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(pid)
        parents[pid] = ppid
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [root_pid]
    seen: dict[tuple[int, str], tuple[str | None, float]] = {}

    def command_of(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")

    while stack:  # the tree's processes only: their CPU and command line
        pid = stack.pop()
        total += rss.get(pid, 0.0)
        stack.extend(children.get(pid, []))
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = command_of(pid)
            role = role_of(command, pid == root_pid)
            if role == "zygote" and role_of(command_of(parents[pid]), False) == "zygote":
                role = "run workers"  # forked by the zygote: its command line is the zygote's
        except OSError:
            continue
        after_name = stat[stat.rfind(")") + 2 :].split()  # fields from the 3rd (state) on
        seconds = (int(after_name[11]) + int(after_name[12])) / tick
        seen[(pid, after_name[19])] = (role, seconds)
    return total, seen


def timed(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command``, sampling its process tree every 0.2 s: its wall seconds, exit code, peak RSS,
    and the CPU seconds its processes used by role (as last sampled: a process that lived less
    than 0.2 s is missed, one that ran on after its last sample is counted short)."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    peak = 0.0
    last: dict[tuple[int, str], tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            total, seen = tree_sample(process.pid)
            peak = max(peak, total)
            for key, (role, seconds) in seen.items():
                if role is None:  # ended, not reaped yet: no command line, the role it had
                    role = last[key][0] if key in last else "other"
                last[key] = (role, seconds)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    by_role: dict[str, dict[str, float]] = {}
    for role, seconds in last.values():
        figures = by_role.setdefault(role, {"processes": 0, "cpu_seconds": 0.0})
        figures["processes"] += 1
        figures["cpu_seconds"] = round(figures["cpu_seconds"] + seconds, 1)
    return {
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
        "seconds": round(time.perf_counter() - started, 2),
        "exit_code": code,
        "peak_rss_mb": round(peak, 1),
        "cpu_by_role": dict(sorted(by_role.items(), key=lambda kv: -kv[1]["cpu_seconds"])),
    }


def cli_step(root: Path, engine: str, log: Path, *words: str, quiet: bool = False) -> dict[str, Any]:
    """``margin-pipeline <words>`` on data root ``root`` and ``engine``, timed by :func:`timed`; exits
    the benchmark if the command fails (its output is in ``log``)."""
    env = {**os.environ, "MARGIN_PIPELINE_ROOT": str(root), "MARGIN_PIPELINE_ENGINE": engine}
    env.pop("MARGIN_PIPELINE_SPARK_REMOTE", None)
    result = timed([CLI, *words], env, log)
    if not quiet:
        print(f"  {result['command']}: {result['seconds']} s (exit {result['exit_code']})", file=sys.stderr)
    if result["exit_code"] != 0:
        raise SystemExit(f"{result['command']} ({root.name}) failed; see {log}")
    return result


@contextlib.contextmanager
def instance_at(root: Path) -> Iterator[Any]:
    """The Dagster instance of data root ``root`` (``$DAGSTER_HOME`` pointed at it), opened for the
    block. Dagster is imported here, so the benchmarks' own start stays light."""
    os.environ["DAGSTER_HOME"] = str(root / "dagster")
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        yield instance


#: The sensors that carry the chain: each hop waits for one of their ticks.
CHAIN_SENSORS = ("landing_sensor", "substrate_sensor", "watermark_gate")


def tick_spacing(root: Path, since: float) -> dict[str, dict[str, float]]:
    """Per chain sensor, the seconds between consecutive ticks after ``since`` (median and longest):
    how long a hop can wait for its sensor once the daemon runs."""
    import statistics

    spacing = {}
    with instance_at(root) as instance:
        for state in instance.all_instigator_state():
            if state.instigator_name not in CHAIN_SENSORS:
                continue
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=1000)
            starts = sorted(t.timestamp for t in ticks)
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            if gaps:
                spacing[state.instigator_name] = {
                    "ticks": len(starts),
                    "median_s": round(statistics.median(gaps), 2),
                    "longest_s": round(max(gaps), 2),
                }
    return spacing


def day_runs(root: Path, since: float) -> list[dict[str, Any]]:
    """The runs created after ``since``, oldest first, with their timings and work seconds."""
    from margin_pipeline.gold import MARGIN_BRIDGE
    from margin_pipeline.orchestration.runs import report

    off_path = {MARGIN_BRIDGE.asset_key.to_user_string()}

    with instance_at(root) as instance:
        records = instance.get_run_records()
        fresh = [r.dagster_run.run_id for r in records if r.create_timestamp.timestamp() > since]
        reports = [report(instance, run_id) for run_id in fresh]
        steps = {run_id: step_seconds(instance, run_id) for run_id in fresh}
        published = {run_id: published_at(instance, run_id, off_path) for run_id in fresh}
    runs = []
    for run in sorted(reports, key=lambda r: r.started or 0):
        # A stream asset times its own body (wall_seconds); ingest's body is its one step. The margin
        # bridge is written by the step after monthly_margin's commit, which hh_margin does not wait for:
        # off the critical path, its seconds are reported apart.
        walls = [float(m["wall_seconds"]) for key, m in run.assets.items() if "wall_seconds" in m]
        off = [
            float(m["wall_seconds"])
            for key, m in run.assets.items()
            if "wall_seconds" in m and key in off_path
        ]
        work = sum(walls) - sum(off) if walls else (steps[run.run_id] if run.job == "ingest" else 0.0)
        runs.append(
            {
                "job": run.job,
                "status": run.status,
                "started": run.started,
                "ended": run.ended,
                "published": published[run.run_id] or run.ended,
                "seconds": round(run.seconds, 2),
                "work_seconds": round(work, 2),
                "off_path_seconds": round(sum(off), 2),
            }
        )
    return runs


def published_at(instance: Any, run_id: str, off_path: set[str]) -> float | None:
    """When the run's last output on the critical path was materialized (None: it materialized none)."""
    import dagster as dg

    times = [
        e.timestamp
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization is not None
        and e.asset_materialization.asset_key.to_user_string() not in off_path
    ]
    return max(times, default=None)


def step_seconds(instance: Any, run_id: str) -> float:
    """Seconds from the run's first step start to its last step success (event timestamps)."""
    import dagster as dg

    starts = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    ends = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    if not starts or not ends:
        return 0.0
    return max(e.timestamp for e in ends) - min(e.timestamp for e in starts)


def critical_path(runs: list[dict[str, Any]], since: float, wall: float) -> dict[str, Any]:
    """Ingest -> the slower of settlement/half_hourly -> monthly -> reconciled, with the gaps."""
    by_job: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["status"] == "SUCCESS" and (run["job"] != "margin_job_of_jobs" or run["job"] not in by_job):
            by_job.setdefault(run["job"], run)
    side = [by_job[j] for j in ("settlement_stream", "half_hourly_stream") if j in by_job]
    path = [by_job.get("ingest"), max(side, key=lambda r: r["ended"]) if side else None]
    path += [by_job.get("monthly_stream"), by_job.get("reconciled")]
    path = [r for r in path if r is not None]
    gaps, previous = [], since
    for run in path:  # each hop: from the output the next run waits for to that run's start
        gaps.append({"before": run["job"], "seconds": round(run["started"] - previous, 2)})
        previous = run["published"]
    work = sum(r["work_seconds"] for r in path)
    return {
        "path": [r["job"] for r in path],
        "gaps": gaps,
        "gap_seconds": round(sum(g["seconds"] for g in gaps), 2),
        "run_seconds": {r["job"]: r["seconds"] for r in path},
        "work_seconds": round(work, 2),
        "overhead_seconds": round(wall - work, 2),
        "overhead_pct": round(100 * (wall - work) / wall, 1) if wall else None,
        "parent_seconds": by_job.get("margin_job_of_jobs", {}).get("seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", choices=("sail", "spark"), default="sail")
    parser.add_argument("--workdir", type=Path, default=None, help="data root (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or REPO / "benchmarks" / "results" / f"chain_{args.engine}.json"
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="chain-"))).resolve()
    log = root.parent / f"{root.name}.log"
    root.mkdir(parents=True, exist_ok=True)
    print(f"data root {root}; output of every command in {log}", file=sys.stderr)

    def step(*words: str) -> dict[str, Any]:
        return cli_step(root, args.engine, log, *words)

    generate = step(
        "generate", "--meters", str(args.meters), "--days", str(args.days), "--seed", str(args.seed)
    )
    history = step("run")
    step("generate", "--next-day")
    since = time.time()
    day = step("run")
    nothing = step("run")
    runs = day_runs(root, since)
    path = critical_path(runs, since, day["seconds"])
    ticks = tick_spacing(root, since)

    payload = {
        "benchmark": "chain",
        "timestamp": timestamp(),
        "command": "python -m benchmarks.chain " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(("pyarrow", "deltalake", "pyspark", "pysail", "dagster")),
        "parameters": {"meters": args.meters, "days": args.days, "seed": args.seed, "engine": args.engine},
        "generate": generate,
        "history_run": history,
        "day_run": day,
        "nothing_new_run": nothing,
        "history_over_day": round(history["seconds"] / day["seconds"], 2),
        "day_runs": runs,
        "critical_path": path,
        "sensor_ticks": ticks,
    }
    write_json(out, payload)
    print_table(
        [
            {
                "what": f"history ({args.days} days)",
                "seconds": history["seconds"],
                "peak": history["peak_rss_mb"],
            },
            {"what": "one more day", "seconds": day["seconds"], "peak": day["peak_rss_mb"]},
            {"what": "nothing new", "seconds": nothing["seconds"], "peak": nothing["peak_rss_mb"]},
        ],
        [
            ("what", "margin-pipeline run", "{}"),
            ("seconds", "wall s", ".1f"),
            ("peak", "peak RSS MB", ".0f"),
        ],
        f"chain on {args.engine}, {args.meters} meters: history / day = x{payload['history_over_day']}",
    )
    print_table(
        [{"job": r["job"], "seconds": r["seconds"], "work": r["work_seconds"]} for r in runs],
        [("job", "run of the day", ""), ("seconds", "run s", ".1f"), ("work", "work s", ".1f")],
        f"critical path: gaps {path['gap_seconds']} s, work {path['work_seconds']} s, "
        f"overhead {path['overhead_seconds']} s ({path['overhead_pct']}% of {day['seconds']} s)",
    )
    print_table(
        [{"sensor": name, **figures} for name, figures in ticks.items()],
        [
            ("sensor", "sensor (day run)", ""),
            ("ticks", "ticks", "d"),
            ("median_s", "median s apart", ".1f"),
            ("longest_s", "longest s apart", ".1f"),
        ],
        "the chain sensors' ticks during the day's run (each hop waits for one)",
    )
    print_table(
        [{"role": role, **figures} for role, figures in day["cpu_by_role"].items()],
        [
            ("role", "process (day run)", ""),
            ("processes", "processes", "d"),
            ("cpu_seconds", "CPU s", ".1f"),
        ],
        f"CPU by process role during the day's run ({day['seconds']} s wall, 2 cores)",
    )
    print(f"record: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
