"""Shared fixtures: a fresh data root per test, the embedded store, one engine session per run."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from margin_pipeline.engines import LOCAL_SPARK_CONFIG, SparkEngine
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.store.delta_spark import DELTA_SESSION_CONFIG, delta_jars
from margin_pipeline.substrate.ingest import ingest, pending_files
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline_tests.helpers import stream_resources


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job (``make test &``, ``nohup``, most CI) starts with SIGINT
    ignored. Dagster's in-process execution maps SIGTERM to what SIGINT does and leaves it so; every
    process the suite starts after its first in-process run then ignores SIGTERM (ignored signals
    survive ``exec``), and Dagster stops the ``tail`` processes of a run's compute logs with
    SIGTERM, waiting 30 s for each: a two-run test took 62 s instead of 2.6 s. Python's own SIGINT
    handler, as in a foreground shell, keeps SIGTERM a signal that stops."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: The longest tests (minutes each on 2 cores), handed out before the other slow ones under ``pytest -n``.
LONGEST = ("test_engines.py::test_incremental_equals_full_on_local_spark_too", "test_readme.py::")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (``make test``) the end-to-end tests (marked ``slow``), the longest first, are
    handed out before the quick ones, so that no long test starts last and runs alone at the end.
    Without workers the order stays the files' own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(
            key=lambda item: (not any(n in item.nodeid for n in LONGEST), not item.get_closest_marker("slow"))
        )


@pytest.fixture
def data_root(tmp_path: Path) -> DataRoot:
    return DataRoot(root=str(tmp_path / "margin"))


@pytest.fixture
def store(data_root: DataRoot) -> DeltaRsStore:
    return DeltaRsStore(lake_root=str(data_root.lake))


Drop = Callable[[str, str, str], Path]


@pytest.fixture
def drop(data_root: DataRoot) -> Drop:
    """Write a landing file ``landing/<feed>/<name>`` with ``text``, as handed over a minute ago (settled:
    ``margin_pipeline.substrate.ingest.settled``), and return its path."""

    def _drop(feed: str, name: str, text: str) -> Path:
        folder = data_root.landing / feed
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        handed_over = time.time() - 60  # written and handed over a minute ago: settled
        os.utime(path, (handed_over, handed_over))
        return path

    return _drop


@pytest.fixture(scope="session")
def engine() -> SparkEngine:
    """The engine of the whole test run: ``$MARGIN_PIPELINE_ENGINE`` (default sail, an in-process
    Sail server started on first use; ``spark``: one local JVM, ~5 s to start, ~1.6 GB)."""
    return SparkEngine()


@pytest.fixture(scope="session")
def spark(engine: SparkEngine) -> Iterator[object]:
    """The session every test shares (stream steps get the same one through ``engine``)."""
    if engine.engine == "spark" and delta_jars():
        # The delta-spark store's tests run only where the jars are on the classpath: make the
        # process's one local session with them before the engine asks for it.
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        config = {**LOCAL_SPARK_CONFIG, **DELTA_SESSION_CONFIG, "spark.jars": ",".join(delta_jars())}
        for key, value in config.items():
            builder = builder.config(key, value)
        builder.getOrCreate()
    session = engine.spark_session
    yield session
    engine.close()


@pytest.fixture
def publish(data_root: DataRoot, store: DeltaRsStore, drop) -> Callable[..., int]:
    """Drop ``{feed: text}`` files, ingest them, record a substrate version; returns N."""
    counter = iter(range(10_000))

    def _publish(files: dict[str, str]) -> int:
        for feed, text in files.items():
            drop(feed, f"{next(counter):05d}_{feed}.csv", text)
        report = ingest(data_root, store, pending_files(data_root))
        assert not report.rejected, [str(f.rejection) for f in report.rejected]
        return record_substrate_version(store, "test").number

    return _publish


@pytest.fixture
def materialize(store: DeltaRsStore, engine: SparkEngine, spark) -> Callable[..., dg.ExecuteInProcessResult]:
    """Materialize assets with the test's store and the shared engine."""

    def _materialize(assets: list[Any], config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
        run_config = {"ops": {name: {"config": cfg} for name, cfg in (config or {}).items()}}
        return dg.materialize(assets, resources=stream_resources(store, engine), run_config=run_config)

    return _materialize
