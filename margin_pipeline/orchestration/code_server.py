"""One code server for the life of a daemon started by ``margin-pipeline``, as ``dagster dev`` has.

A ``dagster-daemon`` given ``workspace.yaml`` (a ``python_module`` location) starts the location's
gRPC code server itself, and starts a new one every 60 s to pick up code changes (Dagster's
``RELOAD_WORKSPACE_INTERVAL``; the old one lingers 20 s for its heartbeats). Each new server imports
Dagster and loads the definitions again: on 2 cores that is CPU taken from the chain's runs, once a
minute, for code that does not change while a chain runs.

So the daemon that :class:`~margin_pipeline.orchestration.drive.Daemon` starts gets a workspace of
its own that names a ``grpc_server``: ``dagster api grpc`` on a Unix socket, started here first
and kept for the daemon's life. It is the process that evaluates the sensors and starts the run
workers (the daemon only asks it); a daemon started again after a crash finds it still serving,
with the runs it started still running. ``dagster dev`` (``margin-pipeline ui``) already works this
way with servers of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from margin_pipeline.orchestration import warm_workers

#: The service name Dagster's code server reports SERVING once it has loaded the definitions.
HEALTH_SERVICE = "DagsterApi"
#: In ``$DAGSTER_HOME``: the server's log, and the workspace naming it while it runs.
LOG = "code_server.log"
WORKSPACE = "code_server.yaml"


def workspace_location(workspace: Path) -> tuple[str, str]:
    """The module and location name of ``workspace``'s one ``python_module`` entry."""
    (entry,) = yaml.safe_load(workspace.read_text())["load_from"]
    module = entry["python_module"]
    return module["module_name"], module["location_name"]


class CodeServer:
    """``dagster api grpc`` serving the location of ``source`` (``workspace.yaml``) on a Unix socket,
    its run workers forked from a warm zygote (:mod:`~margin_pipeline.orchestration.warm_workers`),
    and a workspace file naming it (:attr:`workspace`). It dies with the process that started it
    (Linux), like the daemon (:func:`start_logged`). This module imports no Dagster: :func:`main`
    starts the daemon's process."""

    #: Loading the definitions takes seconds; on a machine under load, tens of seconds.
    STARTUP_SECONDS = 180
    #: Restarts after which a code server that keeps exiting is an error, not bad luck.
    MAX_RESTARTS = 3

    def __init__(self, source: Path, home: Path) -> None:
        """Serve ``source``'s location for the instance at ``home`` (``$DAGSTER_HOME``), which gets
        its log (:data:`LOG`) and its workspace file (:data:`WORKSPACE`)."""
        self.log = home / LOG
        self.module, self.location = workspace_location(source)
        # A Unix socket's path is limited to about 100 bytes: a short temporary folder, not DAGSTER_HOME.
        self.folder = Path(tempfile.mkdtemp(prefix="margin-code-"))
        self.socket = self.folder / "grpc.sock"
        self.workspace = home / WORKSPACE
        spec = {"grpc_server": {"socket": str(self.socket), "location_name": self.location}}
        self.workspace.write_text(json.dumps({"load_from": [spec]}))  # JSON is YAML
        self.restarts = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.folder.mkdir(exist_ok=True)  # removed by the server before, as it ended
        self.socket.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            warm_workers.__name__,
            "serve",
            str(os.getpid()),
            str(self.folder),
            self.module,
            "api",
            "grpc",
            "--module-name",
            self.module,
            "--location-name",
            self.location,
            "--socket",
            str(self.socket),
        ]
        # In a session of its own, its run workers are its process group: stopped with it.
        return start_logged(command, self.log)

    def when_serving(self, script: str, *args: str) -> list[str]:
        """The command that runs console script ``script`` (``dagster-daemon``) with ``args`` once this
        server serves, importing it meanwhile (:func:`main`). The caller goes on: a ``margin-pipeline
        run`` with nothing to do ends before the definitions have loaded. A daemon started before
        the server serves would fail to load the location, and try again only a minute later."""
        return [
            sys.executable,
            "-m",
            __name__,
            str(os.getpid()),
            str(self.socket),
            str(self.STARTUP_SECONDS),
            script,
            *args,
        ]

    def restart_if_exited(self) -> str | None:
        """Start the server again if it has exited (killed, the OOM killer); what happened, if so.
        The daemon reaches the new one at the same socket."""
        if self.process.poll() is None:
            return None
        status = self.process.returncode
        if self.restarts >= self.MAX_RESTARTS:
            raise RuntimeError(
                f"the code server exited {self.restarts + 1} times (last status {status}): see {self.log}"
            )
        self.restarts += 1
        self.process = self._start()
        return f"the code server exited (status {status}): started again (log {self.log})"

    def stop(self) -> None:
        """Stop the server and the run workers it started (its process group)."""
        self._kill(self.process)
        self.workspace.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        # SIGTERM lets its run workers end their runs as interrupted. The server keeps no state of its
        # own (runs are in the instance) and on SIGTERM would wait for its threads: it is killed.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.kill()
        process.wait()


def start_logged(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session (process group) of its own, its output appended to ``log``.

    The commands started so (this module's :func:`main`, ``warm_workers serve``) are given this
    process's pid and have SIGTERM sent to them when it dies (:func:`warm_workers.die_with_parent`,
    called as they start), so a killed ``margin-pipeline run`` leaves neither behind. Not in a
    ``preexec_fn``: this process talks gRPC (:func:`serving`), and a child forked from it that runs
    Python before its ``exec`` has gRPC's fork handlers restart a poller whose descriptor the child
    then closes; measured here under load, up to 11 in 150 such children aborted (SIGABRT) before
    their ``exec`` (grpc/grpc#43055, grpcio 1.85). Without ``preexec_fn``, Python starts the child
    with ``vfork`` and none of that runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )


def serving_workspace(home: Path) -> Path | None:
    """The workspace naming the code server of the instance at ``home`` when one serves; None when
    none was started for it (``dagster dev`` has its own), or it is gone (killed: its file stays)."""
    path = home / WORKSPACE
    try:
        (entry,) = yaml.safe_load(path.read_text())["load_from"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
    return path if serving(Path(entry["grpc_server"]["socket"])) else None


def serving(socket: Path) -> bool:
    """Whether Dagster's code server at ``socket`` has loaded the definitions and serves."""
    if not socket.exists():
        return False
    request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    """``PARENT SOCKET SECONDS SCRIPT ARGS...``: die with process ``PARENT``; import console script
    ``SCRIPT`` while the code server at ``SOCKET`` loads (on 2 cores the two overlap), wait until it
    serves, then run ``SCRIPT ARGS`` in this process (its pid, its parent-death signal); exit 1 if
    it does not serve within ``SECONDS``."""
    warm_workers.die_with_parent(signal.SIGTERM, int(argv[0]))
    socket, seconds, script, args = Path(argv[1]), float(argv[2]), argv[3], argv[4:]
    run = warm_workers.console_script(script)
    deadline = time.monotonic() + seconds
    while not serving(socket):
        if time.monotonic() > deadline:
            print(f"the code server at {socket} did not serve within {seconds:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
