"""``margin-pipeline``: generate data, drive the chain to hh_margin through the daemon, print summaries.

    margin-pipeline generate --meters 200 --days 30 --seed 7   # a publication history into landing/
    margin-pipeline generate --next-day                         # the next day's publications
    margin-pipeline run                                         # drive the chain to hh_margin, via the daemon
    margin-pipeline plan --changed prices                       # which assets and jobs a change runs
    margin-pipeline reexecute RUN_ID                            # repair: re-run a failed run from failure
    margin-pipeline summary                                     # what the lake holds
    margin-pipeline explain --account ACC1 --month 2025-10      # why an account-month's margin moved
    eval "$(margin-pipeline env)"                               # dagster and dg: the same instance

Runs are recorded in the Dagster instance under ``$MARGIN_PIPELINE_ROOT/dagster``,
so they show in the UI (``make ui``) beside the ones sensors launch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from margin_pipeline.settings import (
    REPO_ROOT,
    ROOT_ENV,
    DataRoot,
    FileLock,
    default_root,
    prepare_dagster_home,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="margin-pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", type=Path, default=None, help="data root (default $MARGIN_PIPELINE_ROOT or ./.margin)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write synthetic MHHS landing files")
    gen.add_argument("--meters", type=int, default=200)
    gen.add_argument("--days", type=int, default=30, help="settlement dates in the history")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--start", type=dt.date.fromisoformat, default=None, help="first settlement date")
    gen.add_argument("--next-day", action="store_true", help="append the next day's publications instead")

    sub.add_parser(
        "run", help="drive the chain (ingest -> parent -> children -> gate) to completion through the daemon"
    )
    plan = sub.add_parser("plan", help="if a table changes, which assets and jobs run (asset graph)")
    plan.add_argument("--changed", required=True, help="e.g. prices, substrate/prices, gold/hh_revenue")
    again = sub.add_parser("reexecute", help="re-execute a failed run from failure (the UI's button)")
    again.add_argument("run_id")
    sub.add_parser("summary", help="print what the lake holds")
    why = sub.add_parser(
        "explain", help="an account-month's margin across substrate versions, and the causes of each movement"
    )
    why.add_argument("--account", required=True, help="account_id")
    why.add_argument("--month", required=True, help="YYYY-MM")
    sub.add_parser(
        "env",
        help="print the exports that point `dagster` and `dg` at this data root's instance "
        '(use: eval "$(margin-pipeline env)")',
    )
    ui = sub.add_parser("ui", help="serve the Dagster UI (dagster dev) on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)

    args = parser.parse_args(argv)
    root = (args.root or default_root()).resolve()
    if args.command == "generate":
        return _generate(root, args)
    if args.command == "run":
        return _run(root)
    if args.command == "plan":
        return _plan(args.changed)
    if args.command == "reexecute":
        return _reexecute(root, args.run_id)
    if args.command == "ui":
        return _ui(root, args.port)
    if args.command == "env":
        return _env(root)
    if args.command == "explain":
        return _explain(root, args.account, args.month)
    print(render_summary(DataRoot(root=str(root))))
    return 0


def _engine_or_exit() -> str | None:
    """The engine of this environment, after checking what it needs; None (with the error
    printed) when it cannot run here."""
    from margin_pipeline.engines import EngineError, engine_from_env
    from margin_pipeline.java import JavaMissingError, require_java

    try:
        engine = engine_from_env()
        if engine == "spark":
            require_java()
    except (EngineError, JavaMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return engine


def _ui(root: Path, port: int) -> int:
    """``dagster dev`` on 127.0.0.1, with one warm engine that every run it launches connects to."""
    import signal
    import subprocess

    from margin_pipeline.engines import shared_engine

    engine = _engine_or_exit()
    if engine is None:
        return 2
    from margin_pipeline.orchestration.drive import DAEMON_LOCK, daemon_processes

    home = prepare_dagster_home(root)
    # `dagster dev` runs a daemon: not while another one serves the instance (the lock's holder).
    lock = FileLock(home / DAEMON_LOCK)
    if not lock.acquire(blocking=False):
        print(f"waiting for {lock.holder()} to end: its daemon serves this instance", flush=True)
        lock.acquire()
    if others := daemon_processes(str(home)):
        print(
            f"error: dagster-daemon process(es) {others} already serve {home} (a `dagster dev` still "
            "running?): stop them first, or use that UI",
            file=sys.stderr,
        )
        return 2
    with shared_engine(engine) as url:
        print(f"engine: {engine}" + (f", serving every run at {url}" if url else ""), flush=True)
        process = subprocess.Popen(ui_command(port))

        def forward(signum: int, _frame: object) -> None:  # stop dagster dev first, then the engine
            process.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return process.wait()


def _env(root: Path) -> int:
    """Prepare the instance home under ``root`` and print the shell exports that name it, so
    ``dagster job launch``, ``dg launch`` and friends, run from a new shell, use the instance
    ``margin-pipeline run`` and the UI use."""
    import shlex

    home = prepare_dagster_home(root)
    print(f"export {ROOT_ENV}={shlex.quote(str(root))}")
    print(f"export DAGSTER_HOME={shlex.quote(str(home))}")
    return 0


def ui_command(port: int) -> list[str]:
    """``dagster dev`` for the UI: bound to 127.0.0.1 only (reach it from elsewhere through an SSH
    tunnel or a reverse proxy with authentication, never by binding it wider)."""
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO_ROOT / "workspace.yaml")]


def _generate(root: Path, args: argparse.Namespace) -> int:
    from margin_pipeline.synthetic import Scenario, generate_history, generate_next_day

    landing = DataRoot(root=str(root)).landing
    started = time.perf_counter()
    if args.next_day:
        summary = generate_next_day(landing)
    else:
        scenario = Scenario(meters=args.meters, days=args.days, seed=args.seed)
        if args.start is not None:
            scenario = Scenario(meters=args.meters, days=args.days, seed=args.seed, start=args.start)
        summary = generate_history(landing, scenario)
    rows = sum(summary.rows_per_feed.values())
    took = time.perf_counter() - started
    print(f"generated {len(summary.files)} files, {rows:,} rows into {landing} in {took:.1f}s")
    for feed, count in sorted(summary.rows_per_feed.items()):
        print(f"  {feed:<20} {count:>12,} rows")
    return 0


def _run(root: Path) -> int:
    """Drive the event-driven chain to completion: sensors do the launching, this watches and reports."""
    engine = _engine_or_exit()
    if engine is None:
        return 2
    prepare_dagster_home(root)

    import dagster as dg

    from margin_pipeline.engines import shared_engine
    from margin_pipeline.orchestration.drive import chain_state, daemon, follow_chain, launch
    from margin_pipeline.orchestration.runs import PARENT_JOB
    from margin_pipeline.orchestration.workers import fail_dead_runs, free_slots_of_ended_runs

    data_root = DataRoot(root=str(root))
    instance = dg.DagsterInstance.get()
    since = time.time()
    with (
        shared_engine(engine) as url,
        daemon(instance, data_root.dagster_home / "daemon.log") as served,
    ):
        print(
            "dagster-daemon: "
            + ("started for this run" if served.started else "using the one already running")
            + f"; UI: `make ui` (instance {data_root.dagster_home})"
        )
        print(
            f"engine: {engine}" + (f", one server for the chain at {url}" if url and served.started else "")
        )

        def recover(until: float) -> None:
            # Runs of a crashed daemon hold their slots. Checked only when the daemon (whose run launcher
            # starts the workers on this machine) is ours; a running daemon's dead_run_sensor does it.
            # None was alive before `until`: a run still STARTING from before then will get no worker.
            if not served.started:
                return
            for dead in fail_dead_runs(instance, launched_before=until):
                print(f"recovered: {dead.describe()}")
            for run_id in free_slots_of_ended_runs(instance):
                print(f"recovered: the concurrency slots of ended run {run_id} (no process of it is alive)")

        def keep_daemon() -> None:
            found_dead = time.time()
            restarted = served.restart_if_exited()
            if restarted:
                print(f"  ... {restarted}")
                recover(found_dead)

        recover(since)
        done, waiting_on = chain_state(data_root)
        if not done and "landing" not in waiting_on:  # nothing for the sensors to react to: start the parent
            print(f"{waiting_on}: launching {PARENT_JOB}")
            launch(PARENT_JOB)
        outcome = follow_chain(
            instance, data_root, since, on_progress=lambda s: print(f"  ... {s}"), each_poll=keep_daemon
        )
    print()
    print(render_runs(outcome.runs))
    print()
    print(render_summary(data_root, ingest_runs=[r.run_id for r in outcome.runs if r.job == "ingest"]))
    if not outcome.done:
        print(f"\nerror: {outcome.message}. See `make ui` -> Runs.", file=sys.stderr)
        return 1
    print(f"\n{outcome.message}")
    return 0


def _plan(table: str) -> int:
    from margin_pipeline.definitions import defs
    from margin_pipeline.orchestration.impact import impact

    try:
        print(impact(defs, table).render())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _reexecute(root: Path, run_id: str) -> int:
    prepare_dagster_home(root)
    import dagster as dg

    from margin_pipeline.engines import shared_engine
    from margin_pipeline.orchestration.drive import daemon, reexecute_from_failure, wait_for_runs

    data_root = DataRoot(root=str(root))
    instance = dg.DagsterInstance.get()
    with shared_engine(), daemon(instance, data_root.dagster_home / "daemon.log"):
        new = reexecute_from_failure(run_id)
        print(f"re-executing {run_id} from failure as run {new}")
        (outcome,) = wait_for_runs(instance, [new])
    print(f"{outcome.job} run {new}: {outcome.status} {outcome.error}")
    return 0 if outcome.success else 1


def _explain(root: Path, account: str, month_text: str) -> int:
    try:
        month = dt.datetime.strptime(month_text, "%Y-%m").date()
    except ValueError:
        print(f"margin-pipeline explain: --month must be YYYY-MM, got {month_text!r}", file=sys.stderr)
        return 2
    print(render_explanation(DataRoot(root=str(root)), account, month))
    return 0


def render_explanation(root: DataRoot, account: str, month: dt.date) -> str:
    """``margin-pipeline explain``: the margin after each movement and, per movement, its causes in
    substitution order and the runs held for the month's dates before and after."""
    from margin_pipeline.store.delta_rs import DeltaRsStore
    from margin_pipeline.streams.monthly.bridge import movements_of

    now, moves = movements_of(DeltaRsStore(lake_root=str(root.lake)), account, month)
    title = f"{account} {month:%Y-%m}: margin_gbp "
    if now is None and not moves:
        return title + "has no row in gold/monthly_margin and no movement in gold/margin_bridge."
    lines = [title + ("now " + f"{now:.6f}" if now is not None else "now none (no contributing day)")]
    if not moves:
        lines.append("no movement since the first substrate version the monthly stream consumed.")
        return "\n".join(lines)
    first = moves[0]
    lines += ["", f"{'substrate version':<20}{'margin_gbp':>14}{'moved':>14}"]
    lines.append(f"{'N=' + str(first.from_version):<20}{first.margin_before:>14.6f}")
    for m in moves:
        lines.append(
            f"{'N=' + str(m.to_version):<20}{m.margin_after:>14.6f}{m.margin_after - m.margin_before:>+14.6f}"
        )
    for m in moves:
        lines += ["", f"N={m.from_version} -> N={m.to_version}: {m.margin_after - m.margin_before:+.6f} GBP"]
        lines += [f"  {cause:<15}{delta:>+14.6f}" for cause, delta in m.causes.items()]
        lines.append(f"  runs held: {_runs(m.runs_before)} -> {_runs(m.runs_after)}")
    return "\n".join(lines)


