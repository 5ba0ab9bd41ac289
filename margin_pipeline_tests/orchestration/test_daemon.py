"""The daemon ``margin-pipeline run`` starts dies with it, and a dead daemon's heartbeats are not trusted.

A process holding :func:`~margin_pipeline.orchestration.drive.daemon` open is killed with SIGKILL (a
closed terminal, an OOM kill, a CI timeout): the ``dagster-daemon`` it started must not outlive it,
and the heartbeats it left (fresh for up to a minute) must not make the next ``run`` believe a
daemon still serves the instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from margin_pipeline.orchestration.code_server import serving_workspace
from margin_pipeline.orchestration.drive import (
    DAEMONS_NEEDED,
    daemon,
    daemon_processes,
    daemon_running,
    processes_of,
)
from margin_pipeline.settings import REPO_ROOT, prepare_dagster_home
from margin_pipeline_tests.helpers import wait_until

pytestmark = pytest.mark.slow

#: A command holding a ``daemon(...)`` block: says whether it started the daemon or uses another's,
#: keeps the block until a line arrives on its stdin, then says it stopped.
DRIVER = """
import sys
import dagster as dg
from pathlib import Path
from margin_pipeline.orchestration.drive import daemon
with dg.DagsterInstance.get() as instance, daemon(instance, Path("{log}")) as served:
    print("started" if served.started else "used", flush=True)
    sys.stdin.readline()
print("stopped", flush=True)
"""


def start_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, subprocess.Popen[str]]:
    """A new instance home (this process's too), and a :data:`DRIVER` running on it."""
    home = prepare_dagster_home(tmp_path / "margin")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER.format(log=home / "daemon.log")],
        cwd=REPO_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return home, driver


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal and /proc are Linux")
def test_a_killed_driver_leaves_no_daemon_and_no_trusted_heartbeat(tmp_path: Path, monkeypatch) -> None:
    home, driver = start_driver(tmp_path, monkeypatch)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "started"
        with dg.DagsterInstance.get() as instance:
            beats = instance.get_daemon_heartbeats
            wait_until(lambda: all(d in beats() for d in DAEMONS_NEEDED), 90, "the daemon's first heartbeats")
            [pid] = daemon_processes(str(home)) or [None]
            assert pid is not None and daemon_running(instance)
            [server] = code_servers(home)
            (spec,) = yaml.safe_load((home / "code_server.yaml").read_text())["load_from"]
            folder = Path(spec["grpc_server"]["socket"]).parent  # its socket, zygote's, trampoline

            driver.send_signal(signal.SIGKILL)  # no finally, no cleanup: what a closed terminal does
            driver.wait()
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, f"daemon {pid} to die with its driver")
            wait_until(lambda: not Path(f"/proc/{server}").exists(), 60, f"code server {server} to die too")
            wait_until(lambda: not folder.exists(), 30, f"the code server to remove {folder}")
            assert all(d in beats() for d in DAEMONS_NEEDED), "its heartbeats are still there and fresh"
            assert not daemon_running(instance), "a process check sees through them"
            assert beats() == {}, "and wipes them, so nothing else trusts them"
    finally:
        if driver.poll() is None:
            driver.kill()


