"""File arrival starts the chain: launch the ingest job when files land."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from margin_pipeline.defs.ingest import assets as ingest
from margin_pipeline.settings import DataRoot
from margin_pipeline.substrate.ingest import pending_files


def file_key(path: Path) -> str:
    """Identity of one drop of a file: re-dropping the same name later is a new drop."""
    stat = path.stat()
    return f"{path.parent.name}/{path.name}:{stat.st_mtime_ns}:{stat.st_size}"


@dg.sensor(
    job_name=ingest.INGEST_JOB,
    minimum_interval_seconds=5,  # the sensor daemon's own loop: no sensor ticks more often
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches ingest for files dropped under landing/<feed>/ (cursor + run_key: once a drop).",
)
def landing_sensor(context: dg.SensorEvaluationContext, data_root: DataRoot):
    files = {file_key(p): p for p in pending_files(data_root)}
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    new = sorted(k for k in files if k not in seen)
    # Remember only drops still in landing: once ingest moves a file away, a re-drop is new.
    context.update_cursor(json.dumps(sorted(files)))
    if not new:
        return dg.SkipReason(f"no new files in {data_root.landing}")
    relative = [str(files[k].relative_to(data_root.landing)) for k in new]
    return dg.RunRequest(
        run_key=hashlib.sha256("\n".join(new).encode()).hexdigest()[:24],
        run_config=dg.RunConfig(ops={"ingest_landing": ingest.IngestConfig(files=relative)}),
        tags={"margin_pipeline/files": str(len(relative))},
    )
