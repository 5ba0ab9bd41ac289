"""Publication semantics of settlement_volumes and prices (docs/contract.md): the rows of one
(settlement_date, run_type) in a file are a complete publication for that date; a rank at or above
what is held replaces the date with minimal change-feed rows; a lower rank is stale and ignored.

The run held for a date is in ``substrate/publication_runs``; :func:`held` joins it back onto the
feed's rows, so the assertions read as the contract states them."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from margin_pipeline.contracts.calendar import periods_in_day
from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.contracts.mpan import with_check_digit
from margin_pipeline.substrate.ingest import FileOutcome, ingest
from margin_pipeline.substrate.tables import PUBLICATION_RUNS, SUBSTRATE

A = with_check_digit("120000000000")
B = with_check_digit("130000000000")
C = with_check_digit("140000000000")
D1 = dt.date(2025, 10, 1)
D2 = dt.date(2025, 10, 2)
D3 = dt.date(2025, 10, 3)
SPRING = dt.date(2025, 3, 30)
AUTUMN = dt.date(2025, 10, 26)

FEED_NAMES = ["settlement_volumes", "prices"]
VALUE = {"settlement_volumes": "kwh", "prices": "price_gbp_per_mwh"}


def day_rows(
    feed: str,
    day: dt.date,
    run: str,
    value: float = 1.0,
    changed: dict[int, float] | None = None,
    mpans=(A, B),
) -> list[str]:
    """A complete publication of ``day``: every period at ``value`` except ``changed`` {period: value}
    (for volumes, ``changed`` applies to the first MPAN only)."""
    changed = changed or {}
    n = periods_in_day(day)
    if feed == "prices":
        return [f"{day},{p},{run},{changed.get(p, value)}" for p in range(1, n + 1)]
    return [
        f"{m},{day},{p},{run},{changed.get(p, value) if i == 0 else value},A"
        for i, m in enumerate(mpans)
        for p in range(1, n + 1)
    ]


def csv(feed: str, *groups: list[str]) -> str:
    return "\n".join([",".join(FEEDS[feed].column_names), *(r for g in groups for r in g)]) + "\n"


@pytest.fixture
def publish(data_root, store, drop):
    """Drop one file of ``feed`` and ingest it; file names are numbered so the archive keeps them apart."""
    count = iter(range(1000))

    def _publish(feed: str, *groups: list[str]) -> FileOutcome:
        path = drop(feed, f"{next(count):03d}.csv", csv(feed, *groups))
        report = ingest(data_root, store, [path])
        assert len(report.files) == 1
        return report.files[0]

    return _publish


def held(store, feed: str) -> dict[tuple, dict]:
    """The feed's rows with the run held for their date."""
    spec = SUBSTRATE[feed]
    runs = held_runs(store, feed)
    return {
        tuple(r[k] for k in spec.key): {**r, "run_type": runs[r["settlement_date"]]}
        for r in store.read_arrow(spec).to_pylist()
    }


def held_runs(store, feed: str) -> dict[dt.date, str]:
    rows = store.read_arrow(PUBLICATION_RUNS).to_pylist()
    return {r["settlement_date"]: r["run_type"] for r in rows if r["feed"] == feed}


def changes_since(store, feed: str, version: int) -> list[dict]:
    spec = SUBSTRATE[feed]
    return store.read_changes_arrow(spec, version, store.version(spec)).to_pylist()


def kinds(rows: list[dict]) -> Counter:
    return Counter(r["_change_type"] for r in rows)


def counts(outcome: FileOutcome) -> tuple[int, int, int]:
    o = outcome.applied.outcome
    return o.inserted, o.updated, o.deleted


def of_a(rows, feed: str):
    """The rows ``changed`` applies to: all prices, or MPAN A's volumes."""
    return [r for r in rows if feed == "prices" or r["mpan_core"] == A]


def rows_on(store, feed: str, day: dt.date) -> dict[tuple, dict]:
    return {k: r for k, r in held(store, feed).items() if r["settlement_date"] == day}


