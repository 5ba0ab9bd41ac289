"""Run workers forked from a warm process instead of started afresh.

Dagster's code server starts each run worker with ``multiprocessing``'s *spawn*: a new interpreter,
which imports Dagster and loads the code location before the run's first event. On 2 cores that
was 2.3-3.1 s from ``STARTING`` to ``STARTED`` (now 1.0-1.5 s), five times on a chain's critical
path (ingest, the parent, a first-wave child, monthly, reconciled), and that CPU for every run.

The code server that :class:`~margin_pipeline.orchestration.code_server.CodeServer` starts runs
:func:`serve`, which, before it runs ``dagster api grpc`` in its own process (:func:`start`):

- starts a **zygote**: a process that imports Dagster and loads the code location, then listens
  on a Unix socket and forks a child per request;
- points spawn at a **trampoline** (``multiprocessing.set_executable``): a short script run by the
  same Python without ``site`` (milliseconds). When the code server spawns a run worker, the
  trampoline hands the zygote every descriptor spawn left open for the child (its standard
  streams, the pipe carrying the process object, the resource tracker's, those of the queues and
  events it pickled), its directory and its environment. The zygote's child puts each descriptor
  at its number and runs the program spawn gave (``spawn_main(...)``): the process spawn would
  have started, with everything imported already. When the zygote itself holds a descriptor at
  one of those numbers, it refuses, and the trampoline starts Python as spawn would have.

The trampoline stays as the process the code server knows (its pid, its exit status): it forwards
to the worker the signals it gets and exits as the worker exited (a worker killed by a signal, the
trampoline kills itself with the same one). The worker has its own process group, so a signal to
the code server's group reaches it once, through the trampoline. The run's events name the
worker's own pid, as before. If the trampoline is killed the zygote kills its worker; if the
zygote is killed its workers die with it (parent-death signal), and their trampolines end so.

Once loaded, the zygote ignores SIGTERM (stopping is the code server's: stopped while it loads,
it ends at once, as when ``margin-pipeline run`` had nothing to do) and outlives the code server
until its last worker ends (a run goes on as it would in a spawned worker), then exits. A trampoline started
while the zygote still loads waits for it (a spawned Python would load the same beside it, on the
same cores). Any other command spawn runs (the resource tracker), or no zygote alive, and the
trampoline runs Python exactly as spawn would have. ``dagster dev`` (``make ui``) starts its code
servers itself: its runs are spawned as before.

Only public interfaces are used: ``multiprocessing.set_executable``, the command line spawn builds
(``-c <program> --multiprocessing-fork``), ``socket.send_fds``, ``os.fork``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib
import json
import multiprocessing
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
#: This module, by name (as ``__main__`` its ``__name__`` says nothing).
MODULE = "margin_pipeline.orchestration.warm_workers"
#: In the folder :func:`start` is given: the zygote's socket, bound once it has loaded.
SOCKET = "zygote.sock"
#: The most descriptors one message carries (Linux's SCM_MAX_FD).
MAX_FDS = 253
#: What the trampoline runs: the zygote's socket and the real Python are filled in.
TRAMPOLINE = r"""
import json, os, re, signal, socket, struct, sys, time

ZYGOTE, ZYGOTE_PID, PYTHON = {zygote!r}, {zygote_pid!r}, {python!r}
args = sys.argv[1:]
program = args[args.index("-c") + 1] if "-c" in args else ""
spawned = re.fullmatch(r"from multiprocessing\.spawn import spawn_main; spawn_main\((.*)\)", program)


def as_spawn_would():
    os.execv(PYTHON, [PYTHON, *args])


if spawned is None or args[-1:] != ["--multiprocessing-fork"]:
    as_spawn_would()
# Every descriptor spawn left open for the child (its streams, the pipe, the resource tracker's,
# those of the queues and events it pickled), to be open at the same numbers in the worker.
fds = []
for name in os.listdir("/proc/self/fd"):
    try:
        os.fstat(int(name))
    except OSError:  # the listing's own, closed by now
        continue
    fds.append(int(name))


