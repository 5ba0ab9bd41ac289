"""``margin-pipeline plan --changed TABLE``: what recomputes and which jobs run, from the asset graph."""

from __future__ import annotations

import pytest

from margin_pipeline.cli import main
from margin_pipeline.definitions import defs
from margin_pipeline.orchestration.impact import impact


def test_a_price_change_recomputes_cost_ledger_margin_and_hh_margin() -> None:
    found = impact(defs, "prices")
    assert [k.to_user_string() for k in found.assets] == [
        "gold/settlement_cost_hh",
        "silver/monthly_day_ledger",
        "gold/margin_bridge",  # written by the monthly run, in the step after monthly_margin's commit
        "gold/monthly_margin",
        "gold/hh_margin",  # last: the gate publishes it once every stream has consumed N
    ]
    assert found.jobs.keys() == {"settlement_stream", "monthly_stream", "reconciled"}
    assert found.launched_by["settlement_stream"] == "margin_job_of_jobs op settlement"
    assert found.launched_by["reconciled"] == "sensor watermark_gate"
    assert found.launched_by["ingest"] == "sensor landing_sensor"


def test_the_cli_prints_the_plan_and_names_unknown_tables(capsys: pytest.CaptureFixture[str]) -> None:
    # Sensors without a job (the alert sensors) are part of the code location: the plan reads past them.
    assert main(["plan", "--changed", "prices"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("if substrate/prices changes:")
    assert "reconciled           gold/hh_margin  (sensor watermark_gate)" in printed
    assert main(["plan", "--changed", "no_such_table"]) == 2
    assert "unknown or ambiguous table 'no_such_table'" in capsys.readouterr().err