# --- both feeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_first_publication_inserts(store, publish, feed):
    outcome = publish(feed, day_rows(feed, D1, "SF"))
    n = 96 if feed == "settlement_volumes" else 48
    assert outcome.status == "applied"
    assert counts(outcome) == (n, 0, 0)
    assert outcome.applied.publications == ["2025-10-01 SF"]
    assert outcome.applied.stale == []
    rows = held(store, feed)
    assert len(rows) == n
    assert {r["run_type"] for r in rows.values()} == {"SF"}
    assert kinds(changes_since(store, feed, outcome.applied.outcome.version - 1)) == {"insert": n}


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_higher_run_replaces_the_date_and_leaves_other_dates_alone(store, publish, feed):
    publish(feed, day_rows(feed, D1, "SF"), day_rows(feed, D2, "SF"))
    version = store.version(SUBSTRATE[feed])
    d2_before = rows_on(store, feed, D2)

    runs_version = store.version(PUBLICATION_RUNS)

    outcome = publish(feed, day_rows(feed, D1, "R1", changed={1: 7.0, 2: 8.0}))

    assert outcome.status == "applied"
    assert outcome.applied.publications == ["2025-10-01 R1"]
    # Only the two changed values update; the run moves in publication_runs, one row for the date.
    assert counts(outcome) == (0, 2, 0)
    feed_rows = changes_since(store, feed, version)
    assert kinds(feed_rows) == {"update_preimage": 2, "update_postimage": 2}
    assert {r["settlement_date"] for r in feed_rows} == {D1}
    post = {
        r["settlement_period"]: r for r in of_a(feed_rows, feed) if r["_change_type"] == "update_postimage"
    }
    assert post[1][VALUE[feed]] == 7.0
    runs = store.read_changes_arrow(PUBLICATION_RUNS, runs_version, store.version(PUBLICATION_RUNS))
    assert sorted(
        (r["_change_type"], r["feed"], r["settlement_date"], r["run_type"]) for r in runs.to_pylist()
    ) == [
        ("update_postimage", feed, D1, "R1"),
        ("update_preimage", feed, D1, "SF"),
    ]
    d1 = rows_on(store, feed, D1)
    assert {r["run_type"] for r in d1.values()} == {"R1"}
    assert sorted(r[VALUE[feed]] for r in d1.values())[-2:] == [7.0, 8.0]
    assert rows_on(store, feed, D2) == d2_before


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_equal_rank_redelivery_updates_only_changed_values(store, publish, feed):
    publish(feed, day_rows(feed, D1, "R1"))
    version = store.version(SUBSTRATE[feed])

    outcome = publish(feed, day_rows(feed, D1, "R1", changed={17: 2.5}))

    assert outcome.status == "applied"
    assert outcome.applied.publications == ["2025-10-01 R1"]
    assert counts(outcome) == (0, 1, 0)
    feed_rows = changes_since(store, feed, version)
    assert sorted((r["_change_type"], r["settlement_period"], r[VALUE[feed]]) for r in feed_rows) == [
        ("update_postimage", 17, 2.5),
        ("update_preimage", 17, 1.0),
    ]
    assert store.version(SUBSTRATE[feed]) == version + 1


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_identical_redelivery_is_a_no_op(store, publish, feed):
    publish(feed, day_rows(feed, D1, "R2", value=3.25))
    spec = SUBSTRATE[feed]
    version, history, before = store.version(spec), len(store.history(spec)), held(store, feed)
    runs_version = store.version(PUBLICATION_RUNS)

    outcome = publish(feed, day_rows(feed, D1, "R2", value=3.25))

    assert outcome.status == "unchanged"
    assert counts(outcome) == (0, 0, 0)
    assert outcome.applied.publications == ["2025-10-01 R2"]
    assert store.version(spec) == version
    assert store.version(PUBLICATION_RUNS) == runs_version
    assert len(store.history(spec)) == history
    assert changes_since(store, feed, version) == []
    assert held(store, feed) == before


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_higher_run_with_identical_values_moves_only_the_run(store, publish, feed):
    publish(feed, day_rows(feed, D1, "SF", value=3.25))
    spec = SUBSTRATE[feed]
    version = store.version(spec)

    outcome = publish(feed, day_rows(feed, D1, "R1", value=3.25))

    assert outcome.status == "applied"
    assert counts(outcome) == (0, 0, 0)
    assert store.version(spec) == version
    assert outcome.applied.runs.updated == 1
    assert held_runs(store, feed) == {D1: "R1"}


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_lower_run_is_stale_and_ignored(data_root, store, publish, feed):
    publish(feed, day_rows(feed, D1, "R1"))
    spec = SUBSTRATE[feed]
    version, before = store.version(spec), held(store, feed)

    outcome = publish(feed, day_rows(feed, D1, "SF", value=9.0))

    assert outcome.status == "stale"
    assert outcome.rejection is None
    assert outcome.applied.publications == []
    assert outcome.applied.stale == ["2025-10-01 SF < R1 held"]
    assert counts(outcome) == (0, 0, 0)
    assert store.version(spec) == version
    assert held(store, feed) == before
    assert outcome.moved_to.startswith(str(data_root.archive))


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_final_runs_outrank_everything_before_them(store, publish, feed):
    for run in ("SF", "R1", "R2", "R3", "RF", "DF"):
        assert publish(feed, day_rows(feed, D1, run)).status == "applied"
    for run in ("SF", "R3", "RF"):
        assert publish(feed, day_rows(feed, D1, run, value=5.0)).status == "stale"
    assert {r["run_type"] for r in held(store, feed).values()} == {"DF"}
    assert {r[VALUE[feed]] for r in held(store, feed).values()} == {1.0}


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_file_with_a_stale_date_and_a_new_date_applies_only_the_new_one(store, publish, feed):
    publish(feed, day_rows(feed, D1, "R1"))
    d1_before = rows_on(store, feed, D1)
    version = store.version(SUBSTRATE[feed])

    outcome = publish(feed, day_rows(feed, D1, "SF", value=9.0), day_rows(feed, D3, "SF", value=2.0))

    assert outcome.status == "applied"
    assert outcome.applied.publications == ["2025-10-03 SF"]
    assert outcome.applied.stale == ["2025-10-01 SF < R1 held"]
    assert rows_on(store, feed, D1) == d1_before
    d3 = rows_on(store, feed, D3)
    assert {(r["run_type"], r[VALUE[feed]]) for r in d3.values()} == {("SF", 2.0)}
    feed_rows = changes_since(store, feed, version)
    assert {r["settlement_date"] for r in feed_rows} == {D3}
    assert kinds(feed_rows) == {"insert": len(d3)}


