"""Ingest of landing batches into the substrate Delta tables: atomic files, quarantine, overlap rules,
idempotence, the ingest log. Real Delta tables under a fresh data root per test."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from margin_pipeline.contracts.calendar import periods_in_day
from margin_pipeline.contracts.feeds import FEEDS
from margin_pipeline.contracts.mpan import with_check_digit
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.substrate.ingest import (
    FileOutcome,
    IngestReport,
    LandingPathError,
    drop_key,
    ingest,
    landing_path,
    pending_files,
)
from margin_pipeline.substrate.tables import INGEST_LOG, SUBSTRATE

M1 = with_check_digit("120000000000")
M2 = with_check_digit("130000000000")
M3 = with_check_digit("140000000000")
DAY = dt.date(2025, 10, 1)

RATE_JAN = "AGILE,_A,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,20.0,40.0"
RATE_FEB = "AGILE,_A,2025-02-01T00:00:00Z,2025-03-01T00:00:00Z,21.0,41.0"


def csv(feed: str, *rows: str) -> str:
    return "\n".join([",".join(FEEDS[feed].column_names), *rows]) + "\n"


def prices(day: dt.date, run: str = "SF", price: float = 50.0) -> list[str]:
    return [f"{day},{p},{run},{price}" for p in range(1, periods_in_day(day) + 1)]


def volumes(day: dt.date, mpans: tuple[str, ...], run: str = "SF", kwh: float = 1.0) -> list[str]:
    return [f"{m},{day},{p},{run},{kwh},A" for m in mpans for p in range(1, periods_in_day(day) + 1)]


def rows_of(store: DeltaRsStore, feed: str) -> list[dict]:
    spec = SUBSTRATE[feed]
    table = store.read_arrow(spec)
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in spec.key))


def changes(store: DeltaRsStore, feed: str, after: int) -> list[dict]:
    spec = SUBSTRATE[feed]
    return store.read_changes_arrow(spec, after, store.version(spec)).to_pylist()


def only(report: IngestReport) -> FileOutcome:
    assert len(report.files) == 1
    return report.files[0]


@pytest.fixture
def ingest_text(data_root: DataRoot, store: DeltaRsStore, drop):
    """Drop one file and ingest it on its own."""

    def _ingest(feed: str, name: str, text: str) -> FileOutcome:
        return only(ingest(data_root, store, [drop(feed, name, text)]))

    return _ingest


def landing_files(root: DataRoot) -> list[Path]:
    return sorted(p for p in root.landing.rglob("*") if p.is_file()) if root.landing.exists() else []


# --- a batch with one malformed file ---------------------------------------------------------------


def test_malformed_file_is_quarantined_and_the_rest_of_the_batch_applies(data_root, store, drop, ingest_text):
    assert ingest_text("tariffs", "t1.csv", csv("tariffs", "AGILE,HH", "FLAT,MONTHLY")).status == "applied"
    tariffs = SUBSTRATE["tariffs"]
    version_before, rows_before = store.version(tariffs), rows_of(store, "tariffs")

    batch = [
        drop("metering_points", "mp.csv", csv("metering_points", f"{M1},_A,1.05", f"{M2},_B,1.1")),
        # Line 2 would change AGILE; line 3 is bad; the file must change nothing.
        drop("tariffs", "t2.csv", csv("tariffs", "AGILE,MONTHLY", "GO,WEEKLY", "NEW,HH")),
        drop("prices", "p.csv", csv("prices", *prices(DAY))),
    ]
    report = ingest(data_root, store, batch, run_id="run-1")

    assert [(f.feed, f.file, f.status) for f in report.files] == [
        ("metering_points", "mp.csv", "applied"),
        ("tariffs", "t2.csv", "rejected"),
        ("prices", "p.csv", "applied"),
    ]
    assert [f.file for f in report.rejected] == ["t2.csv"]
    assert [r["mpan_core"] for r in rows_of(store, "metering_points")] == [M1, M2]
    assert len(rows_of(store, "prices")) == 48

    # The rejected file's table is untouched: same version, same rows.
    assert store.version(tariffs) == version_before
    assert (
        rows_of(store, "tariffs")
        == rows_before
        == [
            {"tariff_code": "AGILE", "billing_grain": "HH"},
            {"tariff_code": "FLAT", "billing_grain": "MONTHLY"},
        ]
    )

    bad = report.files[1]
    assert bad.applied is None
    assert (bad.rejection.rule, bad.rejection.line) == ("billing_grain", 3)
    quarantined = data_root.quarantine / "tariffs" / "t2.csv"
    assert bad.moved_to == str(quarantined)
    assert quarantined.read_text(encoding="utf-8") == csv("tariffs", "AGILE,MONTHLY", "GO,WEEKLY", "NEW,HH")
    error = json.loads((data_root.quarantine / "tariffs" / "t2.csv.error.json").read_text(encoding="utf-8"))
    assert error["file"].endswith("t2.csv")
    assert error["feed"] == "tariffs"
    assert error["line"] == 3
    assert error["rule"] == "billing_grain"
    assert "HH or MONTHLY" in error["message"]
    assert "quarantine" in error["outcome"]

    assert sorted(p.name for p in (data_root.archive / "metering_points").iterdir()) == ["mp.csv"]
    assert sorted(p.name for p in (data_root.archive / "prices").iterdir()) == ["p.csv"]
    assert landing_files(data_root) == []


def test_rejected_first_file_of_a_feed_leaves_no_rows(data_root, store, ingest_text):
    outcome = ingest_text(
        "metering_points", "mp.csv", csv("metering_points", f"{M1},_A,1.05", f"{M2},_A,1.3")
    )
    assert (outcome.status, outcome.rejection.rule, outcome.rejection.line) == (
        "rejected",
        "line_loss_factor",
        3,
    )
    spec = SUBSTRATE["metering_points"]
    assert store.version(spec) is None or store.read_arrow(spec).num_rows == 0


# --- overlap rules, checked on the table as it would be after the file -----------------------------


def assert_rejected_for_overlap(
    store: DeltaRsStore, outcome: FileOutcome, feed: str, line: int, before: list
):
    assert outcome.status == "rejected"
    assert (outcome.rejection.rule, outcome.rejection.line) == ("no overlap", line)
    assert rows_of(store, feed) == before


def test_tariff_rates_overlapping_within_one_file_reject(store, ingest_text):
    outcome = ingest_text(
        "tariff_rates",
        "r.csv",
        csv(
            "tariff_rates",
            RATE_JAN,
            "AGILE,_A,2025-01-31T23:30:00Z,2025-03-01T00:00:00Z,21.0,41.0",
        ),
    )
    assert_rejected_for_overlap(store, outcome, "tariff_rates", 3, [])


def test_tariff_rates_overlapping_held_rows_reject(store, ingest_text):
    assert ingest_text("tariff_rates", "r1.csv", csv("tariff_rates", RATE_JAN, RATE_FEB)).status == "applied"
    before, version = rows_of(store, "tariff_rates"), store.version(SUBSTRATE["tariff_rates"])
    outcome = ingest_text(
        "tariff_rates",
        "r2.csv",
        csv(
            "tariff_rates",
            "AGILE,_B,2025-01-15T00:00:00Z,2025-02-15T00:00:00Z,22.0,42.0",  # other group: fine
            "AGILE,_A,2025-01-15T00:00:00Z,2025-01-20T00:00:00Z,22.0,42.0",  # inside held January
        ),
    )
    assert_rejected_for_overlap(store, outcome, "tariff_rates", 3, before)
    assert store.version(SUBSTRATE["tariff_rates"]) == version


def test_tariff_rates_that_only_touch_are_accepted(store, ingest_text):
    # valid_to is exclusive: February may start exactly where January ends, in one file or later.
    assert ingest_text("tariff_rates", "r1.csv", csv("tariff_rates", RATE_JAN)).status == "applied"
    outcome = ingest_text(
        "tariff_rates",
        "r2.csv",
        csv("tariff_rates", RATE_FEB, "AGILE,_A,2025-03-01T00:00:00Z,2025-04-01T00:00:00Z,-1.5,41.0"),
    )
    assert outcome.status == "applied"
    assert [r["unit_rate_p_per_kwh"] for r in rows_of(store, "tariff_rates")] == [20.0, 21.0, -1.5]


def test_agreements_overlapping_an_open_ended_agreement_reject(store, ingest_text):
    ok = ingest_text("supply_agreements", "a1.csv", csv("supply_agreements", f"ACC1,{M1},AGILE,2025-01-01,"))
    assert ok.status == "applied"
    before = rows_of(store, "supply_agreements")
    # Another account takes the MPAN while ACC1's agreement is still open.
    outcome = ingest_text(
        "supply_agreements",
        "a2.csv",
        csv("supply_agreements", f"ACC2,{M2},AGILE,2025-01-01,", f"ACC2,{M1},FLAT,2026-06-01,2026-12-31"),
    )
    assert_rejected_for_overlap(store, outcome, "supply_agreements", 3, before)


def test_agreement_end_dates_are_inclusive(store, ingest_text):
    held = csv("supply_agreements", f"ACC1,{M1},AGILE,2025-01-01,2025-01-31")
    assert ingest_text("supply_agreements", "a1.csv", held).status == "applied"
    before = rows_of(store, "supply_agreements")
    same_day = ingest_text(
        "supply_agreements", "a2.csv", csv("supply_agreements", f"ACC2,{M1},FLAT,2025-01-31,")
    )
    assert_rejected_for_overlap(store, same_day, "supply_agreements", 2, before)
    next_day = ingest_text(
        "supply_agreements", "a3.csv", csv("supply_agreements", f"ACC2,{M1},FLAT,2025-02-01,")
    )
    assert next_day.status == "applied"
    assert [(r["account_id"], r["supply_end"]) for r in rows_of(store, "supply_agreements")] == [
        ("ACC1", dt.date(2025, 1, 31)),
        ("ACC2", None),
    ]


def test_two_open_agreements_for_one_mpan_in_one_file_reject(store, ingest_text):
    outcome = ingest_text(
        "supply_agreements",
        "a.csv",
        csv("supply_agreements", f"ACC1,{M1},AGILE,2025-01-01,", f"ACC2,{M1},AGILE,2025-03-01,"),
    )
    assert_rejected_for_overlap(store, outcome, "supply_agreements", 3, [])


def test_charges_overlapping_reject(store, ingest_text):
    held = csv(
        "charges",
        "TNUOS,,P_PER_DAY,10.0,2025-01-01,,,",
        "RED,_A,P_PER_KWH,3.0,2025-01-01,2025-04-01,16:00,19:00",
    )
    assert ingest_text("charges", "c1.csv", held).status == "applied"
    before = rows_of(store, "charges")
    all_groups = ingest_text("charges", "c2.csv", csv("charges", "TNUOS,,P_PER_DAY,11.0,2025-06-01,,,"))
    assert_rejected_for_overlap(store, all_groups, "charges", 2, before)
    one_group = ingest_text(
        "charges",
        "c3.csv",
        csv(
            "charges",
            "RED,_B,P_PER_KWH,3.0,2025-01-01,,16:00,19:00",
            "RED,_A,P_PER_KWH,3.5,2025-03-31,,16:00,19:00",
        ),
    )
    assert_rejected_for_overlap(store, one_group, "charges", 3, before)
    touching = ingest_text(
        "charges", "c4.csv", csv("charges", "RED,_A,P_PER_KWH,3.5,2025-04-01,,16:00,19:00")
    )
    assert touching.status == "applied"


def test_correction_replacing_a_held_row_by_key_is_accepted(store, ingest_text):
    assert ingest_text("tariff_rates", "r1.csv", csv("tariff_rates", RATE_JAN, RATE_FEB)).status == "applied"
    # Same key (AGILE, _A, 2025-01-01) now ends mid-January; a new row fills the gap up to February.
    outcome = ingest_text(
        "tariff_rates",
        "r2.csv",
        csv(
            "tariff_rates",
            "AGILE,_A,2025-01-01T00:00:00Z,2025-01-15T00:00:00Z,20.0,40.0",
            "AGILE,_A,2025-01-15T00:00:00Z,2025-02-01T00:00:00Z,25.0,40.0",
        ),
    )
    assert outcome.status == "applied"
    assert (outcome.applied.outcome.inserted, outcome.applied.outcome.updated) == (1, 1)
    assert [
        (r["valid_from"].day, r["valid_to"].month, r["valid_to"].day) for r in rows_of(store, "tariff_rates")
    ] == [
        (1, 1, 15),
        (15, 2, 1),
        (1, 3, 1),
    ]


def test_correction_of_an_open_agreement_closes_it_so_a_new_one_fits(store, ingest_text):
    held = csv("supply_agreements", f"ACC1,{M1},AGILE,2025-01-01,")
    assert ingest_text("supply_agreements", "a1.csv", held).status == "applied"
    outcome = ingest_text(
        "supply_agreements",
        "a2.csv",
        csv("supply_agreements", f"ACC2,{M1},FLAT,2025-07-01,", f"ACC1,{M1},AGILE,2025-01-01,2025-06-30"),
    )
    assert outcome.status == "applied"
    assert [
        (r["account_id"], r["supply_start"], r["supply_end"]) for r in rows_of(store, "supply_agreements")
    ] == [
        ("ACC1", dt.date(2025, 1, 1), dt.date(2025, 6, 30)),
        ("ACC2", dt.date(2025, 7, 1), None),
    ]


# --- idempotence and minimal change feeds ----------------------------------------------------------


@pytest.mark.parametrize(
    ("feed", "text"),
    [
        ("metering_points", csv("metering_points", f"{M1},_A,1.05", f"{M2},_B,1.1")),
        (
            "charges",
            csv(
                "charges",
                "TNUOS,,P_PER_DAY,10.0,2025-01-01,,,",
                "RED,_A,P_PER_KWH,3.0,2025-01-01,,16:00,19:00",
            ),
        ),
        ("supply_agreements", csv("supply_agreements", f"ACC1,{M1},AGILE,2025-01-01,")),
        ("settlement_volumes", csv("settlement_volumes", *volumes(DAY, (M1, M2)))),
        ("prices", csv("prices", *prices(DAY))),
    ],
)
def test_redropping_an_applied_file_changes_nothing(data_root, store, ingest_text, feed, text):
    first = ingest_text(feed, "same.csv", text)
    assert first.status == "applied"
    spec = SUBSTRATE[feed]
    version, rows, history = store.version(spec), rows_of(store, feed), len(store.history(spec))

    again = ingest_text(feed, "same.csv", text)

    assert again.status == "unchanged"
    assert again.applied.outcome.changed == 0
    assert again.applied.outcome.version == version
    assert store.version(spec) == version
    assert len(store.history(spec)) == history  # no commit at all, hence no change-feed rows
    assert changes(store, feed, version) == []
    assert rows_of(store, feed) == rows
    # Both copies are kept in the archive.
    assert len(list((data_root.archive / feed).glob("same*.csv"))) == 2


def test_upsert_of_one_changed_value_is_exactly_one_update(store, ingest_text):
    ingest_text("metering_points", "m1.csv", csv("metering_points", f"{M1},_A,1.05", f"{M2},_B,1.1"))
    version = store.version(SUBSTRATE["metering_points"])

    outcome = ingest_text(
        "metering_points", "m2.csv", csv("metering_points", f"{M1},_A,1.05", f"{M2},_B,1.15")
    )

    assert outcome.status == "applied"
    assert outcome.applied.outcome.version == version + 1
    assert (
        outcome.applied.outcome.inserted,
        outcome.applied.outcome.updated,
        outcome.applied.outcome.deleted,
    ) == (
        0,
        1,
        0,
    )
    feed = sorted(changes(store, "metering_points", version), key=lambda r: r["_change_type"])
    assert [
        (r["_change_type"], r["mpan_core"], r["line_loss_factor"], r["_commit_version"]) for r in feed
    ] == [
        ("update_postimage", M2, 1.15, version + 1),
        ("update_preimage", M2, 1.1, version + 1),
    ]


def test_upsert_never_deletes_keys_absent_from_the_file(store, ingest_text):
    ingest_text("tariffs", "t1.csv", csv("tariffs", "AGILE,HH", "FLAT,MONTHLY"))
    version = store.version(SUBSTRATE["tariffs"])
    outcome = ingest_text("tariffs", "t2.csv", csv("tariffs", "GO,HH"))
    assert (outcome.applied.outcome.inserted, outcome.applied.outcome.deleted) == (1, 0)
    assert [r["tariff_code"] for r in rows_of(store, "tariffs")] == ["AGILE", "FLAT", "GO"]
    assert [(r["_change_type"], r["tariff_code"]) for r in changes(store, "tariffs", version)] == [
        ("insert", "GO")
    ]


def test_float_noise_below_tolerance_is_not_an_update(store, ingest_text):
    ingest_text("metering_points", "m1.csv", csv("metering_points", f"{M1},_A,1.05"))
    version = store.version(SUBSTRATE["metering_points"])
    outcome = ingest_text("metering_points", "m2.csv", csv("metering_points", f"{M1},_A,1.0500000000001"))
    assert outcome.status == "unchanged"
    assert store.version(SUBSTRATE["metering_points"]) == version


def test_empty_charge_gsp_group_is_stored_as_empty_string(store, ingest_text):
    ingest_text("charges", "c.csv", csv("charges", "TNUOS,,P_PER_DAY,10.0,2025-01-01,,,"))
    table = store.read_arrow(SUBSTRATE["charges"])
    assert table.column("gsp_group").to_pylist() == [""]
    assert table.column("gsp_group").null_count == 0
    # The empty group is part of the key: re-sending it with a new rate updates that same row.
    version = store.version(SUBSTRATE["charges"])
    ingest_text("charges", "c2.csv", csv("charges", "TNUOS,,P_PER_DAY,12.0,2025-01-01,,,"))
    assert [(r["gsp_group"], r["rate"]) for r in rows_of(store, "charges")] == [("", 12.0)]
    assert sorted(r["_change_type"] for r in changes(store, "charges", version)) == [
        "update_postimage",
        "update_preimage",
    ]


# --- nothing is lost; the ingest log ---------------------------------------------------------------


def test_every_landing_file_ends_in_archive_or_quarantine(data_root, store, drop):
    drop("prices", "p1.csv", csv("prices", *prices(DAY, "R1")))
    drop("metering_points", "m1.csv", csv("metering_points", f"{M1},_A,1.05"))
    drop("metering_points", "m2.csv", csv("metering_points", f"{M3},_Z,1.05"))  # bad gsp_group
    drop("tariffs", "t1.csv", "tariff_code\nAGILE\n")  # bad header
    drop("settlement_volumes", "v1.csv", csv("settlement_volumes", *volumes(DAY, (M1,))))
    drop("settlement_volumes", "v2.csv", csv("settlement_volumes", *volumes(DAY, (M1,))[:-1]))  # incomplete
    pending = pending_files(data_root)
    # Reference feeds first, then prices before volumes, names sorted within a feed.
    assert [(p.parent.name, p.name) for p in pending] == [
        ("metering_points", "m1.csv"),
        ("metering_points", "m2.csv"),
        ("tariffs", "t1.csv"),
        ("prices", "p1.csv"),
        ("settlement_volumes", "v1.csv"),
        ("settlement_volumes", "v2.csv"),
    ]
    first = ingest(data_root, store, pending, run_id="r1")
    drop("prices", "p2.csv", csv("prices", *prices(DAY, "SF")))  # stale under R1
    drop("prices", "p3.csv", csv("prices", *prices(DAY, "R1")))  # identical re-delivery
    second = ingest(data_root, store, pending_files(data_root), run_id="r2")

    statuses = {f.file: f.status for f in first.files + second.files}
    assert statuses == {
        "m1.csv": "applied",
        "m2.csv": "rejected",
        "t1.csv": "rejected",
        "p1.csv": "applied",
        "v1.csv": "applied",
        "v2.csv": "rejected",
        "p2.csv": "stale",
        "p3.csv": "unchanged",
    }
    assert landing_files(data_root) == []
    archived = sorted(p.name for p in data_root.archive.rglob("*.csv"))
    quarantined = sorted(p.name for p in data_root.quarantine.rglob("*.csv"))
    assert archived == ["m1.csv", "p1.csv", "p2.csv", "p3.csv", "v1.csv"]
    assert quarantined == ["m2.csv", "t1.csv", "v2.csv"]
    errors = sorted(p.name for p in data_root.quarantine.rglob("*.error.json"))
    assert errors == ["m2.csv.error.json", "t1.csv.error.json", "v2.csv.error.json"]
    v2 = json.loads((data_root.quarantine / "settlement_volumes" / "v2.csv.error.json").read_text())
    assert (v2["rule"], v2["line"]) == ("complete day", 48)
    assert pending_files(data_root) == []


def test_file_in_an_unknown_feed_folder_is_quarantined(data_root, store, drop):
    path = drop("meter_reads", "x.csv", "a,b\n1,2\n")
    assert pending_files(data_root) == []  # not a feed: the sensor never offers it
    outcome = only(ingest(data_root, store, [path]))
    assert (outcome.status, outcome.rejection.rule) == ("rejected", "feed")
    assert (data_root.quarantine / "meter_reads" / "x.csv").exists()
    assert (
        json.loads((data_root.quarantine / "meter_reads" / "x.csv.error.json").read_text())["rule"] == "feed"
    )


def test_redropped_rejected_file_gets_a_new_name_in_quarantine(data_root, store, ingest_text):
    bad = csv("tariffs", "AGILE,DAILY")
    ingest_text("tariffs", "t.csv", bad)
    second = ingest_text("tariffs", "t.csv", bad)
    assert second.status == "rejected"
    names = sorted(p.name for p in (data_root.quarantine / "tariffs").iterdir())
    assert len(names) == 4
    assert "t.csv" in names
    assert "t.csv.error.json" in names
    assert Path(second.moved_to).name in names
    assert Path(second.moved_to).name + ".error.json" in names


def test_ingest_log_has_one_row_per_file(data_root, store, drop):
    batch = [
        drop("tariffs", "t1.csv", csv("tariffs", "AGILE,HH")),
        drop("tariffs", "t2.csv", csv("tariffs", "AGILE,HH")),
        drop("tariffs", "t3.csv", csv("tariffs", "AGILE,XX")),
        drop("prices", "p1.csv", csv("prices", *prices(DAY, "R1", 60.0))),
    ]
    ingest(data_root, store, batch, run_id="batch-1")
    ingest(data_root, store, [drop("prices", "p2.csv", csv("prices", *prices(DAY, "SF")))], run_id="batch-2")

    log = sorted(store.read_arrow(INGEST_LOG).to_pylist(), key=lambda r: r["file"])
    assert [(r["run_id"], r["feed"], r["file"], r["status"]) for r in log] == [
        ("batch-1", "prices", "p1.csv", "applied"),
        ("batch-2", "prices", "p2.csv", "stale"),
        ("batch-1", "tariffs", "t1.csv", "applied"),
        ("batch-1", "tariffs", "t2.csv", "unchanged"),
        ("batch-1", "tariffs", "t3.csv", "rejected"),
    ]
    by_file = {r["file"]: r for r in log}
    assert len({r["ingest_id"] for r in log}) == 5
    assert (by_file["p1.csv"]["rows"], by_file["p1.csv"]["inserted"]) == (48, 48)
    assert by_file["p1.csv"]["publications"] == "2025-10-01 R1"
    assert by_file["p1.csv"]["table_version"] == store.version(SUBSTRATE["prices"])
    assert by_file["p2.csv"]["stale_publications"] == "2025-10-01 SF < R1 held"
    assert (by_file["t2.csv"]["inserted"], by_file["t2.csv"]["updated"]) == (0, 0)
    assert by_file["t3.csv"]["rule"] == "billing_grain"
    assert by_file["t3.csv"]["line"] == 2
    assert "HH or MONTHLY" in by_file["t3.csv"]["message"]
    assert by_file["t3.csv"]["rows"] is None
    assert all(r["ingested_at"] is not None for r in log)


def test_header_only_publication_file_does_not_abort_the_batch(data_root, store, drop):
    batch = [
        drop("prices", "a_empty.csv", csv("prices")),
        drop("prices", "b.csv", csv("prices", *prices(DAY))),
    ]
    report = ingest(data_root, store, batch)
    assert [f.status for f in report.files] == ["unchanged", "applied"]
    assert landing_files(data_root) == []


def test_unparseable_integer_does_not_abort_the_batch(data_root, store, drop):
    rows = prices(DAY)
    rows[4] = f"{DAY},+5,SF,50.0"
    batch = [
        drop("prices", "a.csv", csv("prices", *rows)),
        drop("prices", "b.csv", csv("prices", *prices(DAY))),
    ]
    report = ingest(data_root, store, batch)
    assert [f.file for f in report.files] == ["a.csv", "b.csv"]
    assert report.files[1].status == "applied"
    assert landing_files(data_root) == []


def test_header_only_upsert_file_is_unchanged(data_root, store, ingest_text):
    outcome = ingest_text("tariffs", "empty.csv", csv("tariffs"))
    assert outcome.status == "unchanged"
    assert outcome.applied.rows == 0
    assert (data_root.archive / "tariffs" / "empty.csv").exists()


def test_a_file_that_changed_since_the_sensor_saw_it_stays_in_landing(data_root, store, drop):
    """The sensor chose the file at one size; the writer was still appending: ingest leaves it for a
    later run, nothing of it applied (no half-written file is ever read)."""
    path = drop("tariffs", "t.csv", csv("tariffs", "AGILE,HH"))
    seen = drop_key(path)
    with path.open("a", encoding="utf-8") as out:
        out.write("FLAT,MONTHLY\n")
    report = ingest(data_root, store, [path], seen=[seen])
    assert report.files == [] and path.exists()
    assert store.version(SUBSTRATE["tariffs"]) is None
    assert only(ingest(data_root, store, [path], seen=[drop_key(path)])).status == "applied"


@pytest.mark.parametrize(
    "relative", ["../outside.csv", "/etc/passwd", "prices/../../outside.csv", "prices/a/b.csv"]
)
def test_a_landing_path_outside_landing_is_refused(data_root, relative):
    with pytest.raises(LandingPathError, match="refused landing file"):
        landing_path(data_root, relative)


def test_the_ingest_job_refuses_a_path_out_of_landing_and_moves_nothing(data_root, store):
    import dagster as dg

    from margin_pipeline.defs.ingest.assets import ingest_landing

    outside = data_root.path / "outside.csv"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text("secret\n")
    config = {"ops": {"ingest_landing": {"config": {"files": ["../outside.csv"]}}}}
    result = dg.materialize(
        [ingest_landing],
        resources={"data_root": data_root, "store": store},
        run_config=config,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "refused landing file '../outside.csv'" in failure.step_failure_data.error.message
    assert outside.read_text() == "secret\n" and not data_root.quarantine.exists()


@pytest.mark.parametrize("name", [b"pr\xffices.csv", ("p" * 240 + ".csv").encode()])
def test_a_name_that_is_not_utf8_or_too_long_is_quarantined(data_root, store, name):
    folder = data_root.landing / "prices"
    folder.mkdir(parents=True)
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))
    path.write_text(csv("prices", "2025-10-01,1,II,50.0"))
    outcome = only(ingest(data_root, store, pending_files(data_root)))
    assert (outcome.status, outcome.rejection.rule) == ("rejected", "file name")
    assert pending_files(data_root) == [] and not path.exists()
    [kept] = [p for p in (data_root.quarantine / "prices").iterdir() if p.suffix == ".csv"]
    error = json.loads(kept.with_name(kept.name + ".error.json").read_text())
    assert error["rule"] == "file name" and "prices/" in error["file"]
    assert store.read_arrow(INGEST_LOG).column("rule").to_pylist() == ["file name"]
