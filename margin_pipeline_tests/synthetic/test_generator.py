"""The synthetic MHHS generator: deterministic, contract-valid, realistic, and eventful."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from margin_pipeline.contracts.calendar import local_midnight_utc, period_start_utc, periods_in_day
from margin_pipeline.contracts.feeds import FEEDS, GSP_GROUPS, RUN_RANK
from margin_pipeline.contracts.mpan import is_valid_mpan_core
from margin_pipeline.synthetic import (
    Scenario,
    generate_history,
    generate_next_day,
    load_state,
    publications_for_day,
)
from margin_pipeline.synthetic.generator import state_path
from margin_pipeline.synthetic.market import settlement_prices

SMALL = Scenario(meters=20, days=12, seed=3)
FAR_FUTURE = dt.date(9000, 1, 1)
Days = dict[int, dict[str, pa.Table]]


def landing_files(landing: Path) -> dict[str, bytes]:
    return {str(p.relative_to(landing)): p.read_bytes() for p in sorted(landing.rglob("*")) if p.is_file()}


def read_landing(path: Path) -> pa.Table:
    """A landing file parsed with the contract's types (what an ingest would read)."""
    feed = FEEDS[path.parent.name]
    options = pacsv.ConvertOptions(
        column_types={c.name: c.type.arrow for c in feed.columns}, strings_can_be_null=True
    )
    table = pacsv.read_csv(path, convert_options=options)
    for column in feed.columns:
        if column.empty_as is not None:
            index = table.schema.get_field_index(column.name)
            table = table.set_column(index, column.name, pc.fill_null(table[column.name], column.empty_as))
    return table.cast(feed.arrow_schema)


def history_in_memory(scenario: Scenario) -> Days:
    return {k: publications_for_day(scenario, k) for k in range(scenario.days + 1)}


def feed_rows(days: Days, feed: str) -> Iterable[tuple[int, dict[str, object]]]:
    for k, tables in sorted(days.items()):
        if feed in tables:
            for row in tables[feed].to_pylist():
                yield k, row


def key_of(feed: str, row: dict[str, object]) -> tuple[object, ...]:
    return tuple(row[c] for c in FEEDS[feed].key)


@pytest.fixture(scope="module")
def small_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("small") / "landing"
    generate_history(landing, SMALL)
    return landing


@pytest.fixture(scope="module")
def default_days() -> Days:
    return history_in_memory(Scenario())