def code_servers(home: Path) -> list[int]:
    """Pids of the ``dagster api grpc`` processes of the instance at ``home``."""
    found = []
    for pid in processes_of(str(home)) or []:
        with contextlib.suppress(OSError):
            if b"api\0grpc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_the_daemon_asks_the_one_code_server_started_for_it_and_it_is_started_again_if_it_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given ``workspace.yaml``, a daemon would start a code server of its own, and a new one every
    minute. The daemon started here is given the code server started with it instead: the only one
    of the instance, and what evaluates its sensors. Killed, that server is started again at the
    same socket, and the same daemon's sensors are evaluated by the new one."""
    home = prepare_dagster_home(tmp_path / "margin")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    log = home / "daemon.log"

    def evaluations() -> int:  # the sensor daemon logs each evaluation's outcome
        return log.read_text(errors="replace").count("Sensor watermark_gate skipped")

    with dg.DagsterInstance.get() as instance, daemon(instance, log) as served:
        assert served.started and served.code_server is not None
        first = served.code_server.process.pid
        wait_until(lambda: evaluations() > 0, 90, "a first evaluation of watermark_gate")
        assert code_servers(home) == [first], "one code server, the one started for the daemon"
        # GraphQL calls (launches, re-executions) reach it too, instead of starting one each.
        assert serving_workspace(home) == served.code_server.workspace

        os.kill(first, signal.SIGKILL)
        served.code_server.process.wait()
        assert serving_workspace(home) is None, "gone: the calls start their own meanwhile"
        said = served.restart_if_exited()
        assert said is not None and "the code server exited (status -9): started again" in said, said
        assert served.restart_if_exited() is None, "serving again: nothing more to do"
        second = served.code_server.process.pid
        # Popen returns as the new program starts; /proc shows its command line and environment
        # a moment later (read at once under load, 3 times in 20 runs, it listed none).
        wait_until(lambda: code_servers(home) == [second], 30, f"code server {second} in /proc")
        assert second != first
        seen = evaluations()
        wait_until(lambda: evaluations() > seen, 90, "watermark_gate evaluated by the new code server")
        assert code_servers(home) == [second], "the daemon did not start one of its own meanwhile"
    wait_until(lambda: not code_servers(home), 30, "the code server to stop with the daemon")
    assert serving_workspace(home) is None and not (home / "code_server.yaml").exists()


PREPARER = """
import sys, time
from pathlib import Path
import dagster as dg
from margin_pipeline.settings import prepare_dagster_home
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
prepare_dagster_home(Path(sys.argv[1]))
with dg.DagsterInstance.get() as instance:
    instance.get_runs(limit=1)
"""


