"""The chain on a PostgreSQL instance, started by the test itself, and its password kept secret.

``$DAGSTER_PG_URL`` switches the instance storage (runs, event logs, schedules) from SQLite to
PostgreSQL (:func:`margin_pipeline.settings.prepare_dagster_home`). The server is ``pgserver``'s
(PostgreSQL binaries in a wheel, on a unix socket in the test's folder). The chain runs as a user
runs it, ``margin-pipeline generate`` then ``margin-pipeline run``: ingest, the parent and its
children side by side, the gate, the run log and the alert sensors all read and write PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import dagster as dg
import pytest

from margin_pipeline.settings import REPO_ROOT, ROOT_ENV

pytestmark = pytest.mark.slow
pgserver = pytest.importorskip("pgserver")

SECRET = "pg-Secret-4711-xyz"
JOBS = {
    "ingest",
    "margin_job_of_jobs",
    "settlement_stream",
    "half_hourly_stream",
    "monthly_stream",
    "reconciled",
}


def test_the_chain_runs_on_postgres_and_its_password_leaks_nowhere(tmp_path: Path, monkeypatch) -> None:
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    try:
        server.psql(f"CREATE ROLE margin LOGIN PASSWORD '{SECRET}';")
        server.psql("CREATE DATABASE margin OWNER margin;")
        socket = parse_qs(urlparse(server.get_uri()).query)["host"][0]
        url = f"postgresql+psycopg2://margin:{SECRET}@/margin?host={socket}"
        root = tmp_path / "margin"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(tmp_path)),
            ROOT_ENV: str(root),
            "DAGSTER_PG_URL": url,
            "RUST_LOG": "error",
        }
        cli = str(REPO_ROOT / ".venv" / "bin" / "margin-pipeline")
        for command in ([cli, "generate", "--meters", "12", "--days", "3"], [cli, "run"]):
            done = subprocess.run(
                command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900
            )
            assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert "every stream and hh_margin reflect substrate version" in done.stdout

        home = root / "dagster"
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        with dg.DagsterInstance.get() as instance:
            assert "Postgres" in type(instance.run_storage).__name__
            runs = instance.get_runs()
            assert {r.job_name for r in runs} == JOBS
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            recorded = [json.dumps(r.run_config) + json.dumps(dict(r.tags)) for r in runs]
            recorded += [
                str(e.message) + str(e.dagster_event) for r in runs for e in instance.all_logs(r.run_id)
            ]
        assert not list(home.rglob("runs.db")), "nothing was stored in SQLite"
        # The password is in the environment only: not in the instance, any log, metadata, alert,
        # run config, the rendered dagster.yaml or the lake (the run log table included).
        assert SECRET in url and not any(SECRET in text for text in recorded)
        leaked = [p for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert leaked == []
        assert "DAGSTER_PG_URL" in (home / "dagster.yaml").read_text()
    finally:
        server.cleanup()