def test_same_seed_writes_identical_files_and_another_seed_does_not(
    small_landing: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again" / "landing"
    generate_history(again, SMALL)
    assert landing_files(again) == landing_files(small_landing)

    other = tmp_path / "other" / "landing"
    generate_history(other, dataclasses.replace(SMALL, seed=4))
    name = "settlement_volumes/2025-10-01_00_settlement_volumes.csv"
    assert landing_files(other)[name] != landing_files(small_landing)[name]


def test_next_day_extends_history_byte_for_byte(small_landing: Path, tmp_path: Path) -> None:
    landing = tmp_path / "root" / "landing"
    generate_history(landing, dataclasses.replace(SMALL, days=SMALL.days - 1))
    summary = generate_next_day(landing)

    assert landing_files(landing) == landing_files(small_landing)
    assert summary.asof_days == (SMALL.days,)
    assert {p.name for p in summary.files} >= {
        "2025-10-12_00_settlement_volumes.csv",
        "2025-10-12_00_prices.csv",
        "2025-10-12_00_tariff_rates.csv",
    }
    assert load_state(landing) == SMALL
    assert state_path(landing) == landing.parent / "synthetic_state.json"


def test_a_day_does_not_depend_on_history_length() -> None:
    short, long = publications_for_day(Scenario(days=5), 3), publications_for_day(Scenario(days=60), 3)
    assert short.keys() == long.keys()
    assert all(short[feed].equals(long[feed]) for feed in short)


def test_next_day_without_history_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate_history"):
        generate_next_day(tmp_path / "landing")


def test_files_are_named_by_asof_date_and_hold_what_was_generated(small_landing: Path) -> None:
    files = sorted(small_landing.rglob("*.csv"))
    assert {p.parent.name for p in files} == set(FEEDS)
    assert all(re.fullmatch(rf"\d{{4}}-\d{{2}}-\d{{2}}_00_{p.parent.name}\.csv", p.name) for p in files)
    assert not list(small_landing.rglob(".*"))
    for path in files:
        asof_day = SMALL.date_index(dt.date.fromisoformat(path.name[:10])) + 1
        assert read_landing(path).equals(publications_for_day(SMALL, asof_day)[path.parent.name])


def test_csv_text_follows_the_contract(small_landing: Path) -> None:
    rates = (small_landing / "tariff_rates" / "2025-09-30_00_tariff_rates.csv").read_text(encoding="utf-8")
    lines = rates.splitlines()
    assert lines[0] == ",".join(FEEDS["tariff_rates"].column_names)
    assert lines[1] == "STANDARD-VAR-25,_A,2025-09-30T23:00:00Z,2026-01-01T00:00:00Z,25.5100,52.00"
    assert '"' not in rates
    agreements = (small_landing / "supply_agreements" / "2025-09-30_00_supply_agreements.csv").read_text()
    assert agreements.splitlines()[1].endswith(",")
    volumes = (small_landing / "settlement_volumes" / "2025-10-01_00_settlement_volumes.csv").read_text()
    assert re.fullmatch(r"\d{13},2025-10-01,1,SF,\d+\.\d{3},[AE]", volumes.splitlines()[1])


def test_every_value_passes_the_row_rules(default_days: Days) -> None:
    for _, row in feed_rows(default_days, "metering_points"):
        assert is_valid_mpan_core(row["mpan_core"])
        assert 10 <= int(row["mpan_core"][:2]) <= 23
        assert row["gsp_group"] in GSP_GROUPS
        assert 1.05 <= row["line_loss_factor"] <= 1.10
    assert {r["billing_grain"] for _, r in feed_rows(default_days, "tariffs")} == {"HH", "MONTHLY"}
    for _, row in feed_rows(default_days, "supply_agreements"):
        assert is_valid_mpan_core(row["mpan_core"])
    for _, row in feed_rows(default_days, "charges"):
        assert row["unit"] in {"GBP_PER_MWH", "P_PER_KWH", "P_PER_DAY"}
        assert row["gsp_group"] in ("", *GSP_GROUPS)
    for tables in default_days.values():
        if "settlement_volumes" in tables:
            volumes = tables["settlement_volumes"]
            assert pc.min(volumes["kwh"]).as_py() >= 0
            assert set(volumes["quality"].unique().to_pylist()) <= {"A", "E"}
            assert all(is_valid_mpan_core(m) for m in volumes["mpan_core"].unique().to_pylist())


def periods_by_group(table: pa.Table, group: list[str]) -> pa.Table:
    return table.group_by(group).aggregate(
        [
            ("settlement_period", "count"),
            ("settlement_period", "count_distinct"),
            ("settlement_period", "max"),
        ]
    )


def assert_complete_publications(days: Days) -> None:
    for tables in days.values():
        for feed, group in (
            ("settlement_volumes", ["mpan_core", "settlement_date"]),
            ("prices", ["settlement_date"]),
        ):
            if feed not in tables:
                continue
            for row in periods_by_group(tables[feed], group).to_pylist():
                n = periods_in_day(row["settlement_date"])
                assert row["settlement_period_count"] == row["settlement_period_count_distinct"] == n
                assert row["settlement_period_max"] == n
            runs = tables[feed].group_by("settlement_date").aggregate([("run_type", "count_distinct")])
            assert runs["run_type_count_distinct"].to_pylist() == [1] * runs.num_rows


@pytest.mark.parametrize(
    ("start", "clock_change", "periods"),
    [(dt.date(2025, 10, 24), dt.date(2025, 10, 26), 50), (dt.date(2026, 3, 27), dt.date(2026, 3, 29), 46)],
)
def test_clock_change_dates_have_all_their_periods(
    start: dt.date, clock_change: dt.date, periods: int
) -> None:
    scenario = Scenario(meters=6, days=4, start=start, restatement_offsets={"R1": 1, "R2": 2})
    days = history_in_memory(scenario)
    assert_complete_publications(days)

    sf_day = scenario.publication_day(scenario.date_index(clock_change), "SF")
    volumes = days[sf_day]["settlement_volumes"].filter(
        pc.equal(days[sf_day]["settlement_volumes"]["run_type"], "SF")
    )
    assert volumes.num_rows == 6 * periods
    assert sorted(set(volumes["settlement_period"].to_pylist())) == list(range(1, periods + 1))

    rates = days[scenario.date_index(clock_change)]["tariff_rates"]
    agile = rates.filter(
        pc.and_(pc.equal(rates["tariff_code"], "AGILE-HH-25"), pc.equal(rates["gsp_group"], "_C"))
    )
    starts, ends = agile["valid_from"].to_pylist(), agile["valid_to"].to_pylist()
    assert len(starts) == periods
    assert starts[0] == local_midnight_utc(clock_change)
    assert ends[-1] == local_midnight_utc(clock_change + dt.timedelta(days=1))
    assert starts[1:] == ends[:-1]
    assert starts == [period_start_utc(clock_change, p) for p in range(1, periods + 1)]


def test_every_publication_is_complete(default_days: Days) -> None:
    assert_complete_publications(default_days)


def intervals_overlap(intervals: list[tuple[object, object]]) -> bool:
    return any(later_start < end for (_, end), (later_start, _) in itertools.pairwise(sorted(intervals)))


def test_upsert_feeds_never_overlap_after_any_file(default_days: Days) -> None:
    held: dict[str, dict[tuple[object, ...], dict[str, object]]] = defaultdict(dict)
    for tables in default_days.values():
        for feed in ("tariff_rates", "supply_agreements", "charges"):
            for row in tables[feed].to_pylist() if feed in tables else []:
                held[feed][key_of(feed, row)] = row
            grouped: dict[tuple[object, ...], list[tuple[object, object]]] = defaultdict(list)
            for row in held[feed].values():
                if feed == "tariff_rates":
                    assert row["valid_from"] < row["valid_to"]
                    grouped[(row["tariff_code"], row["gsp_group"])].append(
                        (row["valid_from"], row["valid_to"])
                    )
                elif feed == "supply_agreements":
                    end = row["supply_end"] or FAR_FUTURE
                    assert row["supply_start"] <= end
                    grouped[(row["mpan_core"],)].append((row["supply_start"], end + dt.timedelta(days=1)))
                else:
                    grouped[(row["charge_code"], row["gsp_group"])].append(
                        (row["valid_from"], row["valid_to"] or FAR_FUTURE)
                    )
            assert not any(intervals_overlap(v) for v in grouped.values()), feed


def republished_with_new_values(days: Days, feed: str) -> list[tuple[int, dict[str, object]]]:
    first_seen: dict[tuple[object, ...], dict[str, object]] = {}
    changed = []
    for k, row in feed_rows(days, feed):
        key = key_of(feed, row)
        if key in first_seen and first_seen[key] != row:
            changed.append((k, row))
        first_seen.setdefault(key, row)
    return changed


def dates_that_dropped(days: Days, mpan: str) -> set[dt.date]:
    """Settlement dates where a volumes run left ``mpan`` out after an earlier run held it."""
    held: dict[dt.date, bool] = {}
    dropped = set()
    for _, tables in sorted(days.items()):
        volumes = tables.get("settlement_volumes")
        if volumes is None:
            continue
        holding = set(volumes.filter(pc.equal(volumes["mpan_core"], mpan))["settlement_date"].to_pylist())
        for date in volumes["settlement_date"].unique().to_pylist():
            if held.get(date) and date not in holding:
                dropped.add(date)
            held[date] = date in holding
    return dropped


def test_each_event_happens_in_a_30_day_history(default_days: Days) -> None:
    published_on_day_1 = set(default_days[1]["settlement_volumes"]["mpan_core"].to_pylist())
    late = [row["mpan_core"] for k, row in feed_rows(default_days, "metering_points") if k > 0]
    assert late
    assert set(late) <= published_on_day_1
    assert len({r["mpan_core"] for _, r in feed_rows(default_days, "metering_points")}) == 200

    changes: dict[tuple[int, str], list[dict[str, object]]] = defaultdict(list)
    for k, row in feed_rows(default_days, "supply_agreements"):
        if k > 0:
            changes[(k, row["mpan_core"])].append(row)
    switches = [rows for rows in changes.values() if len(rows) == 2]
    corrections = [rows[0] for rows in changes.values() if len(rows) == 1]

    assert switches
    for (k, _), rows in changes.items():
        if len(rows) == 2:
            ended, started = rows
            assert ended["supply_end"] == Scenario().asof_date(k)
            assert started["supply_start"] == ended["supply_end"] + dt.timedelta(days=1)
            assert started["supply_end"] is None
            assert started["tariff_code"] != ended["tariff_code"]
            assert started["account_id"] == ended["account_id"]
    assert any(started["supply_start"].day != 1 for _, started in switches)

    assert corrections
    for row in corrections:
        dropped = dates_that_dropped(default_days, row["mpan_core"])
        assert dropped
        assert min(dropped) == row["supply_end"] + dt.timedelta(days=1)

    levy = republished_with_new_values(default_days, "charges")
    assert levy
    assert {r["charge_code"] for _, r in levy} == {"POLICY_LEVY"}
    original = {key_of("charges", r): r["rate"] for k, r in feed_rows(default_days, "charges") if k == 0}
    assert all(0.005 < abs(r["rate"] / original[key_of("charges", r)] - 1) < 0.045 for _, r in levy)
    rates = republished_with_new_values(default_days, "tariff_rates")
    assert rates
    assert {r["tariff_code"] for _, r in rates} == {"AGILE-HH-25"}


def run_days(days: Days) -> dict[dt.date, list[tuple[int, str]]]:
    """For each settlement date, ``(as-of day, run)`` of its volumes publications in order."""
    published: dict[dt.date, list[tuple[int, str]]] = defaultdict(list)
    for k, tables in sorted(days.items()):
        if "settlement_volumes" in tables:
            pairs = (
                tables["settlement_volumes"]
                .select(["settlement_date", "run_type"])
                .group_by(["settlement_date", "run_type"])
                .aggregate([])
            )
            for row in pairs.to_pylist():
                published[row["settlement_date"]].append((k, row["run_type"]))
    return published


def test_restatement_runs_arrive_on_their_offsets_in_rank_order(default_days: Days) -> None:
    scenario = Scenario()
    published = run_days(default_days)
    assert sorted(published) == [scenario.settlement_date(j) for j in range(30)]
    for date, runs in published.items():
        j = scenario.date_index(date)
        expected = [(scenario.publication_day(j, run), run) for run in scenario.runs]
        assert runs == [(k, run) for k, run in expected if k <= scenario.days]
        assert [RUN_RANK[run] for _, run in runs] == sorted(RUN_RANK[run] for _, run in runs)
    assert [run for _, run in published[scenario.start]] == ["SF", "R1", "R2", "R3"]
    prices = {(r["settlement_date"], r["run_type"]) for _, r in feed_rows(default_days, "prices")}
    assert prices == {(date, run) for date, runs in published.items() for _, run in runs}


def test_restatements_turn_estimates_into_actuals() -> None:
    scenario = Scenario(meters=60, days=6, seed=11, restatement_offsets={"R1": 1, "R2": 2, "R3": 3, "RF": 4})
    date = scenario.start
    runs = {
        run: publications_for_day(scenario, scenario.publication_day(0, run))["settlement_volumes"].filter(
            pc.equal(pc.field("settlement_date"), pa.scalar(date, pa.date32()))
        )
        for run in scenario.runs
    }
    estimated = {run: np.mean(np.array(t["quality"].to_pylist()) == "E") for run, t in runs.items()}
    assert 0.03 <= estimated["SF"] <= 0.08
    assert estimated["SF"] > 3 * estimated["R1"] > 0
    assert estimated["R1"] >= estimated["R2"] >= estimated["R3"] >= estimated["RF"] == 0

    sf, r1, rf = (runs[run].to_pydict() for run in ("SF", "R1", "RF"))
    became_actual = [
        (before, after)
        for before, after, q_before, q_after in zip(
            sf["kwh"], r1["kwh"], sf["quality"], r1["quality"], strict=True
        )
        if q_before == "E" and q_after == "A" and after > 0.05
    ]
    ratios = np.array([before / after for before, after in became_actual])
    assert len(ratios) > 50
    assert np.all((ratios > 0.78) & (ratios < 1.22))
    assert np.mean(np.abs(ratios - 1) > 0.02) > 0.8
    corrected_actuals = sum(
        1
        for before, after, q_before in zip(sf["kwh"], rf["kwh"], sf["quality"], strict=True)
        if q_before == "A" and before != after
    )
    assert 0 < corrected_actuals < 0.01 * len(sf["kwh"])
    unchanged = np.mean(np.array(sf["kwh"]) == np.array(rf["kwh"]))
    assert unchanged > 0.9

    prices = {
        run: publications_for_day(scenario, scenario.publication_day(0, run))["prices"]
        .filter(pc.equal(pc.field("settlement_date"), pa.scalar(date, pa.date32())))["price_gbp_per_mwh"]
        .to_numpy()
        for run in ("SF", "RF")
    }
    moved = prices["RF"] != prices["SF"]
    assert 0 < moved.sum() < len(moved)
    assert np.all(np.abs(prices["RF"] - prices["SF"]) < 5 + 0.15 * np.abs(prices["SF"]))


def test_magnitudes_are_realistic(default_days: Days) -> None:
    volumes = pa.concat_tables(
        [
            t["settlement_volumes"].filter(pc.equal(t["settlement_volumes"]["run_type"], "SF"))
            for k, t in default_days.items()
            if k > 0
        ]
    )
    kwh = volumes["kwh"].to_numpy()
    assert 0.12 < kwh.mean() < 0.3
    assert 2.0 < kwh.max() < 5.0
    per_meter = volumes.group_by("mpan_core").aggregate([("kwh", "mean")])["kwh_mean"].to_numpy()
    assert 2200 < np.median(per_meter) * 17520 < 3600

    prices = np.concatenate(
        [t["prices"]["price_gbp_per_mwh"].to_numpy() for k, t in default_days.items() if k > 0]
    )
    assert 40 < np.median(prices) < 100
    year = np.concatenate([settlement_prices(Scenario(), j, 0) for j in range(365)])
    assert 0.003 < np.mean(year < 0) < 0.03
    assert 1 <= np.sum(year > 500) <= 20

    rates = pa.concat_tables([t["tariff_rates"] for t in default_days.values()]).to_pylist()
    monthly = [r for r in rates if r["tariff_code"] in ("STANDARD-VAR-25", "FIXED-12M-25")]
    assert all(
        23 < r["unit_rate_p_per_kwh"] < 27 and 44 < r["standing_charge_p_per_day"] < 60 for r in monthly
    )
    agile = np.array([r["unit_rate_p_per_kwh"] for r in rates if r["tariff_code"] == "AGILE-HH-25"])
    assert agile.max() <= 100
    assert 12 < np.median(agile) < 30

    grain = {t["tariff_code"]: t["billing_grain"] for _, t in feed_rows(default_days, "tariffs")}
    initial = default_days[0]["supply_agreements"]["tariff_code"].to_pylist()
    assert 0.2 < np.mean([grain[t] == "HH" for t in initial]) < 0.4
    accounts = default_days[0]["supply_agreements"].group_by("account_id").aggregate([("mpan_core", "count")])
    assert set(accounts["mpan_core_count"].to_pylist()) == {1, 2}


def test_scenario_round_trips_through_json_and_rejects_bad_offsets() -> None:
    scenario = Scenario(meters=5, days=2, seed=1, start=dt.date(2026, 1, 1), restatement_offsets={"R1": 2})
    assert Scenario.from_json(scenario.to_json()) == scenario
    with pytest.raises(ValueError, match="strictly increase"):
        Scenario(restatement_offsets={"R1": 5, "R2": 3})
    with pytest.raises(ValueError, match="unknown or SF"):
        Scenario(restatement_offsets={"SF": 1})
