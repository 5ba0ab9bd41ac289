"""hh_revenue: the contract's HH revenue arithmetic on hand-worked rows, and how changes flow through."""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.contracts.calendar import period_start_utc, periods_in_day
from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import HH_MARGIN, HH_REVENUE, SETTLEMENT_COST_HH
from margin_pipeline.orchestration.runs import by_source
from margin_pipeline.streams.shared.tariffs import validity_overlaps
from margin_pipeline.substrate.tables import SUBSTRATE
from margin_pipeline_tests.helpers import csv, metadata_of, read

hh_revenue_asset = ASSETS["hh_revenue"]

HH, FLAT = "1200000000002", "1300000000007"  # check digits: 13 % 11 % 10 = 2; 18 % 11 % 10 = 7
DAY = dt.date(2025, 10, 1)  # BST, 48 periods; period 35 starts 16:00Z
VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"
RATES = "tariff_code,gsp_group,valid_from,valid_to,unit_rate_p_per_kwh,standing_charge_p_per_day"
AGREEMENTS = "account_id,mpan_core,tariff_code,supply_start,supply_end"


def stamp(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def hh_rates(
    day: dt.date,
    unit: dict[int, float],
    default: float = 20.0,
    standing: float = 50.0,
    skip: tuple[int, ...] = (),
    tariff: str = "AGILE",
) -> list[str]:
    rows = []
    for p in range(1, periods_in_day(day) + 1):
        if p in skip:
            continue
        start, end = period_start_utc(day, p), period_start_utc(day, p + 1)
        rows.append(f"{tariff},_A,{stamp(start)},{stamp(end)},{unit.get(p, default)},{standing}")
    return rows


def volumes(mpan: str, day: dt.date, kwh: dict[int, float], run: str = "SF") -> list[str]:
    return [f"{mpan},{day},{p},{run},{kwh.get(p, 0.1)},A" for p in range(1, periods_in_day(day) + 1)]


BASE = {
    "metering_points": csv("mpan_core,gsp_group,line_loss_factor", f"{HH},_A,1.05", f"{FLAT},_A,1.05"),
    "tariffs": csv("tariff_code,billing_grain", "AGILE,HH", "STANDARD,MONTHLY"),
    "supply_agreements": csv(AGREEMENTS, f"ACC1,{HH},AGILE,2025-09-01,", f"ACC2,{FLAT},STANDARD,2025-09-01,"),
    "tariff_rates": csv(
        RATES,
        *hh_rates(DAY, {35: 42.0}),
        "STANDARD,_A,2025-09-30T23:00:00Z,2025-12-31T00:00:00Z,25.0,51.0",
    ),
    "settlement_volumes": csv(VOLUMES, *volumes(HH, DAY, {35: 0.4}), *volumes(FLAT, DAY, {})),
}


#: The five stream assets in dependency order: hh_margin publishes once all have consumed N.
STREAMS = [
    ASSETS[n]
    for n in ("settlement_cost_hh", "hh_revenue", "monthly_day_ledger", "monthly_margin", "hh_margin")
]
PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"


def prices(day: dt.date, run: str = "SF", price: dict[int, float] | None = None) -> str:
    """A prices file of ``day``: 50.0 GBP/MWh in every period but those of ``price``."""
    return csv(
        PRICES, *(f"{day},{p},{run},{(price or {}).get(p, 50.0)}" for p in range(1, periods_in_day(day) + 1))
    )


def at(rows: list[dict], period: int, mpan: str = HH) -> dict:
    [found] = [r for r in rows if r["settlement_period"] == period and r["mpan_core"] == mpan]
    return found


def test_hand_worked_revenue_row(publish, materialize, store) -> None:
    publish(BASE)
    result = materialize([hh_revenue_asset])
    assert result.success
    rows = read(store, HH_REVENUE)
    # Only the HH-tariff MPAN is in this stream's population; the STANDARD one is monthly's.
    assert {r["mpan_core"] for r in rows} == {HH}
    assert len(rows) == 48
    # Period 35: unit 42.0 p/kWh incl. VAT; standing 50 p/day from the row valid at local midnight.
    #   0.4 x 42.0 / 100 / 1.05 = 0.16                       (16.8p ex VAT)
    #   50 / 100 / 1.05 / 48    = 0.0099206349...            (the day's standing charge over 48 periods)
    #   revenue_gbp             = 0.1699206349...
    r = at(rows, 35)
    assert (r["account_id"], r["tariff_code"]) == ("ACC1", "AGILE")
    assert r["unit_rate_p_per_kwh"] == 42.0
    assert r["revenue_gbp"] == pytest.approx(0.4 * 42.0 / 100 / 1.05 + 0.5 / 1.05 / 48, abs=1e-12)
    assert r["revenue_gbp"] == pytest.approx(0.16992063492, abs=1e-9)
    # A day's standing charge sums to exactly once per supplied day.
    standing = sum(x["revenue_gbp"] - x["kwh"] * x["unit_rate_p_per_kwh"] / 100 / 1.05 for x in rows)
    assert standing == pytest.approx(50 / 100 / 1.05, abs=1e-9)
    assert metadata_of(result, ["gold", "hh_revenue"])["rows_inserted"] == 48


def test_day_missing_a_rate_waits_until_it_arrives(publish, materialize, store) -> None:
    publish({**BASE, "tariff_rates": csv(RATES, *hh_rates(DAY, {}, skip=(20,)))})
    assert materialize([hh_revenue_asset]).success
    assert read(store, HH_REVENUE) == []  # the whole MPAN-date is left out, not 47 of its periods
    start, end = period_start_utc(DAY, 20), period_start_utc(DAY, 21)
    publish({"tariff_rates": csv(RATES, f"AGILE,_A,{stamp(start)},{stamp(end)},20.0,50.0")})
    meta = metadata_of(materialize([hh_revenue_asset]), ["gold", "hh_revenue"])
    assert meta["mode"] == "incremental"
    assert meta["rows_inserted"] == 48


def test_rate_correction_updates_only_its_period(publish, materialize, store) -> None:
    publish(BASE)
    assert materialize([hh_revenue_asset]).success
    start, end = period_start_utc(DAY, 35), period_start_utc(DAY, 36)
    publish({"tariff_rates": csv(RATES, f"AGILE,_A,{stamp(start)},{stamp(end)},40.0,50.0")})
    meta = metadata_of(materialize([hh_revenue_asset]), ["gold", "hh_revenue"])
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 1, 0)
    assert at(read(store, HH_REVENUE), 35)["unit_rate_p_per_kwh"] == 40.0