def loading():  # whether the zygote is alive (still loading, if it does not listen yet)
    try:
        with open(f"/proc/{{ZYGOTE_PID}}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# A zygote still loading is waited for: spawning Python instead would load the same, beside it.
deadline = time.monotonic() + 300
while True:
    zygote = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        zygote.connect(ZYGOTE)
        break
    except OSError:
        zygote.close()
        if not loading() or time.monotonic() > deadline:
            as_spawn_would()
        time.sleep(0.05)
request = json.dumps({{"cwd": os.getcwd(), "env": dict(os.environ), "program": program, "fds": fds}}).encode()
socket.send_fds(zygote, [struct.pack("!I", len(request)) + request], fds)


def receive(size):
    data = b""
    while len(data) < size:
        chunk = zygote.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


pid = receive(4)
if pid == struct.pack("!I", 0):  # refused: it holds one of these numbers itself
    zygote.close()
    as_spawn_would()
if pid is not None:
    worker = struct.unpack("!I", pid)[0]

    def forward(signum, frame):
        try:
            os.kill(worker, signum)
        except ProcessLookupError:
            pass

    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), forward)
status = receive(4) if pid is not None else None
code = struct.unpack("!i", status)[0] if status is not None else -signal.SIGKILL
if code < 0:  # killed by a signal: so is this process
    if -code != signal.SIGKILL:
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
os._exit(code if code >= 0 else 128 - code)
"""


def start(folder: Path, module: str) -> subprocess.Popen[bytes]:
    """Start the zygote for ``module`` and point this process's spawn at the trampoline (both in
    ``folder``); the zygote's process. A process spawned while it loads waits for it."""
    socket_path = folder / SOCKET
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", MODULE, "zygote", str(socket_path), module])
    trampoline = folder / "spawn"
    program = TRAMPOLINE.format(zygote=str(socket_path), zygote_pid=process.pid, python=sys.executable)
    trampoline.write_text(f"#!{sys.executable} -S\n{program}")
    trampoline.chmod(0o755)
    multiprocessing.set_executable(str(trampoline))
    return process


