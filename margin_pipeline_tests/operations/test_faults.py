"""Fault tests: nothing lost or double counted when a run is killed, conflicts, hits a bug or a check.

Each scenario (``margin_pipeline_tests/faults.py``) injects its fault into a real settlement
run and compares the published table with an uninterrupted run on the same substrate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from margin_pipeline_tests import faults

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def expected(workdir: Path, spark) -> dict:
    rows = faults.expected_rows(workdir)
    assert len(rows) == len(faults.METERS) * len(faults.DAYS) * 48
    return rows


def test_sigkill_after_the_write_loses_nothing(workdir, expected) -> None:
    result = faults.sigkill_mid_write(workdir, expected)
    assert result.detail["child_exit"] == -9, result.detail
    assert result.detail["watermark_unchanged_after_kill"]
    before, after = result.detail["output_version_before_after_kill"]
    assert after > before, "the kill came after the output MERGE committed"
    assert [r["reason"] for r in result.detail["next_run_rollback"]], "the next run rolled the write back"
    assert (result.rows_lost, result.rows_doubled) == (0, 0)
    assert result.survived


def test_commit_conflict_is_retried_once_and_succeeds(workdir, expected) -> None:
    result = faults.commit_conflict_retried(workdir, expected)
    assert result.detail == {"run_success": True, "step_retries": 1}
    assert (result.rows_lost, result.rows_doubled) == (0, 0)
    assert result.survived


def test_deterministic_error_is_not_retried(workdir, expected) -> None:
    result = faults.deterministic_error_not_retried(workdir, expected)
    assert result.detail["failed_run_retries"] == 0
    assert result.detail["tables_and_watermarks_untouched"]
    assert result.survived


def test_blocking_check_restores_the_output_keeps_the_gate_closed_and_alerts_once(workdir, expected) -> None:
    result = faults.blocking_check_rolls_back(workdir, expected)
    assert result.detail["output_restored"] and result.detail["watermark_unchanged"]
    assert result.detail["gate"].startswith("gate closed"), result.detail["gate"]
    assert len(result.detail["alerts"]) == 1
    alert = result.detail["alerts"][0]
    assert (alert["kind"], alert["stream"]) == ("check", "settlement")
    assert "known_meters" in alert["title"]
    assert result.survived


def test_every_malformed_file_is_quarantined_and_the_valid_ones_apply(workdir, expected) -> None:
    result = faults.malformed_files_quarantined(workdir, expected)
    assert result.detail["wrong"] == []
    assert result.detail["rejected"] == result.detail["cases"] > 20
    assert result.survived, result.detail
