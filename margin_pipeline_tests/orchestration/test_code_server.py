"""The processes ``margin-pipeline`` starts for the daemon (its code server, the daemon) start every
time, and die with the process that started them.

That process talks gRPC: it asks the code server whether it serves (``code_server.serving``). A
child forked from such a process that runs Python before its ``exec`` (a ``preexec_fn``) had gRPC's
fork handlers restart a poller whose descriptor the child then closed: a few in a hundred aborted
before their ``exec`` (grpc/grpc#43055). A CI run whose first run never started had that abort's
message in its code server's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal: Linux")

#: In a process serving gRPC and asking itself whether it serves, as ``margin-pipeline run`` asks its
#: code server, start ``/bin/true`` with ``start_logged`` again and again; print each exit status.
#: A child that runs Python between its fork and its exec (where gRPC's fork handlers run too) runs
#: the fork hook registered here, which leaves a mark.
STARTS = """
import os
import sys
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from margin_pipeline.orchestration.code_server import HEALTH_SERVICE, serving, start_logged

folder = Path(sys.argv[1])
os.register_at_fork(after_in_child=lambda: (folder / "python ran before exec").touch())
server = grpc.server(futures.ThreadPoolExecutor(2))
servicer = health.HealthServicer()
servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(f"unix:{folder / 'grpc.sock'}")
server.start()
for _ in range(int(sys.argv[2])):
    assert serving(folder / "grpc.sock")
    print(start_logged(["/bin/true"], folder / "started.log").wait(), flush=True)
server.stop(None)
"""


def test_processes_started_by_a_process_talking_grpc_run_no_python_before_exec(tmp_path: Path) -> None:
    """Each child starts (status 0), and none ran Python before its exec: with a ``preexec_fn``
    (which does), a few children in a hundred aborted under load (SIGABRT, status -6), too rarely
    for their statuses alone to show it every time."""
    done = subprocess.run(
        [sys.executable, "-c", STARTS, str(tmp_path), "50"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = [int(line) for line in done.stdout.split()]
    assert len(statuses) == 50 and set(statuses) == {0}, (statuses, (tmp_path / "started.log").read_text())
    assert not (tmp_path / "python ran before exec").exists()


#: Asks for SIGTERM when process ARGV[1] (its parent, or a process that is not) dies, then says so.
DIES_WITH = """
import signal, sys
from margin_pipeline.orchestration.warm_workers import die_with_parent
die_with_parent(signal.SIGTERM, int(sys.argv[1]))
print("alive")
"""


@pytest.mark.parametrize("parent", ["this process", "another, as when the parent died before"])
def test_a_process_whose_parent_is_gone_already_ends_at_once(parent: str) -> None:
    """A child given to another parent (its own died before it asked) gets the signal at once,
    not never; a child whose parent lives goes on."""
    pid = os.getpid() if parent == "this process" else 1
    done = subprocess.run(
        [sys.executable, "-c", DIES_WITH, str(pid)], capture_output=True, text=True, timeout=60
    )
    if parent == "this process":
        assert (done.returncode, done.stdout) == (0, "alive\n"), done.stderr
    else:
        assert (done.returncode, done.stdout) == (-signal.SIGTERM, ""), done.stderr
