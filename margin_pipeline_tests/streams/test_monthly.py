"""monthly_margin: hand-worked rows for an HH-tariff and a MONTHLY-tariff account, and the final flag."""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import MONTHLY_MARGIN, SETTLEMENT_COST_HH
from margin_pipeline.orchestration.runs import by_source
from margin_pipeline_tests.helpers import csv, metadata_of, read
from margin_pipeline_tests.streams.test_half_hourly import RATES, hh_rates

hh_revenue_asset = ASSETS["hh_revenue"]
monthly_day_ledger = ASSETS["monthly_day_ledger"]
monthly_margin_asset = ASSETS["monthly_margin"]
settlement_cost_hh = ASSETS["settlement_cost_hh"]

HH, FLAT = "1200000000002", "1300000000007"
DAY = dt.date(2025, 10, 1)
STREAMS = [settlement_cost_hh, hh_revenue_asset, monthly_day_ledger, monthly_margin_asset]
VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"


def day_of(mpan: str, run: str) -> list[str]:
    return [f"{mpan},{DAY},{p},{run},0.1,A" for p in range(1, 49)]


FEEDS = {
    "metering_points": csv("mpan_core,gsp_group,line_loss_factor", f"{HH},_A,1.0", f"{FLAT},_A,1.0"),
    "tariffs": csv("tariff_code,billing_grain", "AGILE,HH", "STANDARD,MONTHLY"),
    # ACC1 is open-ended on AGILE; ACC2 was supplied on STANDARD for 1 October only.
    "supply_agreements": csv(
        "account_id,mpan_core,tariff_code,supply_start,supply_end",
        f"ACC1,{HH},AGILE,2025-09-01,",
        f"ACC2,{FLAT},STANDARD,{DAY},{DAY}",
    ),
    "tariff_rates": csv(
        RATES, *hh_rates(DAY, {}), "STANDARD,_A,2025-09-30T23:00:00Z,2025-12-31T00:00:00Z,25.0,51.0"
    ),
    "charges": csv(
        "charge_code,gsp_group,unit,rate,valid_from,valid_to,band_start,band_end",
        "STANDING,_A,P_PER_DAY,24.0,2025-01-01,,,",
    ),
    "prices": csv(
        "settlement_date,settlement_period,run_type,price_gbp_per_mwh",
        *(f"{DAY},{p},RF,50.0" for p in range(1, 49)),
    ),
    "settlement_volumes": csv(VOLUMES, *day_of(HH, "RF"), *day_of(FLAT, "RF")),
}


def test_hand_worked_monthly_rows(publish, materialize, store) -> None:
    publish(FEEDS)
    result = materialize(STREAMS)
    assert result.success
    rows = {r["account_id"]: r for r in read(store, MONTHLY_MARGIN)}
    # Each MPAN-day: 48 x 0.1 = 4.8 kWh, line loss factor 1.0.
    #   cost   = energy 4.8 / 1000 x 50 = 0.24  +  standing charge 24p / 100 = 0.24   -> 0.48
    # ACC2 (MONTHLY tariff): unit rate and standing charge valid at local midnight, ex VAT
    #   revenue = (4.8 x 25.0 + 51.0) / 100 / 1.05 = 171 / 105 = 1.6285714...
    #   margin  = 1.6285714 - 0.48 = 1.1485714...
    flat = rows["ACC2"]
    assert flat["month"] == dt.date(2025, 10, 1)
    assert (flat["billing_grain"], flat["days_supplied"]) == ("MONTHLY", 1)
    assert flat["kwh"] == pytest.approx(4.8, abs=1e-9)
    assert flat["cost_gbp"] == pytest.approx(0.48, abs=1e-9)
    assert flat["revenue_gbp"] == pytest.approx(171 / 105, abs=1e-9)
    assert flat["margin_gbp"] == pytest.approx(171 / 105 - 0.48, abs=1e-9)
    # Its only supplied day contributes and is at RF: the month is final.
    assert flat["final"] is True
    # ACC1 (HH tariff): the sum of hh_revenue over the day = (4.8 x 20.0 + 50.0) / 100 / 1.05 = 146 / 105
    hh = rows["ACC1"]
    assert (hh["billing_grain"], hh["days_supplied"]) == ("HH", 1)
    assert hh["revenue_gbp"] == pytest.approx(146 / 105, abs=1e-9)
    assert hh["margin_gbp"] == pytest.approx(146 / 105 - 0.48, abs=1e-9)
    # Supplied every day of October (open agreement) but only 1 October contributes: not final.
    assert hh["final"] is False
    assert metadata_of(result, ["gold", "monthly_margin"])["rows_inserted"] == 2


def test_month_switching_tariff_is_mixed(publish, materialize, store) -> None:
    second = DAY + dt.timedelta(days=1)
    publish(
        {
            **FEEDS,
            "supply_agreements": csv(
                "account_id,mpan_core,tariff_code,supply_start,supply_end",
                f"ACC1,{HH},AGILE,2025-09-01,{DAY}",
                f"ACC1,{HH},STANDARD,{second},",
            ),
            "prices": csv(
                "settlement_date,settlement_period,run_type,price_gbp_per_mwh",
                *(f"{d},{p},SF,50.0" for d in (DAY, second) for p in range(1, 49)),
            ),
            "settlement_volumes": csv(
                VOLUMES, *(f"{HH},{d},{p},SF,0.1,A" for d in (DAY, second) for p in range(1, 49))
            ),
        }
    )
    assert materialize(STREAMS).success
    [row] = read(store, MONTHLY_MARGIN)
    assert (row["account_id"], row["billing_grain"], row["days_supplied"]) == ("ACC1", "MIXED", 2)
    assert row["revenue_gbp"] == pytest.approx(146 / 105 + 171 / 105, abs=1e-9)


