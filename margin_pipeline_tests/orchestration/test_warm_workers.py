"""Processes spawned through the warm zygote (``orchestration/warm_workers.py``) behave as spawned ones.

The code server's run workers are ``multiprocessing`` spawn processes; here the same spawn is
driven from a plain process (no Dagster), so each property is checked on its own: the child is
forked from the zygote (waiting for it while it loads), gets the queues and events it was given,
ends with its own exit status, dies when it is signalled or when the process spawn knows (the
trampoline) is, and, with no zygote alive, starts as spawn would have. Through the real daemon:
the parent-stopped test of ``test_job_of_jobs.py`` checks a run worker's parent is the zygote.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from margin_pipeline.orchestration import warm_workers
from margin_pipeline_tests.helpers import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, pidfds and /proc: Linux")


def report_then_exit(queue: Any, go: Any, code: int) -> None:
    """A spawned child: say who it is and who its parent is, wait to be told, exit with ``code``."""
    queue.put((os.getpid(), os.getppid()))
    go.wait(300)  # longer than any join here: a child left running is seen, not outwaited
    sys.exit(code)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def drive(folder: str, with_zygote: str) -> None:
    """Run in a process of its own (spawn's executable is process-wide): print what was seen."""
    zygote = warm_workers.start(Path(folder), "json")
    # Not waited for: the first process is spawned while the zygote still loads, and waits for it.
    if with_zygote != "yes":
        zygote.kill()
        zygote.wait()
    context = multiprocessing.get_context("spawn")
    seen: dict[str, Any] = {"zygote": zygote.pid, "me": os.getpid()}

    def spawned(code: int) -> tuple[Any, Any, int, int]:
        queue, go = context.Queue(), context.Event()
        process = context.Process(target=report_then_exit, args=(queue, go, code))
        process.start()
        pid, parent = queue.get(timeout=120)
        return process, go, pid, parent

    process, go, pid, parent = spawned(3)
    go.set()
    process.join(60)
    seen["exit"] = {"parent": parent, "worker": pid, "process": process.pid, "exitcode": process.exitcode}

    if with_zygote == "yes":  # loaded, it leaves stopping to the code server: SIGTERM changes nothing
        zygote.terminate()
    process, go, pid, parent = spawned(0)
    os.kill(pid, signal.SIGKILL)
    process.join(60)
    seen["worker_killed"] = process.exitcode
    seen["parent_after_sigterm"] = parent

    process, go, pid, _ = spawned(0)
    process.terminate()  # SIGTERM to the process spawn knows
    process.join(60)
    wait_until(lambda: not alive(pid), 30, f"worker {pid} to end with its process", interval=0.05)
    seen["terminated"] = process.exitcode

    if with_zygote == "yes":
        process, go, pid, _ = spawned(0)
        process.kill()  # the trampoline SIGKILLed: its worker must not run on
        process.join(60)
        wait_until(lambda: not alive(pid), 30, f"worker {pid} to end with its trampoline", interval=0.05)
        seen["trampoline_killed"] = process.exitcode
    print(json.dumps(seen), flush=True)


def driven(tmp_path: Path, with_zygote: bool) -> dict[str, Any]:
    program = f"from {__name__} import drive; drive({str(tmp_path)!r}, {'yes' if with_zygote else 'no'!r})"
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_spawned_process_is_forked_from_the_zygote_and_ends_as_a_spawned_one_would(tmp_path: Path) -> None:
    seen = driven(tmp_path, with_zygote=True)
    exit_ = seen["exit"]
    assert exit_["parent"] == seen["zygote"], "the child was not forked from the zygote"
    assert exit_["worker"] != exit_["process"]  # the process spawn knows is the trampoline
    assert exit_["exitcode"] == 3  # its queue and event reached it; its status came back
    assert seen["worker_killed"] == -signal.SIGKILL
    assert seen["parent_after_sigterm"] == seen["zygote"], "a loaded zygote ended on SIGTERM"
    assert seen["terminated"] == -signal.SIGTERM
    assert seen["trampoline_killed"] == -signal.SIGKILL
    # Its parent (the driver) gone and its workers ended, the zygote ends too.
    wait_until(lambda: not alive(seen["zygote"]), 30, "the zygote to end with the process that started it")


def test_with_no_zygote_listening_a_process_is_spawned_as_before(tmp_path: Path) -> None:
    seen = driven(tmp_path, with_zygote=False)
    exit_ = seen["exit"]
    assert exit_["parent"] == seen["me"]
    assert exit_["worker"] == exit_["process"]
    assert exit_["exitcode"] == 3
    assert seen["worker_killed"] == -signal.SIGKILL
    assert seen["terminated"] == -signal.SIGTERM


def test_a_number_spawn_gave_is_in_use_in_the_zygote_only_when_a_descriptor_is_open_there(
    tmp_path: Path,
) -> None:
    """The zygote refuses a worker whose descriptors would land on one of its own; a free number
    (such as the one a listing of ``/proc/self/fd`` uses for itself) is not a clash."""
    with (tmp_path / "held").open("w") as held:
        free = os.open(os.devnull, os.O_RDONLY)  # the lowest free number
        os.close(free)
        assert warm_workers.in_use({free, held.fileno()}, own=set()) == {held.fileno()}
        assert warm_workers.in_use({held.fileno()}, own={held.fileno()}) == set()


def test_a_zygote_stopped_while_it_loads_ends_at_once(tmp_path: Path) -> None:
    """``margin-pipeline run`` with nothing to do stops its code server's group before the zygote
    has loaded: the zygote ends then, instead of loading on for nothing (and once it has loaded,
    it ignores SIGTERM: its workers end their runs first, as the first test shows)."""
    program = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from margin_pipeline.orchestration import warm_workers\n"
        f"zygote = warm_workers.start(Path({str(tmp_path)!r}), 'json')\n"
        "time.sleep(0.3)\n"
        "zygote.terminate()\n"
        "print(zygote.wait(timeout=60))\n"
    )
    repo = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=repo
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(-signal.SIGTERM)]
    assert not (tmp_path / warm_workers.SOCKET).exists()