def serve(parent: int, folder: Path, module: str, dagster_args: list[str]) -> int:
    """In the code server's process: die with process ``parent`` (the one that started it),
    :func:`start`, then run the ``dagster`` console script with ``dagster_args`` (``api grpc ...``).
    Ending (stopped by SIGTERM too: the parent-death signal), it removes ``folder``, which a
    ``margin-pipeline run`` killed outright cannot; a zygote still loading then finds no folder to
    bind in and ends, and one serving has removed its socket already or does as it ends."""
    die_with_parent(signal.SIGTERM, parent)
    try:
        start(folder, module)
        return console_script("dagster")(dagster_args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def console_script(name: str) -> Callable[[list[str]], int]:
    """Console script ``name`` (a public entry point), imported now, to run in this process with the
    arguments given later (``sys.argv`` set for it)."""
    (entry,) = entry_points(group="console_scripts", name=name)
    main = entry.load()

    def run(args: list[str]) -> int:
        sys.argv = [name, *args]
        return main()

    return run


def die_with_parent(signum: int, parent: int) -> None:
    """Have ``signum`` sent to this process when its parent, process ``parent``, dies, however it
    dies (Linux; elsewhere nothing). Gone already (this process was given to another), it is sent
    now."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def zygote(path: Path, module: str) -> Callable[[], None] | None:
    """Load ``module``'s definitions, then fork a worker per trampoline that connects to ``path``.
    Returns, in a forked child only, what that child runs (at the top of the stack, so that spawn's
    ``sys.exit`` ends the process as it would a spawned one); in the zygote, None once the code
    server is gone and every worker has ended."""
    parent = os.pidfd_open(os.getppid())
    _load(module)  # stopped meanwhile (the code server's group signalled), it just ends: no worker yet
    # From now on stopping is the code server's: its workers end their runs, then this ends.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if select.select([parent], [], [], 0)[0]:  # the code server stopped while this loaded
        return None
    # Bound only now: until then, trampolines wait (or, with the zygote gone, start Python).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path) + ".new")
    except FileNotFoundError:  # the code server stopped, its folder removed, while this loaded
        return None
    listener.listen(16)
    bound = os.stat(str(path) + ".new").st_ino  # (its listener keeps that inode its own)
    os.rename(str(path) + ".new", path)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("listen", None))
    selector.register(parent, selectors.EVENT_READ, ("parent", None))
    workers: dict[int, tuple[socket.socket, int]] = {}  # pid: the trampoline's connection, a pidfd
    serving = True
    while serving or workers:
        for key, _ in selector.select():
            kind, pid = key.data
            if kind == "listen":
                job = _fork_worker(listener, selector, workers)
                if job is not None:  # in the child
                    os.close(parent)
                    return job
            elif kind == "trampoline":  # its connection closed: the trampoline was killed
                connection, _pidfd = workers[pid]
                try:
                    said = connection.recv(1)
                except OSError:  # reset: closed too
                    said = b""
                if not said:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    selector.unregister(connection)
            elif kind == "ended":
                connection, pidfd = workers.pop(pid)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    connection.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(connection)
                selector.unregister(pidfd)
                connection.close()
                os.close(pidfd)
            elif kind == "parent":  # the code server is gone: no new workers
                selector.unregister(parent)
                selector.unregister(listener)
                # Unless a code server started again in its place has a new zygote bound there.
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == bound:
                        path.unlink()
                listener.close()
                serving = False
    return None


def _load(module: str) -> None:
    """Import what a run worker needs before its first step: the code location ``module`` with its
    repository resolved (cached on the ``Definitions``), the instance's storage (SQLAlchemy,
    Alembic: the instance is opened and closed, so no connection crosses a fork) and the engine's
    client. Without the last two, a forked worker still imported 1.7 s of modules."""
    import dagster as dg

    from margin_pipeline.engines import engine_from_env, import_client

    loaded = importlib.import_module(module)
    for value in vars(loaded).values():
        if isinstance(value, dg.Definitions):
            value.get_repository_def()
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get():
            pass
    import_client(engine_from_env())


def _fork_worker(
    listener: socket.socket,
    selector: selectors.BaseSelector,
    workers: dict[int, tuple[socket.socket, int]],
) -> Callable[[], None] | None:
    try:
        connection, _ = listener.accept()
    except OSError:  # the trampoline gone already, or no descriptor left: it spawns instead
        return None
    try:
        head, fds, _, _ = socket.recv_fds(connection, 65536, MAX_FDS)
        (size,) = struct.unpack("!I", head[:4])
        body = head[4:]
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ConnectionError("the trampoline hung up")
            body += chunk
        request = json.loads(body)
        targets = request["fds"]
        if len(targets) != len(fds):
            raise ValueError(f"{len(fds)} descriptors received, {len(targets)} named")
    except (OSError, ValueError, struct.error):
        connection.close()
        return None
    own = {listener.fileno(), connection.fileno(), *fds}
    own.update(fd for other, pidfd in workers.values() for fd in (other.fileno(), pidfd))
    own.update(key.fd for key in selector.get_map().values())
    own.add(selector.fileno())
    clash = in_use(set(targets) - {0, 1, 2}, own)
    if clash:  # a descriptor of the zygote's (a library's) is at a number the worker needs
        held = {fd: _describe(fd) for fd in sorted(clash)}
        print(f"zygote: descriptors {held} in use here, spawned instead", file=sys.stderr)
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            connection.sendall(struct.pack("!I", 0))
        connection.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        for other, pidfd in workers.values():
            other.close()
            os.close(pidfd)
        selector.close()
        listener.close()
        connection.close()
        return lambda: _work(request, dict(zip(targets, fds, strict=True)), zygote_pid)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    workers[pid] = (connection, pidfd)
    selector.register(connection, selectors.EVENT_READ, ("trampoline", pid))
    selector.register(pidfd, selectors.EVENT_READ, ("ended", pid))
    with contextlib.suppress(OSError):  # the trampoline gone meanwhile: its hang-up kills the worker
        connection.sendall(struct.pack("!I", pid))
    return None


def in_use(numbers: set[int], own: set[int]) -> set[int]:
    """Which of ``numbers`` this process has a descriptor open at, those in ``own`` aside. Each is
    checked itself: a listing of ``/proc/self/fd`` names its own descriptor too."""
    found = set()
    for fd in numbers - own:
        try:
            os.fstat(fd)
        except OSError:
            continue
        found.add(fd)
    return found


def _describe(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _work(request: dict, fds: dict[int, int], zygote_pid: int) -> None:
    """In the forked child: become the process spawn would have started (its descriptors at their
    numbers, its directory, its environment, its signal dispositions), then run its program."""
    os.setpgid(0, 0)
    die_with_parent(signal.SIGKILL, zygote_pid)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    # Out of the way first: a received descriptor may sit at another one's number.
    floor = max([*fds, *fds.values()]) + 1
    moved = {}
    for target, fd in fds.items():
        moved[target] = fcntl.fcntl(fd, fcntl.F_DUPFD, floor)
        os.close(fd)
    for target, fd in moved.items():
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["-c", "--multiprocessing-fork"]
    exec(compile(request["program"], "<string>", "exec"), {"__name__": "__main__"})


def main(argv: list[str]) -> int:
    if argv[0] == "zygote":
        job = zygote(Path(argv[1]), argv[2])
        if job is None:
            return 0
        job()  # spawn_main: ends with sys.exit
        return 0
    assert argv[0] == "serve", argv
    return serve(int(argv[1]), Path(argv[2]), argv[3], argv[4:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