def test_processes_preparing_a_new_instance_at_once_all_open_it(tmp_path: Path) -> None:
    """`make ui` and `margin-pipeline run` started together on a new data root: every process that
    prepares the instance home at the same moment opens the instance, and it opens afterwards too
    (without the lock, 4 of 5 tries failed with 3 processes, and the instance was left unopenable:
    "more than one head present" in its schema version table)."""
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTEST_XDIST_WORKER")}
    start = time.time() + 3.0  # every process imported what it needs by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARER, str(root), str(start)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.communicate(timeout=120)[1][-1500:], p.returncode) for p in processes]
    assert all(code == 0 for _, code in outcomes), outcomes
    again = subprocess.run(
        [sys.executable, "-c", PREPARER, str(root), "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-1500:]


def test_two_runs_started_together_share_one_daemon_and_each_run_has_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`margin-pipeline run` twice at once on the same data root (two terminals, an overlapping
    cron): one starts the daemon, the other uses it. Two daemons would each dequeue the same runs and
    launch them twice: before the daemon lock, a monthly run ran in two workers and one failed
    ("another run consumed this range"), failing the chain for both commands."""
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTEST_XDIST_WORKER")}
    env |= {"MARGIN_PIPELINE_ROOT": str(root), "RUST_LOG": "error"}
    cli = str(Path(sys.executable).parent / "margin-pipeline")
    generated = subprocess.run(
        [cli, "generate", "--meters", "12", "--days", "3", "--seed", "7"], env=env, capture_output=True
    )
    assert generated.returncode == 0, generated.stderr[-1500:]
    runs = [
        subprocess.Popen([cli, "run"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [(p.communicate(timeout=600)[0], p.returncode) for p in runs]
    assert all(code == 0 for _, code in outputs), [out[-2000:] for out, _ in outputs]
    started = sorted("started for this run" in out for out, _ in outputs)
    assert started == [False, True], [out[:300] for out, _ in outputs]  # one daemon, used by both
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    with dg.DagsterInstance.get() as instance:
        workers = {
            f"{r.job_name} {r.run_id[:8]}": sum(
                (e.message or "").startswith("Started process for run")
                for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            )
            for r in instance.get_runs()
        }
    assert len(workers) == 6 and set(workers.values()) == {1}, workers


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_the_daemons_starter_stops_it_only_once_no_other_command_uses_it(tmp_path: Path, monkeypatch) -> None:
    """Stopping a daemon stops the runs it launched: the command that started it, ending first (a
    `margin-pipeline reexecute`, a Ctrl-C), waits for the others using it before it stops it."""
    home, starter = start_driver(tmp_path, monkeypatch)
    try:
        assert starter.stdout is not None and starter.stdin is not None
        assert starter.stdout.readline().strip() == "started"
        with dg.DagsterInstance.get() as instance, daemon(instance, home / "daemon.log") as served:
            assert not served.started, "the second block uses the first one's daemon"
            [pid] = daemon_processes(str(home)) or [None]
            starter.stdin.write("\n")
            starter.stdin.flush()
            assert "waiting for the other commands" in starter.stdout.readline()
            time.sleep(3)
            assert starter.poll() is None and Path(f"/proc/{pid}").exists(), "stopped under a user"
        assert starter.stdout.readline().strip() == "stopped"
        assert starter.wait(timeout=90) == 0
        wait_until(lambda: not daemon_processes(str(home)), 60, "the daemon to stop once nobody uses it")
    finally:
        if starter.poll() is None:
            starter.kill()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_a_daemon_process_not_beating_yet_is_waited_for_not_doubled(tmp_path: Path, monkeypatch) -> None:
    """A `dagster-daemon` of the instance started outside margin-pipeline (`dagster dev` by hand) that
    has not written its first heartbeats: a run uses it instead of starting a second daemon, and
    `margin-pipeline ui` (whose `dagster dev` would start another) refuses, naming it."""
    root = tmp_path / "margin"
    home = prepare_dagster_home(root)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**os.environ, "DAGSTER_HOME": str(home), "MARGIN_PIPELINE_ROOT": str(root)}
    bare = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: daemon_processes(str(home)) == [bare.pid], 30, "the bare daemon's process")
        with dg.DagsterInstance.get() as instance:
            assert not daemon_running(instance), "no heartbeat yet: the case at hand"
            with daemon(instance, home / "daemon.log") as served:
                assert not served.started
                assert daemon_processes(str(home)) == [bare.pid], "one daemon"
        ui = subprocess.run(
            [str(Path(sys.executable).parent / "margin-pipeline"), "ui", "--port", "0"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # refusing takes seconds; a UI that started would run until killed here
        )
        assert ui.returncode == 2 and f"{[bare.pid]} already serve" in ui.stderr, ui.stderr[-1500:]
    finally:
        os.killpg(bare.pid, signal.SIGTERM)
        bare.wait(timeout=60)


#: Counts, for ``argv[2]`` seconds, the looks at ``argv[1]`` (a dagster.yaml) that found no file.
WATCHER = """
import os, sys, time
path, until = sys.argv[1], time.time() + float(sys.argv[2])
print("watching", flush=True)
missing = looks = 0
while time.time() < until:
    looks += 1
    missing += not os.path.exists(path)
print(missing, looks, flush=True)
"""


def test_the_instance_config_is_never_missing_while_it_switches_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CLI call writes ``$DAGSTER_HOME/dagster.yaml``: the repo's file linked, or rendered for
    ``$DAGSTER_PG_URL``. Switched in one rename, a process opening the instance meanwhile (a daemon,
    a code server, a run worker) always finds one; with none, Dagster would fall back to SQLite
    without a word."""
    from margin_pipeline.settings import POSTGRES_URL_ENV, _link_config

    home = tmp_path / "dagster"
    home.mkdir()
    _link_config(home)
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(home / "dagster.yaml"), "6"], stdout=subprocess.PIPE, text=True
    )
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "watching"
    switches = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        monkeypatch.setenv(POSTGRES_URL_ENV, "postgresql+psycopg2://user:secret@localhost:5432/dagster")
        _link_config(home)
        monkeypatch.delenv(POSTGRES_URL_ENV)
        _link_config(home)
        switches += 2
    missing, looks = (int(n) for n in watcher.communicate(timeout=60)[0].split())
    assert switches > 100 and looks > 10_000, (switches, looks)
    assert missing == 0, f"dagster.yaml was missing at {missing} of {looks} looks, over {switches} switches"
