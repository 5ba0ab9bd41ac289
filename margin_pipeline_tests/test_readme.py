"""The README's command block works as written, from a new shell, on a small history.

The block (between ``<!-- readme-commands -->`` and the end of its fenced code) is read from
README.md itself, so a command edited there is the command tested here. It runs in one bash
session whose environment holds only PATH, HOME and a data root of the test's own (instead of
``.margin``): nothing the test process set up leaks into it. ``RUN_ID`` is the id of a run the
test makes fail first (``reconciled`` pinned to a substrate version not ingested yet), repaired
by the README's ``reexecute`` once that version exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from margin_pipeline.orchestration.drive import daemon, launch, wait_for_runs
from margin_pipeline.orchestration.runs import PARENT_JOB
from margin_pipeline.settings import REPO_ROOT, ROOT_ENV, DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.versions import latest_substrate_version

pytestmark = pytest.mark.slow

MARKER = "<!-- readme-commands -->"


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def shell(lines: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lines`` in one new bash session in the repository, stopping at the first failure."""
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    return subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200
    )


def test_readme_commands_work_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands()
    assert commands[0].startswith('eval "$(.venv/bin/margin-pipeline env)"'), "the block sets up the shell"
    reexecute = [c for c in commands if "RUN_ID" in c]
    assert len(reexecute) == 1 and "margin-pipeline reexecute" in reexecute[0]
    root = tmp_path / "margin"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        ROOT_ENV: str(root),
        "RUST_LOG": "error",
    }

    # Everything up to the repair, as written.
    before = commands[: commands.index(reexecute[0])]
    done = shell(before, env)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "every stream and hh_margin reflect substrate version" in done.stdout  # margin-pipeline run
    assert "if substrate/prices changes:" in done.stdout  # margin-pipeline plan
    for job in ("margin_job_of_jobs", "settlement_stream", "half_hourly_stream"):
        assert job in done.stdout  # dagster job list, dg list defs

    # The same instance, seen from here: what the commands did is recorded in it.
    home = root / "dagster"
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    store = DeltaRsStore(lake_root=str(DataRoot(root=str(root)).lake))
    number = latest_substrate_version(store)
    assert number is not None
    with dg.DagsterInstance.get() as instance:
        in_process = instance.get_runs(filters=dg.RunsFilter(job_name="half_hourly_stream"))
        assert [r.status for r in in_process][:1] == [dg.DagsterRunStatus.SUCCESS]  # dg launch
        queued = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        assert {r.job_name for r in queued} == {PARENT_JOB, "settlement_stream"}  # dagster job launch

        with daemon(instance, home / "daemon.log"):  # the daemon `make ui` would run
            assert all(r.success for r in wait_for_runs(instance, [r.run_id for r in queued], timeout=600))
            config = {"ops": {"gold__hh_margin": {"config": {"substrate_version": number + 1}}}}
            (failed,) = wait_for_runs(instance, [launch("reconciled", config)], timeout=300)
            assert failed.status == "FAILURE" and "never recorded" in failed.error
            # The missing version arrives; the repair then succeeds, as written.
            grown = shell([commands[0], ".venv/bin/margin-pipeline generate --next-day"], env)
            assert grown.returncode == 0, grown.stderr[-3000:]
            grown = shell([commands[0], ".venv/bin/margin-pipeline run"], env)
            assert grown.returncode == 0, f"{grown.stdout[-3000:]}\n{grown.stderr[-3000:]}"
            repaired = shell([commands[0], reexecute[0].replace("RUN_ID", failed.run_id)], env)
            assert repaired.returncode == 0, f"{repaired.stdout[-3000:]}\n{repaired.stderr[-3000:]}"
            assert "SUCCESS" in repaired.stdout, repaired.stdout
            # A run that only sets a bad file aside has done its work: it exits 0 as well.
            bad = DataRoot(root=str(root)).landing / "prices" / "truncated.csv"
            bad.write_text("not,the,prices,header\n", encoding="utf-8")
            os.utime(bad, (time.time() - 60, time.time() - 60))  # handed over a minute ago: settled
            quarantined = shell([commands[0], ".venv/bin/margin-pipeline run"], env)
            assert quarantined.returncode == 0, f"{quarantined.stdout[-3000:]}\n{quarantined.stderr[-3000:]}"
            assert (DataRoot(root=str(root)).quarantine / "prices" / "truncated.csv").exists()
        (again,) = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/parent_run_id": failed.run_id}), limit=1
        )
        assert again.status == dg.DagsterRunStatus.SUCCESS
        assert json.dumps(again.run_config).count(str(number + 1)) == 1
