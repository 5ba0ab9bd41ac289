"""How a run executes its steps: in the run's own process, unless its steps must run side by side.

Every step process costs a Python start and an import of the code location (about 2-3 s on
2 cores). A job of one step (ingest, settlement, half_hourly, reconciled, maintenance) gains
nothing from one, so the code location's default executor runs steps in the run's process.
The two jobs whose steps overlap by design, the parent (settlement beside half_hourly) and
monthly (its per-month steps), use :func:`side_by_side`: step processes forked from a
``forkserver`` that imported the code location and the instance's storage once per run, so each
step starts in a fraction of a second. A stream's steps each open a Spark Connect session, so its
forkserver also imports the Connect client (pyspark.sql.connect with pandas and gRPC: 0.4 s a step
otherwise); the parent's steps open none and skip it. Nothing is imported by the forkserver that
has started a thread or a Delta runtime (delta-rs panics in a child forked after it ran), so the
forked steps are clean.
"""

import dagster as dg

#: The default: steps in the run's own process.
IN_RUN = dg.in_process_executor

#: Modules the forkserver imports once, before any step forks from it: the code location, and what
#: opening the instance imports (each step opens it first).
PRELOAD = ["margin_pipeline.definitions", "margin_pipeline.orchestration.step_imports"]
#: What a step that opens a Spark Connect session (:func:`margin_pipeline.engines.new_session`) imports.
CONNECT_CLIENT = "pyspark.sql.connect.session"


def preload(engine: bool) -> list[str]:
    """What the forkserver of a side-by-side run imports before any step forks from it."""
    return [*PRELOAD, CONNECT_CLIENT] if engine else PRELOAD


def side_by_side(max_concurrent: int, engine: bool = False) -> dg.ExecutorDefinition:
    """Steps in processes of their own, at most ``max_concurrent`` at once (editable per run as
    ``execution.config.max_concurrent``), forked from a forkserver that preloaded the code location,
    and the Spark Connect client when the steps use the ``engine``."""
    modules = preload(engine)
    return dg.multiprocess_executor.configured(
        lambda config: {**config, "start_method": {"forkserver": {"preload_modules": modules}}},
        name="side_by_side",
        config_schema={
            "max_concurrent": dg.Field(
                int, default_value=max_concurrent, description="Steps running at once, at most."
            )
        },
        description="Steps side by side in forked processes (forkserver preloading the code location"
        + (" and the Spark Connect client)." if engine else ")."),
    )
