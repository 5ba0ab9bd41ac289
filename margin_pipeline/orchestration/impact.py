"""Object mapping: if this table changes, what runs? Derived from the asset graph, not a hand-kept list.

The downstream closure of the table's asset in the code location's asset graph
gives the assets that recompute; each asset job whose selection holds one of
them is a job that runs; the parent's ops and the sensors that launch those
jobs give the path the chain takes.
"""

from dataclasses import dataclass

import dagster as dg

from margin_pipeline.orchestration.runs import PARENT_JOB
from margin_pipeline.streams.registry import CHILD_STREAMS


@dataclass(frozen=True)
class Impact:
    table: dg.AssetKey
    assets: list[dg.AssetKey]  # downstream of ``table``, in topological order
    jobs: dict[str, list[dg.AssetKey]]  # job -> its assets that recompute
    launched_by: dict[str, str]  # job -> what launches it

    def render(self) -> str:
        lines = [f"if {self.table.to_user_string()} changes:", "  assets that recompute:"]
        lines += [f"    {a.to_user_string()}" for a in self.assets] or ["    (none)"]
        lines.append("  jobs that run (launched by):")
        for job, assets in self.jobs.items():
            keys = ", ".join(a.to_user_string() for a in assets)
            lines.append(f"    {job:<20} {keys}  ({self.launched_by.get(job, 'manual launch')})")
        if not self.jobs:
            lines.append("    (none)")
        return "\n".join(lines)


def resolve_table(defs: dg.Definitions, table: str) -> dg.AssetKey:
    """``prices``, ``substrate/prices`` or ``gold/hh_revenue`` -> the asset key it names."""
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    exact = [k for k in keys if k.to_user_string() == table]
    by_name = [k for k in keys if k.path[-1] == table]
    matches = exact or by_name
    if len(matches) != 1:
        known = ", ".join(sorted(k.to_user_string() for k in keys))
        raise ValueError(f"unknown or ambiguous table {table!r}; tables are: {known}")
    return matches[0]


def impact(defs: dg.Definitions, table: str) -> Impact:
    key = resolve_table(defs, table)
    graph = defs.resolve_asset_graph()
    downstream = dg.AssetSelection.keys(key).downstream().resolve(graph) - {key}
    order = [k for level in graph.toposorted_asset_keys_by_level for k in sorted(level) if k in downstream]
    jobs: dict[str, list[dg.AssetKey]] = {}
    for job in defs.jobs or []:
        resolved = defs.resolve_job_def(job.name)
        if not resolved.asset_layer:
            continue
        hit = [k for k in order if k in resolved.asset_layer.executable_asset_keys]
        if hit:
            jobs[job.name] = hit
    # Sensors without a target (the alert sensors) launch nothing: only targets count.
    launched_by = {t.job_name: f"sensor {s.name}" for s in defs.sensors or [] for t in s.targets}
    for stream in CHILD_STREAMS:
        launched_by[stream.job_name] = f"{PARENT_JOB} op {stream.name}"
    return Impact(key, order, jobs, launched_by)
