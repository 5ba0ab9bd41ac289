"""Memory of a full rebuild, by phase: one stream output rebuilt over its own table.

    .venv/bin/python -m benchmarks.rebuild_memory --data-root DIR [--asset settlement_cost_hh]
        [--out benchmarks/results/rebuild_memory.json]

``DIR`` is a data root the stream benchmark prepared (``python -m benchmarks.stream_incremental
--data-root DIR --prepare-only``, or any run of it with ``--data-root``): its ``history/lake`` holds
the substrate and the streams' outputs. The asset is materialized once with ``full_rebuild`` at the
latest substrate version, in this process with an in-process Sail server, as the stream benchmark
does. The process's RSS is sampled every 50 ms; the phases are marked where the output leaves the
engine (``to_arrow``), where the store compares it with the held keys (``publish``, until the merge
starts) and where delta-rs merges it (``merge``). A rebuild over identical data writes nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS_DIR, RssSampler, machine_info, print_table, timestamp, write_json

NAME = "rebuild_memory"
DEFAULT_OUT = RESULTS_DIR / f"{NAME}.json"


class Phases:
    """The process's peak RSS within each phase (a phase ends where the next is marked)."""

    def __init__(self) -> None:
        self.sampler = RssSampler()
        self.phases: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def mark(self, phase_ended: str) -> None:
        peak, now = self.sampler.take()
        self.phases.append(
            {
                "phase": phase_ended,
                "ended_s": round(time.perf_counter() - self.started, 2),
                "peak_gb": round(peak / 1024, 2),
                "rss_at_end_gb": round(now / 1024, 2),
            }
        )

    def stop(self) -> None:
        self.sampler.stop()


def instrumented(
    phases: Phases, before: str, during: str, function: Callable[..., Any]
) -> Callable[..., Any]:
    """``function``, ending the phase ``before`` when it is called and the phase ``during`` when it
    returns."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        phases.mark(before)
        result = function(*args, **kwargs)
        phases.mark(during)
        return result

    return wrapper


def run(data_root: Path, asset_name: str) -> dict[str, Any]:
    import dagster as dg

    from margin_pipeline.defs.streams.assets import ASSETS
    from margin_pipeline.engines import SparkEngine
    from margin_pipeline.store import base, delta_rs
    from margin_pipeline.store.delta_rs import DeltaRsStore
    from margin_pipeline.substrate.versions import resolve_pin

    store = DeltaRsStore(lake_root=str(data_root / "history" / "lake"))
    engine = SparkEngine(engine="sail")
    engine.spark_session.range(1).count()
    phases = Phases()
    phases.mark("engine started")
    to_arrow = instrumented(phases, "plan, change feeds", "engine computes, output to Arrow", base.to_arrow)
    for module in (base, delta_rs):  # where the output leaves the engine
        module.to_arrow = to_arrow  # type: ignore[attr-defined]
    merge = instrumented(phases, "publish: held keys compared", "merge (delta-rs)", DeltaRsStore.merge)
    DeltaRsStore.merge = merge  # type: ignore[method-assign]
    asset = ASSETS[asset_name]
    version = resolve_pin(store, None).number
    config = {"ops": {asset.node_def.name: {"config": {"substrate_version": version, "full_rebuild": True}}}}
    started = time.perf_counter()
    result = dg.materialize([asset], resources={"store": store, "spark": engine}, run_config=config)
    seconds = time.perf_counter() - started
    phases.mark("commit and checks")
    phases.stop()
    if not result.success:
        raise RuntimeError(f"{asset_name} failed")
    metadata = next(e.materialization.metadata for e in result.get_asset_materialization_events())
    written = {k: metadata[k].value for k in ("rows_inserted", "rows_updated", "rows_deleted", "mode")}
    return {
        "asset": asset_name,
        "substrate_version": version,
        "seconds": round(seconds, 1),
        "peak_gb": max(p["peak_gb"] for p in phases.phases),
        "phases": phases.phases,
        "written": written,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="a stream benchmark data root")
    parser.add_argument("--asset", default="settlement_cost_hh", help="the output's table short name")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    args = parser.parse_args(argv)
    measured = run(args.data_root, args.asset)
    print_table(measured["phases"], ["phase", "ended_s", "peak_gb", "rss_at_end_gb"], title=None)
    print(
        f"{measured['asset']}: full rebuild at substrate version {measured['substrate_version']} in "
        f"{measured['seconds']} s, peak {measured['peak_gb']} GB, wrote {measured['written']}"
    )
    payload = {
        "benchmark": NAME,
        "timestamp": timestamp(),
        "command": f"python -m benchmarks.{NAME} --data-root {args.data_root} --asset {args.asset}",
        "machine": machine_info(("pyarrow", "deltalake", "pyspark", "pysail", "dagster")),
        **measured,
    }
    print(f"record: {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