def test_a_zygote_whose_code_server_is_gone_leaves_the_socket_of_the_one_started_again(
    tmp_path: Path,
) -> None:
    """A code server started again in the same folder has a new zygote bound at the same path; the
    old zygote, ending once it sees its code server gone, must not remove that socket (trampolines
    would wait for a zygote they cannot reach). Here the new one binds before the old one sees it."""
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from margin_pipeline.orchestration import warm_workers\n"
        f"print(warm_workers.start(Path({str(tmp_path)!r}), 'json').pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    socket_path = tmp_path / warm_workers.SOCKET

    def code_server() -> tuple[subprocess.Popen[str], int]:
        process = subprocess.Popen(
            [sys.executable, "-c", program],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert process.stdout is not None
        return process, int(process.stdout.readline())

    def bound() -> int | None:
        try:
            return socket_path.stat().st_ino
        except OSError:
            return None

    old, old_zygote = code_server()
    try:
        wait_until(lambda: bound() is not None, 120, "the first zygote to listen", 0.05)
        first = bound()
        new, new_zygote = code_server()
        try:
            wait_until(lambda: bound() not in (None, first), 120, "the second zygote to listen", 0.05)
            second = bound()
            old.communicate("")  # the first code server ends; its zygote, with no worker, ends too
            wait_until(lambda: not alive(old_zygote), 30, "the first zygote to end with its code server")
            assert bound() == second, "the first zygote removed the second one's socket"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(socket_path))
        finally:
            new.communicate("")
        wait_until(lambda: not alive(new_zygote), 30, "the second zygote to end with its code server")
    finally:
        if old.poll() is None:
            old.communicate("")