def _runs(held: dict[str, int]) -> str:
    return ", ".join(f"{run} x{days}" for run, days in held.items()) or "none"


def render_runs(runs) -> str:
    """One line per run (children indented under their parent) and one per asset it materialized."""
    from margin_pipeline.orchestration.runs import PARENT_RUN_TAG

    lines = [
        f"{'run':<24}{'status':>9}{'seconds':>9}  {'asset':<28}{'mode':<22}{'rows read':>12}{'written':>18}"
    ]
    for run in runs:
        name = ("  " if run.tags.get(PARENT_RUN_TAG) else "") + run.job
        assets = [_asset_line(k, m) for k, m in run.assets.items() if "mode" in m] or [""]
        lines.append(f"{name:<24}{run.status:>9}{run.seconds:>9.1f}  {assets[0]}")
        lines += [f"{'':<42}  {a}" for a in assets[1:]]
    return "\n".join(lines)


def _asset_line(key: str, m: dict) -> str:
    """An asset's mode, rows read and rows written; the margin bridge's moved account-months and rows."""
    if "bridge_rows" in m:
        moved = f"{m['account_months_moved']} moved"
        return f"{key:<28}{m['mode']!s:<22}{moved:>12}{'+' + str(m['bridge_rows']) + ' rows':>18}"
    if "rows_read" not in m:
        return f"{key:<28}{m['mode']!s:<22}"
    written = "+{} ~{} -{}".format(m["rows_inserted"], m["rows_updated"], m["rows_deleted"])
    return f"{key:<28}{m['mode']!s:<22}{m['rows_read']:>12,}{written:>18}"


