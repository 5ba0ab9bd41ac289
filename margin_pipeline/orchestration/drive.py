"""Driving the event-driven chain from a terminal or a test, through the real instance and daemon.

``margin-pipeline run`` does not call jobs itself: it makes sure a Dagster
daemon serves the instance (reusing the one ``dagster dev`` runs, else starting
one for the duration), then watches what the sensors do with the landing
files — ingest, the parent and its children, the watermark gate — until
``hh_margin`` reflects the latest substrate version, a run fails, or the chain
stalls. Launching a job and re-executing a run from failure go through the
code location defined by ``workspace.yaml``, exactly as the UI and
``dagster job launch`` do.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from margin_pipeline.orchestration import code_server
from margin_pipeline.orchestration.runs import FINISHED_STATUSES, RunReport, may_be_retried, report
from margin_pipeline.settings import REPO_ROOT, DataRoot, FileLock
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.progress import stream_progress
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.streams.shared.watermarks import every_watermark
from margin_pipeline.substrate.ingest import pending_files
from margin_pipeline.substrate.versions import latest_substrate_version, resolve_pin

WORKSPACE = REPO_ROOT / "workspace.yaml"
DAEMONS_NEEDED = ("SENSOR", "QUEUED_RUN_COORDINATOR")
#: How often :func:`follow_chain` looks at the runs: ``margin-pipeline run`` returns this long after
#: ``hh_margin`` is published, at most.
FOLLOW_POLL_SECONDS = 0.5
HEARTBEAT_FRESH_SECONDS = 45  # the daemon beats every 30 s


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a daemon serves ``instance``: its heartbeats are fresh and, where ``/proc`` shows
    processes (Linux), a ``dagster-daemon`` of this ``DAGSTER_HOME`` is alive. A daemon killed with
    SIGKILL leaves heartbeats that look fresh for up to a minute; the process check sees through them
    (and wipes them, so nothing else trusts them)."""
    beats = instance.get_daemon_heartbeats()
    now = time.time()
    fresh = all(d in beats and now - beats[d].timestamp < HEARTBEAT_FRESH_SECONDS for d in DAEMONS_NEEDED)
    alive = daemon_processes(os.environ.get("DAGSTER_HOME", ""))
    if fresh and alive is not None and not alive:
        instance.wipe_daemon_heartbeats()
        return False
    return fresh


def processes_of(home: str) -> list[int] | None:
    """Pids of every process whose ``DAGSTER_HOME`` is ``home`` (a CLI, its daemon, code servers,
    run workers), this one aside; None where ``/proc`` cannot tell."""
    proc = Path("/proc")
    if not home or not (proc / "self" / "environ").exists():
        return None
    wanted = f"DAGSTER_HOME={home}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def daemon_processes(home: str) -> list[int] | None:
    """Pids of the ``dagster-daemon`` processes whose ``DAGSTER_HOME`` is ``home`` (``dagster dev``
    runs one too); None where ``/proc`` cannot tell."""
    found = processes_of(home)
    if found is None:
        return None
    daemons = []
    for pid in found:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # `dagster-daemon run` (by hand), `python -m dagster._daemon run` (dagster dev) or the
        # margin-pipeline's, which waits for its code server first (code_server.main)
        named = (
            any(part.endswith(b"dagster-daemon") for part in command[:2])
            or b"dagster._daemon" in command[:3]
            or (code_server.__name__.encode() in command[:3] and b"dagster-daemon" in command)
        )
        if named and b"run" in command:
            daemons.append(pid)
    return daemons


#: In ``$DAGSTER_HOME``: held by the process whose daemon serves the instance (``margin-pipeline
#: run`` that started one, ``margin-pipeline ui`` for ``dagster dev``'s), so no second daemon starts.
DAEMON_LOCK = "daemon.lock"
#: In ``$DAGSTER_HOME``: held shared by every ``with daemon(...)`` block while it needs the daemon;
#: the one that started it takes it exclusively before stopping it, so it waits for the others.
DAEMON_USERS = "daemon.users"


