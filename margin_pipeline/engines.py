"""Which engine runs the streams' PySpark code, chosen in one place.

The stream code (rules, plans, runner, checks, store boundary) uses only what a
Spark Connect session offers: no ``sparkContext``, py4j or RDD. So the same code runs on

``sail`` (the embedded default)
    `Sail <https://github.com/lakehq/sail>`_ (PyPI ``pysail``), a Rust engine that speaks
    Spark Connect. No JVM, no Java. ``margin-pipeline run`` and ``margin-pipeline ui``
    start one server for their lifetime (:func:`shared_engine`) and publish its address
    in ``$MARGIN_PIPELINE_SPARK_REMOTE``; every run they launch (ingest, the parent, the
    children, monthly's per-month steps, reconciled) inherits it and connects. A process
    without a reachable one (``dagster job launch`` against a bare instance, a test)
    starts its own server in-process, on a free loopback port.
``spark``
    Apache Spark itself, classic local mode in the run's process (needs Java 17+). It is
    what Databricks runs, so it is kept working and tested against ``sail``.

Databricks (a stream profile's ``engine: databricks``) brings its own session on the
cluster (:mod:`margin_pipeline.remote`).

Choose with the ``spark`` resource's ``engine`` config or ``$MARGIN_PIPELINE_ENGINE``
(default ``sail``). Every stream materialization records the engine it ran on.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINE_ENV = "MARGIN_PIPELINE_ENGINE"
#: ``sc://host:port`` of the chain's shared Sail server, set by :func:`shared_engine`.
REMOTE_ENV = "MARGIN_PIPELINE_SPARK_REMOTE"

EngineName = Literal["sail", "spark"]
DEFAULT_ENGINE: EngineName = "sail"

#: Static settings of the classic local Spark session (``spark``: one JVM per run process).
#: Per-stream SQL settings (shuffle partitions, AQE, broadcast) come from each stream's profile.
LOCAL_SPARK_CONFIG: dict[str, Any] = {
    "spark.master": "local[2]",
    "spark.app.name": "margin_pipeline",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # At laptop scale per-job overhead dominates: skip whole-stage code generation for
    # short-lived plans (measured 50 s -> 47 s per 20-meter cycle, benchmarks/README.md).
    "spark.sql.codegen.wholeStage": "false",
}


class EngineError(ValueError):
    pass


def engine_from_env() -> EngineName:
    """``$MARGIN_PIPELINE_ENGINE``, or the embedded default."""
    name = os.environ.get(ENGINE_ENV, "").strip().lower() or DEFAULT_ENGINE
    if name not in get_args(EngineName):
        raise EngineError(
            f"{ENGINE_ENV}={name!r} is not an engine: expected one of {', '.join(get_args(EngineName))}"
        )
    return name  # type: ignore[return-value]


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the ``sc://host:port`` ``url``."""
    parsed = urlparse(url.replace("sc://", "http://", 1))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 15002), timeout):
            return True
    except OSError:
        return False


class SailServer:
    """A Sail Spark Connect server in this process, on loopback (background threads of its own).

    :meth:`url` starts it on first use and starts it again, on the same port when it is free,
    if it stopped: a crashed server is replaced, never waited on.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self._lock = threading.Lock()

    def url(self) -> str:
        with self._lock:
            if self._server is None or not self._server.running:
                self._start()
            host, port = self._server.listening_address
            self._port = port
            return f"sc://{host}:{port}"

    def _start(self) -> None:
        os.environ.setdefault("RUST_LOG", "error")  # else Sail logs each session, and each hint it ignores
        # Sail ends a session idle for 120 s ("session ... is not running"); a process may hold its
        # session longer than that between queries (the test run does, across the orchestration tests).
        os.environ.setdefault(SESSION_TIMEOUT_ENV, str(SESSION_TIMEOUT_SECONDS))
        from pysail.spark import SparkConnectServer

        try:
            server = SparkConnectServer("127.0.0.1", self._port)
            server.start(background=True)
        except Exception:  # the old port is taken: any free one will do
            server = SparkConnectServer("127.0.0.1", 0)
            server.start(background=True)
        self._server = server

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking connections (within ``timeout``) and let requests in flight end in the
        background, without waiting for them: the server's threads end with the process.

        Not pysail's ``stop()``, which also waits for every request in flight: one left by a run
        worker killed mid-query (SIGKILL, the OOM killer) kept it waiting 3 to 15 minutes, and
        ``margin-pipeline run`` with it. Releasing the server object closes its shutdown channel,
        which starts the same graceful shutdown; nothing joins its thread."""
        with self._lock:
            server, self._server = self._server, None
            if server is None or not server.running:
                return
            host, port = server.listening_address
            del server  # the last reference: the native server is dropped here
            deadline = time.monotonic() + timeout
            while reachable(f"sc://{host}:{port}", timeout=0.5) and time.monotonic() < deadline:
                time.sleep(0.05)


#: Sail's setting (from the environment) of how long an idle session lives, and ours: an hour.
SESSION_TIMEOUT_ENV = "SAIL_SPARK__SESSION_TIMEOUT_SECS"
SESSION_TIMEOUT_SECONDS = 3600

