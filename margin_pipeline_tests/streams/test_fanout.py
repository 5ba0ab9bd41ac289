"""How far an agreement change fans out: only the days whose supply it alters."""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.streams.shared.fanout import agreement_changes

START = dt.date(2025, 1, 1)
OCT31, DEC31 = dt.date(2025, 10, 31), dt.date(2025, 12, 31)
SCHEMA = (
    "account_id string, mpan_core string, tariff_code string, supply_start date, supply_end date, "
    "_change_type string, _commit_version long"
)


def row(kind: str, version: int, tariff: str = "AGILE", end: dt.date | None = None, account: str = "A1"):
    return (account, "M1", tariff, START, end, kind, version)


def update(version: int, old: tuple, new: tuple) -> list[tuple]:
    """Both images of an update: ``old`` and ``new`` are (tariff, end)."""
    return [row("update_preimage", version, *old), row("update_postimage", version, *new)]


CASES = {
    # Closing an open agreement touches only the days after its new end, not its whole history.
    "closed": (update(3, ("AGILE", None), ("AGILE", OCT31)), [("A1", dt.date(2025, 11, 1), None)]),
    "extended": (update(3, ("AGILE", OCT31), ("AGILE", DEC31)), [("A1", dt.date(2025, 11, 1), DEC31)]),
    "reopened": (update(3, ("AGILE", OCT31), ("AGILE", None)), [("A1", dt.date(2025, 11, 1), None)]),
    # A tariff switch changes every day of the agreement, old range and new.
    "tariff switch": (update(3, ("AGILE", OCT31), ("FLAT", DEC31)), [("A1", START, DEC31)]),
    "insert": ([row("insert", 2, end=OCT31)], [("A1", START, OCT31)]),
    "delete": ([row("delete", 2)], [("A1", START, None)]),
    # Net no change over the range: nothing to recompute.
    "closed then reopened": (
        update(3, ("AGILE", None), ("AGILE", OCT31)) + update(4, ("AGILE", OCT31), ("AGILE", None)),
        [],
    ),
    "inserted then deleted": ([row("insert", 2), row("delete", 3)], []),
    # Two corrections in one range: from the first old state to the last new state.
    "two ends": (
        update(3, ("AGILE", DEC31), ("AGILE", OCT31))
        + update(4, ("AGILE", OCT31), ("AGILE", dt.date(2025, 11, 30))),
        [("A1", dt.date(2025, 12, 1), DEC31)],
    ),
    "deleted and re-inserted on another tariff": (
        [row("delete", 3, end=OCT31), row("insert", 4, tariff="FLAT", end=OCT31)],
        [("A1", START, OCT31)],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_agreement_change_touches_only_the_days_it_alters(spark, case: str) -> None:
    rows, expected = CASES[case]
    ranges = agreement_changes(spark.createDataFrame(rows, SCHEMA)).collect()
    assert sorted((r["account_id"], r["first"], r["last"]) for r in ranges) == expected


@pytest.mark.parametrize(
    ("after", "up_to", "skipped", "ranges"),
    [
        (3, 9, [], [(3, 9)]),
        (3, 9, [5], [(3, 4), (5, 9)]),
        (3, 9, [4, 5], [(5, 9)]),
        (3, 9, [9], [(3, 8)]),
        (3, 9, [4, 6, 9], [(4, 5), (6, 8)]),
        (3, 4, [4], []),
    ],
)
def test_version_ranges_leave_out_the_skipped_commits(after, up_to, skipped, ranges) -> None:
    from margin_pipeline.streams.shared.runner import version_ranges

    assert version_ranges(after, up_to, skipped) == ranges
    covered = {v for a, b in ranges for v in range(a + 1, b + 1)}
    assert covered == set(range(after + 1, up_to + 1)) - set(skipped)