class Daemon:
    """The daemon serving the instance for a ``with daemon(...)`` block: one this block started (and
    looks after), or one that already ran (``dagster dev``, ``make ui``, another ``margin-pipeline
    run``: not ours to look after, until it stops while we still need one).

    Two daemons on one instance would both dequeue the same runs and launch each twice. Whoever
    starts one holds :data:`DAEMON_LOCK` while it runs; a block that finds the lock held, or a
    daemon process of the instance alive, waits for that daemon to serve the instance and uses it.
    Stopping a daemon stops the runs it launched, so its starter stops it only once no other block
    uses it (:data:`DAEMON_USERS`)."""

    #: Restarts after which a daemon that keeps exiting is an error, not bad luck.
    MAX_RESTARTS = 3
    #: How long a block that found the lock held waits for its holder's daemon to beat.
    HOLDER_START_SECONDS = 60

    def __init__(self, instance: dg.DagsterInstance, log: Path) -> None:
        self.instance, self.log = instance, log
        self.lock = FileLock(Path(instance.root_directory) / DAEMON_LOCK)
        self.users = FileLock(Path(instance.root_directory) / DAEMON_USERS)
        self.users.acquire(shared=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.code_server: code_server.CodeServer | None = None  # the one our daemon asks, started before it
        self.restarts = 0
        try:
            self.started = self._start_unless_served()
        except BaseException:
            self.users.release()
            raise

    def _start_unless_served(self) -> bool:
        """Start a daemon unless one serves the instance or is starting (its lock held, or a daemon
        process of the instance alive that has not beaten yet); True when started here."""
        home = os.environ.get("DAGSTER_HOME", "")
        deadline = time.monotonic() + self.HOLDER_START_SECONDS
        while True:
            if daemon_running(self.instance):
                return False
            if not daemon_processes(home) and self.lock.acquire(blocking=False):
                if not (daemon_running(self.instance) or daemon_processes(home)):  # still none: ours
                    try:
                        if self.code_server is None:
                            self.code_server = code_server.CodeServer(
                                WORKSPACE, Path(self.instance.root_directory)
                            )
                        self.process = self._spawn()
                    except BaseException:
                        self.lock.release()
                        raise
                    return True
                self.lock.release()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no daemon has served the instance for {self.HOLDER_START_SECONDS} s, though "
                    f"dagster-daemon processes {daemon_processes(home)} of it are alive and "
                    f"{self.lock.holder()} held {self.lock.path} last"
                )
            time.sleep(0.5)

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.code_server is not None
        workspace = str(self.code_server.workspace)
        command = self.code_server.when_serving("dagster-daemon", "run", "-w", workspace)
        return code_server.start_logged(command, self.log)

    def restart_if_exited(self) -> str | None:
        """Start our daemon again if it has exited (killed, the OOM killer), or one of ours if the
        one we used has stopped (its owner ended); returns what happened."""
        if self.process is None:
            if daemon_running(self.instance):
                return None
            self.started = self._start_unless_served()
            return "the daemon this run used has stopped: started one" if self.started else None
        assert self.code_server is not None
        served = self.code_server.restart_if_exited()
        if self.process.poll() is None:
            return served
        status = self.process.returncode
        if self.restarts >= self.MAX_RESTARTS:
            raise RuntimeError(
                f"dagster-daemon exited {self.restarts + 1} times (last status {status}): see {self.log}"
            )
        # The code server lives on, and with it the runs it started: the new daemon asks it too.
        self.process = self._spawn()
        self.restarts += 1
        restarted = f"dagster-daemon exited (status {status}): started again (log {self.log})"
        return f"{served}; {restarted}" if served else restarted

    def stop(self) -> None:
        self.users.release()
        if self.process is None:
            return
        if not self.users.acquire(blocking=False):
            print(f"waiting for the other commands using this daemon (pid {self.process.pid})", flush=True)
            self.users.acquire()
        try:
            self._stop_process(self.process)
        finally:
            self.users.release()
            self.lock.release()

    def _stop_process(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self.code_server is not None:  # then the runs it started
            self.code_server.stop()
        # Its last heartbeats would make the next call think a daemon still serves the instance.
        self.instance.wipe_daemon_heartbeats()


@contextlib.contextmanager
def daemon(instance: dg.DagsterInstance, log: Path) -> Iterator[Daemon]:
    """A daemon serving ``instance`` for the duration: the running one, else one started here."""
    served = Daemon(instance, log)
    try:
        yield served
    finally:
        served.stop()


#: The code location of ``workspace.yaml`` (its one repository is the ``Definitions``).
LOCATION = "margin_pipeline"
REPOSITORY = "__repository__"

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) { ...Launched }
}"""
REEXECUTE = """
mutation Reexecute($reexecutionParams: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $reexecutionParams) { ...Launched }
}"""
LAUNCHED = """
fragment Launched on LaunchRunResult {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on Error { message }
}"""


def graphql(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Run a GraphQL document against the code location of ``workspace.yaml`` and the instance of
    ``$DAGSTER_HOME``, through the ``dagster-graphql`` command: the API the UI itself uses. The
    location is reached at the code server a ``margin-pipeline`` daemon asks, when one serves the
    instance; else the command starts a code server of its own for the call (3 s more here)."""
    home = Path(os.environ.get("DAGSTER_HOME", ""))
    workspace = code_server.serving_workspace(home) or WORKSPACE
    command = [str(Path(sys.executable).parent / "dagster-graphql"), "-w", str(workspace)]
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "response.json"
        variables_json = json.dumps(variables)
        done = subprocess.run(
            [*command, "-t", document, "-v", variables_json, "-o", str(output)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        if done.returncode != 0 or not output.exists():
            raise RuntimeError(f"dagster-graphql failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        response = json.loads(output.read_text())
    if response.get("errors"):
        raise RuntimeError(f"GraphQL errors: {response['errors']}")
    return response["data"]


def _launched(result: dict[str, Any], what: str) -> str:
    if result["__typename"] == "LaunchRunSuccess":
        return result["run"]["runId"]
    reasons = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
    raise RuntimeError(f"{what} not launched: {result['__typename']}: {'; '.join(reasons)}")


def launch(
    job_name: str, run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None
) -> str:
    """Submit ``job_name`` to the instance's run queue, as the UI's Launch button and ``dagster job
    launch`` do; returns its run id."""
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job_name},
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    data = graphql(LAUNCH + LAUNCHED, {"executionParams": params})
    return _launched(data["launchRun"], job_name)


def reexecute_from_failure(run_id: str) -> str:
    """Re-execute a failed run from failure (the UI's button): only failed steps and what depends on
    them run; outputs of the steps that succeeded are reused. Returns the new run's id."""
    params = {"parentRunId": run_id, "strategy": "FROM_FAILURE"}
    data = graphql(REEXECUTE + LAUNCHED, {"reexecutionParams": params})
    return _launched(data["launchRunReexecution"], f"re-execution of {run_id}")


def wait_for_runs(instance: dg.DagsterInstance, run_ids: list[str], timeout: float = 1800) -> list[RunReport]:
    deadline = time.monotonic() + timeout
    while not all(instance.get_run_by_id(r).status in FINISHED_STATUSES for r in run_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs {run_ids} did not finish within {timeout:.0f} s")
        time.sleep(1)
    return [report(instance, r) for r in run_ids]


@dataclass
class ChainOutcome:
    done: bool
    message: str
    runs: list[RunReport] = field(default_factory=list)

    @property
    def failed(self) -> list[RunReport]:
        return [r for r in self.runs if r.status in ("FAILURE", "CANCELED")]


def chain_state(root: DataRoot) -> tuple[bool, str]:
    """Whether ``hh_margin`` reflects the latest substrate version, and if not, what it waits on."""
    if pending_files(root):
        return False, "files waiting in landing"
    store = DeltaRsStore(lake_root=str(root.lake))
    number = latest_substrate_version(store)
    if number is None:
        return True, "nothing ingested"
    pin = resolve_pin(store, number)
    watermarks = every_watermark(store)
    for stream in STREAMS.values():
        progress = stream_progress(store, stream, pin, watermarks)
        if not progress.consumed:
            return False, progress.describe()
    return True, f"every stream and hh_margin reflect substrate version {number}"


def follow_chain(
    instance: dg.DagsterInstance,
    root: DataRoot,
    since: float,
    on_progress: Callable[[str], None] = print,
    stall_seconds: float = 120,
    timeout: float = 3600,
    each_poll: Callable[[], None] = lambda: None,
) -> ChainOutcome:
    """Watch the chain the sensors drive until it is done, a run fails, or nothing moves for a while.

    The runs that count are those created after ``since`` and any run found in flight meanwhile,
    whenever it was created: a sensor may have launched ingest for the files that landed just
    before the command started, and while it moves them out of landing, before it records their
    substrate version, the lake looks caught up. A failed run that run retries may relaunch
    (:func:`~margin_pipeline.orchestration.runs.may_be_retried`) is not the end: its retry is one
    of the runs. "Stalled" means no run is queued or running and no file is pending, yet some
    stream is behind (e.g. a sensor is stopped, or the parent for this N already failed and awaits
    a repair). ``each_poll`` is called on every look (``margin-pipeline run`` restarts its daemon
    there if it died).
    """
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    last = ""
    looked_at: tuple[tuple[str, dg.DagsterRunStatus], ...] | None = None
    in_flight = dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if s not in FINISHED_STATUSES])
    followed: set[str] = set()  # runs created before ``since``, found in flight
    while True:
        each_poll()
        runs = list(reversed(instance.get_runs(filters=dg.RunsFilter(created_after=_utc(since)))))
        followed |= {r.run_id for r in instance.get_runs(filters=in_flight)} - {r.run_id for r in runs}
        if followed:
            runs = [*reversed(instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(followed)))), *runs]
        # Statuses come from the run records; event logs are read only once the outcome is known.
        failed = [
            r
            for r in runs
            if r.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
            and not may_be_retried(instance, r)
        ]
        active = [r for r in runs if r.status not in FINISHED_STATUSES]
        if failed:
            first = report(instance, failed[0].run_id)
            return ChainOutcome(
                False,
                f"{first.job} run {first.run_id} failed: {first.error}",
                [report(instance, r.run_id) for r in runs],
            )
        # The lake moves on only as runs end: while some run is active, read it again only when a
        # run's status changed (a few Delta log reads; the run records are read every poll).
        statuses = tuple((r.run_id, r.status) for r in runs)
        if not active or statuses != looked_at:
            done, waiting_on = chain_state(root)
            looked_at = statuses
        if done and not active:
            return ChainOutcome(True, waiting_on, [report(instance, r.run_id) for r in runs])
        status = f"{len(runs)} run(s), {len(active)} active; {waiting_on}"
        if status != last:
            on_progress(status)
            last = status
        if active:
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > stall_seconds:
            message = f"stalled: {waiting_on}; no run active for {stall_seconds:.0f} s"
            return ChainOutcome(False, message, [report(instance, r.run_id) for r in runs])
        if time.monotonic() > deadline:
            return ChainOutcome(
                False,
                f"timed out after {timeout:.0f} s: {waiting_on}",
                [report(instance, r.run_id) for r in runs],
            )
        time.sleep(FOLLOW_POLL_SECONDS)


def _utc(timestamp: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