def test_switch_to_monthly_tariff_removes_the_days_from_hh_revenue(publish, materialize, store) -> None:
    second = DAY + dt.timedelta(days=1)
    publish(
        {
            **BASE,
            "tariff_rates": csv(RATES, *hh_rates(DAY, {}), *hh_rates(second, {})),
            "settlement_volumes": csv(VOLUMES, *volumes(HH, DAY, {}), *volumes(HH, second, {})),
        }
    )
    assert materialize([hh_revenue_asset]).success
    assert len(read(store, HH_REVENUE)) == 96
    # Mid-month switch: AGILE ends on DAY, STANDARD from the next day (an upsert of the old row + a new row).
    publish(
        {
            "supply_agreements": csv(
                AGREEMENTS, f"ACC1,{HH},AGILE,2025-09-01,{DAY}", f"ACC1,{HH},STANDARD,{second},"
            )
        }
    )
    meta = metadata_of(materialize([hh_revenue_asset]), ["gold", "hh_revenue"])
    assert meta["rows_deleted"] == 48
    assert {str(r["settlement_date"]) for r in read(store, HH_REVENUE)} == {str(DAY)}


def test_autumn_clock_change_day_needs_fifty_rates(publish, materialize, store) -> None:
    autumn = dt.date(2025, 10, 26)
    publish(
        {
            **BASE,
            "tariff_rates": csv(RATES, *hh_rates(autumn, {})),
            "settlement_volumes": csv(VOLUMES, *volumes(HH, autumn, {})),
        }
    )
    assert materialize([hh_revenue_asset]).success
    rows = read(store, HH_REVENUE)
    assert len(rows) == 50
    assert at(rows, 50)["revenue_gbp"] == pytest.approx(0.1 * 20 / 100 / 1.05 + 0.5 / 1.05 / 50, abs=1e-12)


def test_a_restated_date_and_a_new_date_read_their_own_rates_not_those_between(
    publish, materialize, store
) -> None:
    """One publication restates an old date and brings a new one: the run reads the rate files of those
    two dates (and the long-lived STANDARD row), not those of the days between them."""
    between, new = DAY + dt.timedelta(days=5), DAY + dt.timedelta(days=10)
    publish(BASE)  # DAY's rates and the STANDARD row in one file: 49 rows
    publish(
        {
            "tariff_rates": csv(RATES, *hh_rates(between, {})),
            "settlement_volumes": csv(VOLUMES, *volumes(HH, between, {})),
        }
    )
    publish({"tariff_rates": csv(RATES, *hh_rates(new, {}, default=30.0))})
    assert materialize([hh_revenue_asset]).success
    restated_and_new = csv(VOLUMES, *volumes(HH, DAY, {35: 0.5}, run="R1"), *volumes(HH, new, {}))
    publish({"settlement_volumes": restated_and_new})
    result = materialize([hh_revenue_asset])
    meta = metadata_of(result, ["gold", "hh_revenue"])
    assert meta["mode"] == "incremental"
    assert by_source(meta, "snapshot_rows")["tariff_rates"] == 49 + 48  # not + between's 48
    rows = read(store, HH_REVENUE)
    assert {str(r["settlement_date"]) for r in rows} == {str(DAY), str(between), str(new)}
    restated = at([r for r in rows if r["settlement_date"] == DAY], 35)
    assert restated["revenue_gbp"] == pytest.approx(0.5 * 42.0 / 100 / 1.05 + 0.5 / 1.05 / 48, abs=1e-12)
    [new_row] = [r for r in rows if str(r["settlement_date"]) == str(new) and r["settlement_period"] == 1]
    assert new_row["unit_rate_p_per_kwh"] == 30.0