@pytest.mark.parametrize("feed", FEED_NAMES)
def test_file_with_two_runs_of_one_date_applies_the_higher(store, publish, feed):
    outcome = publish(feed, day_rows(feed, D1, "R2", value=4.0), day_rows(feed, D1, "SF", value=9.0))

    assert outcome.status == "applied"
    assert outcome.applied.publications == ["2025-10-01 R2"]
    assert outcome.applied.stale == ["2025-10-01 SF < R2 in the same file"]
    assert {(r["run_type"], r[VALUE[feed]]) for r in held(store, feed).values()} == {("R2", 4.0)}


@pytest.mark.parametrize("feed", FEED_NAMES)
@pytest.mark.parametrize(("day", "n"), [(AUTUMN, 50), (SPRING, 46)])
def test_clock_change_days_round_trip(store, publish, feed, day, n):
    values = {p: p / 4 for p in range(1, n + 1)}
    outcome = publish(feed, day_rows(feed, day, "SF", changed=values))
    assert outcome.status == "applied"
    rows = of_a(rows_on(store, feed, day).values(), feed)
    assert sorted(r["settlement_period"] for r in rows) == list(range(1, n + 1))
    assert {r["settlement_period"]: r[VALUE[feed]] for r in rows} == values
    assert {r["settlement_date"] for r in rows} == {day}

    # An equal-rank re-delivery changing the last period (50 or 46) updates that one row.
    again = publish(feed, day_rows(feed, day, "SF", changed={**values, n: 99.0}))
    assert counts(again) == (0, 1, 0)
    assert (
        rows_on(store, feed, day)[(A, day, n) if feed == "settlement_volumes" else (day, n)][VALUE[feed]]
        == 99.0
    )


# --- volumes: the MPANs of a publication -----------------------------------------------------------