#: This process's own server, for a run that finds no shared one.
_PROCESS_SERVER = SailServer()


def sail_url() -> str:
    """The shared server's address when one is reachable, else this process's own server's."""
    shared = os.environ.get(REMOTE_ENV)
    if shared and reachable(shared):
        return shared
    return _PROCESS_SERVER.url()


#: How a Spark Connect call to the Sail server is retried: five times within about 5 s (pyspark's
#: default, for a remote cluster, is fifteen times within about 10 minutes). The server is on this
#: machine: one that does not answer for seconds has gone, and the session is replaced on the next
#: step (:class:`SparkEngine`), not waited on. pyspark also releases each finished query in a
#: background thread with this policy, and the interpreter waits for those threads as it exits.
CONNECT_RETRIES = {"max_retries": 5, "max_backoff_ms": 2000}


def import_client(engine: EngineName) -> None:
    """Import the client :func:`new_session` uses on ``engine``, connecting nowhere: a process that
    forks run workers loads it once for all of them (``orchestration/warm_workers.py``)."""
    import pyspark.sql

    if engine == "sail":
        import pyspark.sql.connect.client.retries
        import pyspark.sql.connect.session  # noqa: F401


def new_session(engine: EngineName, url: str | None = None) -> SparkSession:
    """A Spark session on ``engine``: a new Spark Connect session to ``url`` (default
    :func:`sail_url`) for ``sail``, retried as :data:`CONNECT_RETRIES` says; the process's
    classic local session for ``spark``."""
    from pyspark.sql import SparkSession

    if engine == "sail":
        from pyspark.sql.connect.client.retries import DefaultPolicy

        session = SparkSession.builder.remote(url or sail_url()).create()
        retries = DefaultPolicy(
            max_retries=CONNECT_RETRIES["max_retries"], max_backoff=CONNECT_RETRIES["max_backoff_ms"]
        )
        session.client.set_retry_policies([retries])
        return session
    from margin_pipeline.java import require_java

    require_java()
    builder = SparkSession.builder
    for key, value in LOCAL_SPARK_CONFIG.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkEngine(dg.ConfigurableResource):
    """The Spark session every stream step uses, on the engine named by ``engine``.

    The session is made on first use (an op that skips never starts an engine) and is
    replaced, on a server that runs, if its Sail server went away.
    """

    engine: EngineName = Field(
        default_factory=engine_from_env,
        description="sail (embedded Spark Connect engine, the default) or spark (local Apache Spark, "
        f"needs Java 17+). Default: ${ENGINE_ENV}, else sail.",
    )
    _session: Any = PrivateAttr(default=None)
    _url: str | None = PrivateAttr(default=None)

    @property
    def spark_session(self) -> SparkSession:
        stale = self.engine == "sail" and self._url is not None and not reachable(self._url)
        if stale:
            self.close()
        if self._session is None:
            self._url = sail_url() if self.engine == "sail" else None
            self._session = new_session(self.engine, self._url)
            if self._url is not None:  # weakly: a session dropped before then closes itself
                atexit.register(_close_at_exit, weakref.ref(self._session), self._url)
        return self._session

    def close(self) -> None:
        """End this resource's session (:func:`close_session`); the next use makes a new one."""
        session, self._session = self._session, None
        if session is not None:
            close_session(session, self._url)


def close_session(session: SparkSession, url: str | None) -> None:
    """End ``session``: a Spark Connect session (``url``) has its channel closed without a call to
    the server; the classic local session (no ``url``) is stopped.

    pyspark's ``stop()``, and the hook with which it cleans up at exit a session nobody closed,
    both call the server first, and a single call to a Sail server that was shutting down waited
    over 5 minutes in a test: a run or a test would hang on its way out. The server
    ends a session left idle by itself (``SESSION_TIMEOUT_SECONDS``). Registered at exit for every
    Spark Connect session made here.
    """
    if url is None:
        session.stop()
    elif not session.client.is_closed:
        session.client.close()


def _close_at_exit(session: weakref.ref[SparkSession], url: str) -> None:
    alive = session()
    if alive is not None:
        close_session(alive, url)


@contextlib.contextmanager
def shared_engine(engine: EngineName | None = None) -> Iterator[str | None]:
    """One warm engine for everything launched meanwhile: for ``sail``, a server in this process
    whose address goes into ``$MARGIN_PIPELINE_SPARK_REMOTE`` (inherited by the daemon, the code
    server and every run). Yields the address (None for ``spark``: each run has its own JVM).

    A watchdog restarts the server if it stops while the chain runs.
    """
    engine = engine or engine_from_env()
    if engine != "sail":
        yield None
        return
    server = SailServer()
    url = server.url()
    previous = os.environ.get(REMOTE_ENV)
    os.environ[REMOTE_ENV] = url
    stop = threading.Event()

    def watchdog() -> None:
        while not stop.wait(2.0):
            if not server.running:
                os.environ[REMOTE_ENV] = server.url()

    thread = threading.Thread(target=watchdog, name="sail-watchdog", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stop.set()
        thread.join(timeout=5)
        server.stop()
        if previous is None:
            os.environ.pop(REMOTE_ENV, None)
        else:
            os.environ[REMOTE_ENV] = previous