def test_no_date_ranges_select_no_rate_files(publish, store) -> None:
    """A run with no touched dates (the margin bridge when no ledger day changed) prunes every rate
    file, rather than handing delta-rs an empty predicate."""
    publish(BASE)
    assert store.read_arrow(SUBSTRATE["tariff_rates"], where=validity_overlaps([])).num_rows == 0
    assert store.row_count(SUBSTRATE["tariff_rates"], where=validity_overlaps([])) == 0


@pytest.mark.parametrize(
    "day", [DAY, dt.date(2025, 10, 26), dt.date(2025, 11, 5)], ids=["bst", "clock-change-50", "gmt"]
)
def test_a_date_reads_the_rate_files_of_its_own_local_day(publish, store, day) -> None:
    """A date's rate window runs from its local midnight to the next one, in UTC: it touches
    neither the file of the day before (whose last row ends at that midnight) nor that of the day
    after (one publication a day), in summer, winter or on the day the clocks go back."""
    standard = "STANDARD,_A,2025-09-01T00:00:00Z,2026-01-01T00:00:00Z,25.0,51.0"
    publish({k: BASE[k] for k in ("metering_points", "tariffs")} | {"tariff_rates": csv(RATES, standard)})
    before, after = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    for each in (before, day, after):
        publish({"tariff_rates": csv(RATES, *hh_rates(each, {}))})
    rates = SUBSTRATE["tariff_rates"]
    touched = 1 + periods_in_day(day)
    assert store.row_count(rates, where=validity_overlaps([day])) == touched
    assert store.row_count(rates, where=validity_overlaps([day, after])) == touched + periods_in_day(after)


def test_hh_margin_takes_a_cost_that_only_changed_value_in_place(publish, materialize, store) -> None:
    """A restated price changes the cost of a half hour whose revenue did not move: hh_margin updates
    that row's cost and margin from the revenue it holds, reading no revenue. A cost that appears
    after its revenue (prices late) is a new row: that one is joined to the revenue it reads."""
    publish(BASE)  # volumes and rates: revenue now, cost when the prices come
    assert materialize(STREAMS).success
    assert read(store, HH_MARGIN) == []
    publish({"prices": prices(DAY)})
    meta = metadata_of(materialize(STREAMS), ["gold", "hh_margin"])
    assert meta["rows_inserted"] == 48
    assert by_source(meta, "snapshot_rows")["hh_revenue"] == 48
    before = {r["settlement_period"]: r for r in read(store, HH_MARGIN)}

    publish({"prices": prices(DAY, "R1", {35: 90.0})})
    meta = metadata_of(materialize(STREAMS), ["gold", "hh_margin"])
    assert by_source(meta, "snapshot_rows") == {"hh_revenue": 0, "settlement_cost_hh": 0}
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 1, 0)
    after = {r["settlement_period"]: r for r in read(store, HH_MARGIN)}
    [cost] = [
        r for r in read(store, SETTLEMENT_COST_HH) if r["mpan_core"] == HH and r["settlement_period"] == 35
    ]
    # kwh_gsp = 0.4 x 1.05 = 0.42; energy 0.42 / 1000 x 90 (no charges in this substrate)
    assert cost["total_cost_gbp"] == pytest.approx(0.42 / 1000 * 90, abs=1e-12)
    assert after[35]["cost_gbp"] == cost["total_cost_gbp"]
    assert after[35]["margin_gbp"] == after[35]["revenue_gbp"] - cost["total_cost_gbp"]
    assert after[35]["revenue_gbp"] == before[35]["revenue_gbp"]
    assert {p for p in after if after[p] != before[p]} == {35}


def test_hh_margin_reads_no_revenue_for_a_new_dates_costs_without_revenue(
    publish, materialize, store
) -> None:
    """A new day: the HH meter's revenue and cost arrive in the change feeds, and so does the cost of
    the meter on a MONTHLY tariff, which has no revenue row. Every revenue row of that date is in the
    revenue feed, so hh_margin does not read the date's revenue to learn that the other has none."""
    publish(BASE | {"prices": prices(DAY)})
    assert materialize(STREAMS).success
    new = DAY + dt.timedelta(days=1)
    publish(
        {
            "tariff_rates": csv(RATES, *hh_rates(new, {})),
            "prices": prices(new),
            "settlement_volumes": csv(VOLUMES, *volumes(HH, new, {}), *volumes(FLAT, new, {})),
        }
    )
    meta = metadata_of(materialize(STREAMS), ["gold", "hh_margin"])
    assert by_source(meta, "change_feed_rows") == {"hh_revenue": 48, "settlement_cost_hh": 96}
    assert by_source(meta, "snapshot_rows") == {"hh_revenue": 0, "settlement_cost_hh": 0}
    assert meta["rows_inserted"] == 48
    assert {r["mpan_core"] for r in read(store, HH_MARGIN) if r["settlement_date"] == new} == {HH}
