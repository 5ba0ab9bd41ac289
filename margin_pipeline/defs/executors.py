"""How a run executes its steps: in the run's own process, unless its steps must run side by side.

Every step process costs a Python start and an import of the code location (about 1-2 s on
2 cores). So the code location's default executor runs steps in the run's process: the one-step
jobs (ingest, settlement, half_hourly, reconciled, maintenance), and the monthly stream, whose
for-each runs its month steps one after another. A month is one query on the engine (0.3 s at
1,000 meters), less than a step process costs; a backfill of six months measured the same with
two months at once as with one (104 s, benchmarks/README.md), and a step process would also
start a JVM of its own on ``spark``.

The parent is the one job whose steps must overlap: its settlement and half_hourly ops each launch
a child run and wait for it. It uses :func:`side_by_side`: step processes forked from a
``forkserver`` that imported the code location and the instance's storage once per run, so each
step starts in a fraction of a second. Nothing is imported by the forkserver that has started a
thread or a Delta runtime (delta-rs panics in a child forked after it ran), so the forked steps
are clean.
"""

import dagster as dg

#: The default: steps in the run's own process.
IN_RUN = dg.in_process_executor

#: Modules the forkserver imports once, before any step forks from it: the code location, and what
#: opening the instance imports (each step opens it first).
PRELOAD = ["margin_pipeline.definitions", "margin_pipeline.orchestration.step_imports"]


def side_by_side(max_concurrent: int) -> dg.ExecutorDefinition:
    """Steps in processes of their own, at most ``max_concurrent`` at once (editable per run as
    ``execution.config.max_concurrent``), forked from a forkserver that preloaded :data:`PRELOAD`."""
    return dg.multiprocess_executor.configured(
        lambda config: {**config, "start_method": {"forkserver": {"preload_modules": PRELOAD}}},
        name="side_by_side",
        config_schema={
            "max_concurrent": dg.Field(
                int, default_value=max_concurrent, description="Steps running at once, at most."
            )
        },
        description="Steps side by side in forked processes (forkserver preloading the code location).",
    )
