"""The checks' verdicts on a table written to the store: every failing row counted (not only those
quoted), a few of them quoted, and the rows checked."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from margin_pipeline.gold import HH_MARGIN
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.shared.quality import (
    EXAMPLES,
    HH_MARGIN_CHECKS,
    CheckOutcome,
    CheckScope,
    run_checks,
)

DAY = dt.date(2025, 10, 6)  # 48 periods
METERS = [f"20000000000{i:02d}" for i in range(10)]


def row(mpan: str, period: int, margin_off: float = 0.0) -> dict:
    revenue, cost = 0.30 + period / 1000, 0.20
    return {
        "mpan_core": mpan,
        "settlement_date": DAY,
        "settlement_period": period,
        "account_id": f"ACC-{mpan[-2:]}",
        "kwh": 1.5,
        "revenue_gbp": revenue,
        "cost_gbp": cost,
        "margin_gbp": revenue - cost + margin_off,
    }


def verdicts(store: DeltaRsStore, spark, rows: list[dict]) -> dict[str, CheckOutcome]:
    store.ensure_table(HH_MARGIN)
    store.append(HH_MARGIN, pa.Table.from_pylist(rows, HH_MARGIN.schema))
    scope = CheckScope(spark, store, HH_MARGIN, where=None, targets={}, specs={})
    return {outcome.name: outcome for outcome in run_checks(HH_MARGIN_CHECKS, scope)}


def test_a_clean_table_passes_every_check_and_says_how_many_rows_it_checked(
    store: DeltaRsStore, spark
) -> None:
    got = verdicts(store, spark, [row(m, p) for m in METERS for p in range(1, 49)])
    assert all(o.passed for o in got.values()), {n: o.message for n, o in got.items() if not o.passed}
    assert got["key_unique"].metadata == {"rows_checked": 480}
    assert got["margin_arithmetic"].metadata == {"rows_checked": 480}
    assert got["complete_days"].metadata == {"rows_checked": 10}  # MPAN-dates
    assert got["key_unique"].message == "480 row(s) checked"


def test_every_failing_row_is_counted_and_the_first_few_are_quoted(store: DeltaRsStore, spark) -> None:
    rows = [
        row(m, p, margin_off=0.01 if m == METERS[8] and p <= 8 else 0.0)  # eight margins off
        for m in METERS
        for p in range(1, 49)
        if (m, p) != (METERS[9], 48)  # a gap
    ]
    rows += [row(m, 1) for m in METERS[:7]]  # seven keys held twice
    got = verdicts(store, spark, rows)

    duplicated = got["key_unique"]
    assert not duplicated.passed
    assert duplicated.metadata["failures"] == 7  # more than are quoted
    assert duplicated.metadata["rows_checked"] == 486
    assert len(duplicated.metadata["examples"]) == EXAMPLES
    assert duplicated.message.startswith("7 duplicated key(s), e.g. (mpan_core=")
    assert all(e.endswith(" x2") for e in duplicated.metadata["examples"])

    off = got["margin_arithmetic"]
    assert (off.passed, off.metadata["failures"], off.metadata["rows_checked"]) == (False, 8, 486)
    assert all(METERS[8] in e for e in off.metadata["examples"])

    gap = got["complete_days"]
    assert (gap.passed, gap.metadata["failures"], gap.metadata["rows_checked"]) == (False, 1, 10)
    assert gap.metadata["examples"] == [f"({METERS[9]}, {DAY}) has 47 of 48"]
    assert got["schema"].passed
