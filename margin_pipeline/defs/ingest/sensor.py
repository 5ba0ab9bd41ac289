"""File arrival starts the chain: launch the ingest job when files land."""

import hashlib
import json
import time

import dagster as dg

from margin_pipeline.defs.ingest import assets as ingest
from margin_pipeline.settings import DataRoot
from margin_pipeline.substrate.ingest import SETTLE_SECONDS, drop_key, pending_files, settled

#: ``minimum_interval_seconds`` of the sensors that carry the chain (this one, ``substrate_sensor``,
#: ``watermark_gate``): due on every loop of the sensor daemon, which evaluates its sensors one after
#: another and starts a loop every 5 s at the most often. An interval equal to that loop (5 s) made a
#: sensor miss every other loop whenever its last tick had started later in its loop than this one
#: (the interval is counted from the tick's start): ticks 10 s apart, up to 10 s more per hop.
EVERY_DAEMON_LOOP = 1


@dg.sensor(
    job_name=ingest.INGEST_JOB,
    minimum_interval_seconds=EVERY_DAEMON_LOOP,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches ingest for files dropped under landing/<feed>/ once they have settled "
    "(cursor + run_key: once a drop; a file still being written waits).",
)
def landing_sensor(context: dg.SensorEvaluationContext, data_root: DataRoot):
    now = time.time()
    pending = pending_files(data_root)
    files = {drop_key(p): p for p in pending if settled(p, SETTLE_SECONDS, now)}
    writing = len(pending) - len(files)
    waiting = (
        f"; {writing} file(s) still being written (unchanged for < {SETTLE_SECONDS:g} s)" if writing else ""
    )
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    new = sorted(k for k in files if k not in seen)
    # Remember only drops still in landing: once ingest moves a file away, a re-drop is new.
    context.update_cursor(json.dumps(sorted(files)))
    if not new:
        return dg.SkipReason(f"no new files in {data_root.landing}{waiting}")
    relative = [str(files[k].relative_to(data_root.landing)) for k in new]
    return dg.RunRequest(
        run_key=hashlib.sha256("\n".join(new).encode("utf-8", "surrogateescape")).hexdigest()[:24],
        run_config=dg.RunConfig(ops={"ingest_landing": ingest.IngestConfig(files=relative, seen=new)}),
        tags={"margin_pipeline/files": str(len(relative))},
    )