def test_mpan_missing_from_a_higher_run_is_deleted_for_that_date_only(store, publish):
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "SF", mpans=(A, B)), day_rows(feed, D2, "SF", mpans=(A, B)))
    version = store.version(SUBSTRATE[feed])
    d2_before = rows_on(store, feed, D2)

    # R1 for D1: A with two changed periods, B absent, C new.
    outcome = publish(feed, day_rows(feed, D1, "R1", changed={5: 0.0, 6: 4.5}, mpans=(A, C)))

    assert outcome.status == "applied"
    assert counts(outcome) == (48, 2, 48)
    feed_rows = changes_since(store, feed, version)
    by_kind = {
        kind: {r["mpan_core"] for r in feed_rows if r["_change_type"] == kind} for kind in kinds(feed_rows)
    }
    assert by_kind == {"update_preimage": {A}, "update_postimage": {A}, "delete": {B}, "insert": {C}}
    assert kinds(feed_rows) == {"update_preimage": 2, "update_postimage": 2, "delete": 48, "insert": 48}
    assert {r["settlement_date"] for r in feed_rows} == {D1}
    deleted = [r for r in feed_rows if r["_change_type"] == "delete"]
    assert {r["kwh"] for r in deleted} == {1.0}  # the delete carries the held row

    d1 = rows_on(store, feed, D1)
    assert {k[0] for k in d1} == {A, C}
    assert d1[(A, D1, 5)]["kwh"] == 0.0
    assert d1[(A, D1, 6)]["kwh"] == 4.5
    assert rows_on(store, feed, D2) == d2_before
    assert {k[0] for k in rows_on(store, feed, D2)} == {A, B}


def test_equal_rank_redelivery_without_an_mpan_deletes_it(store, publish):
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "R1", mpans=(A, B)))
    version = store.version(SUBSTRATE[feed])

    outcome = publish(feed, day_rows(feed, D1, "R1", mpans=(A,)))

    assert counts(outcome) == (0, 0, 48)
    assert kinds(changes_since(store, feed, version)) == {"delete": 48}
    assert {k[0] for k in held(store, feed)} == {A}


def test_new_mpan_at_equal_rank_inserts_without_touching_held_rows(store, publish):
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "R1", mpans=(A,)))
    version = store.version(SUBSTRATE[feed])

    outcome = publish(feed, day_rows(feed, D1, "R1", mpans=(A, B)))

    assert counts(outcome) == (48, 0, 0)
    feed_rows = changes_since(store, feed, version)
    assert kinds(feed_rows) == {"insert": 48}
    assert {r["mpan_core"] for r in feed_rows} == {B}


def test_stale_volumes_for_one_mpan_do_not_touch_other_mpans(store, publish):
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "R1", mpans=(A, B)))
    before = held(store, feed)

    outcome = publish(feed, day_rows(feed, D1, "SF", mpans=(C,)))

    assert outcome.status == "stale"
    assert held(store, feed) == before


def test_two_runs_of_one_date_in_one_file_publish_only_the_higher_runs_mpans(store, publish):
    # The SF rows of B are not part of the R1 publication of D1, so B ends up absent for D1.
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "SF", mpans=(A, B)))
    outcome = publish(
        feed, day_rows(feed, D1, "R1", mpans=(A,)), day_rows(feed, D1, "SF", mpans=(B,), value=2.0)
    )
    assert outcome.applied.publications == ["2025-10-01 R1"]
    assert outcome.applied.stale == ["2025-10-01 SF < R1 in the same file"]
    assert {(k[0], r["run_type"]) for k, r in held(store, feed).items()} == {(A, "R1")}


def test_quality_change_alone_is_an_update(store, publish):
    feed = "settlement_volumes"
    publish(feed, day_rows(feed, D1, "R1", mpans=(A,)))
    version = store.version(SUBSTRATE[feed])
    rows = day_rows(feed, D1, "R1", mpans=(A,))
    rows[0] = rows[0][:-1] + "E"

    outcome = publish(feed, rows)

    assert counts(outcome) == (0, 1, 0)
    post = [r for r in changes_since(store, feed, version) if r["_change_type"] == "update_postimage"]
    assert [(r["settlement_period"], r["quality"]) for r in post] == [(1, "E")]