def test_restatement_with_unchanged_values_moves_only_the_run(publish, materialize, store) -> None:
    """A later run with identical kWh (here RF -> DF) changes one row of publication_runs. settlement
    and the ledger re-stamp their rows of the date in place; the ledger and hh_margin leave the cost
    re-stamp out of the change feed they read, so nothing is recomputed downstream of the run."""
    from margin_pipeline.defs.streams.assets import ASSETS

    hh_margin_asset = ASSETS["hh_margin"]
    from margin_pipeline.streams.monthly.tables import DAY_LEDGER

    publish(FEEDS)
    assert materialize([*STREAMS, hh_margin_asset]).success
    ledger_before = {r["mpan_core"]: r for r in read(store, DAY_LEDGER)}
    margin_before = read(store, MONTHLY_MARGIN)

    publish({"settlement_volumes": csv(VOLUMES, *day_of(HH, "DF"), *day_of(FLAT, "DF"))})
    result = materialize([*STREAMS, hh_margin_asset])
    assert result.success

    cost = metadata_of(result, ["gold", "settlement_cost_hh"])
    assert by_source(cost, "change_feed_rows") == {"publication_runs": 2}
    assert (cost["rows_inserted"], cost["rows_updated"], cost["rows_deleted"]) == (0, 96, 0)
    assert cost["keys_recomputed"] == 0
    assert metadata_of(result, ["gold", "hh_revenue"])["mode"] == "skipped (no changes)"
    ledger = metadata_of(result, ["silver", "monthly_day_ledger"])
    assert {k: v for k, v in by_source(ledger, "restamps_skipped").items() if v} == {"settlement_cost_hh": 1}
    assert by_source(ledger, "change_feed_rows") == {"publication_runs": 2, "settlement_cost_hh": 0}
    assert (ledger["keys_recomputed"], ledger["rows_updated"]) == (0, 2)
    margin = metadata_of(result, ["gold", "hh_margin"])
    assert {k: v for k, v in by_source(margin, "restamps_skipped").items() if v} == {"settlement_cost_hh": 1}
    assert (margin["change_feed_rows_read"], margin["rows_updated"]) == (0, 0)

    assert {r["run_type"] for r in read(store, SETTLEMENT_COST_HH)} == {"DF"}
    ledger_after = {r["mpan_core"]: r for r in read(store, DAY_LEDGER)}
    assert ledger_after == {m: {**r, "run_type": "DF"} for m, r in ledger_before.items()}
    # DF is final like RF: monthly_margin reads the ledger's re-stamp and rewrites nothing.
    assert metadata_of(result, ["gold", "monthly_margin"])["rows_updated"] == 0
    assert read(store, MONTHLY_MARGIN) == margin_before


def test_restated_price_is_added_to_the_ledger_tallies_without_reading_half_hours(
    publish, materialize, store
) -> None:
    """A new price for one half hour changes that half hour's cost for both meters. The ledger adds
    the cost change feed's differences to the two days' tallies: it reads no half-hourly table,
    only the feed and its own two rows, and ends where a full recompute would."""
    from margin_pipeline.streams.monthly.tables import DAY_LEDGER

    publish(FEEDS)
    assert materialize(STREAMS).success
    before = {r["mpan_core"]: r for r in read(store, DAY_LEDGER)}
    prices = [f"{DAY},{p},DF,{60.0 if p == 20 else 50.0}" for p in range(1, 49)]
    publish({"prices": csv("settlement_date,settlement_period,run_type,price_gbp_per_mwh", *prices)})
    result = materialize(STREAMS)
    assert result.success

    ledger = metadata_of(result, ["silver", "monthly_day_ledger"])
    # One cost row per meter updated (pre- and post-image), plus the date's run moving RF -> DF.
    assert by_source(ledger, "change_feed_rows")["settlement_cost_hh"] == 4
    assert set(by_source(ledger, "snapshot_rows")) == {
        "metering_points",
        "supply_agreements",
        "tariffs",
        "tariff_rates",
        "publication_runs",
        DAY_LEDGER.name,
    }
    assert by_source(ledger, "snapshot_rows")[DAY_LEDGER.name] == 2
    after = {r["mpan_core"]: r for r in read(store, DAY_LEDGER)}
    # Period 20: 0.1 kWh x (60 - 50) GBP/MWh / 1000 = 0.001 GBP more, on each meter's day.
    for mpan in (HH, FLAT):
        assert after[mpan]["cost_gbp"] == pytest.approx(before[mpan]["cost_gbp"] + 0.001, abs=1e-12)
        assert after[mpan]["cost_periods"] == 48
        assert after[mpan]["cost_through"] > before[mpan]["cost_through"]
        assert after[mpan]["volumes_through"] == before[mpan]["volumes_through"]