def render_summary(root: DataRoot, ingest_runs: list[str] | None = None) -> str:
    """A short, plain-text account of the substrate and of what the last ingest did."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from margin_pipeline.gold import GOLD, MARGIN_BRIDGE, MONTHLY_MARGIN
    from margin_pipeline.store.delta_rs import DeltaRsStore
    from margin_pipeline.substrate.tables import INGEST_LOG, SUBSTRATE
    from margin_pipeline.substrate.versions import latest_substrate_version

    store = DeltaRsStore(lake_root=str(root.lake))
    lines = [
        f"data root: {root.path}   substrate version: {latest_substrate_version(store) or 'none'}",
        "",
        f"{'table':<32}{'version':>8}{'rows':>14}",
    ]
    tables = [(f"substrate/{n}", s) for n, s in SUBSTRATE.items()] + [
        (s.name, s) for s in (*GOLD.values(), MARGIN_BRIDGE)
    ]
    for name, spec in tables:
        version = store.version(spec)
        rows = store.row_count(spec) if version is not None else 0
        lines.append(f"{name:<32}{'-' if version is None else version:>8}{rows:>14,}")
    if store.version(MONTHLY_MARGIN) is not None:
        margin = store.read_arrow(MONTHLY_MARGIN)
        if margin.num_rows:
            total = {
                c: pc.sum(margin.column(c)).as_py() for c in ("kwh", "revenue_gbp", "cost_gbp", "margin_gbp")
            }
            final = pc.sum(margin.column("final").cast("int64")).as_py()
            lines += [
                "",
                f"monthly_margin: {margin.num_rows} account-months ({final} final): {total['kwh']:,.0f} kWh, "
                f"revenue GBP {total['revenue_gbp']:,.2f}, cost GBP {total['cost_gbp']:,.2f}, "
                f"margin GBP {total['margin_gbp']:,.2f}",
            ]
    if store.version(INGEST_LOG) is not None:
        log = store.read_arrow(INGEST_LOG)
        if ingest_runs is not None:
            log = log.filter(pc.is_in(log.column("run_id"), pa.array(ingest_runs, pa.string())))
        counts = log.group_by("status").aggregate([("file", "count")]).to_pylist()
        lines += [
            "",
            "files "
            + ("in this run: " if ingest_runs is not None else "ingested so far: ")
            + (", ".join(f"{c['status']} {c['file_count']}" for c in counts) or "none"),
        ]
        for row in log.filter(pc.equal(log.column("status"), "rejected")).to_pylist():
            where = f"{row['feed']}/{row['file']}: line {row['line']}"
            lines.append(f"  quarantined {where}: {row['rule']}: {row['message']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
