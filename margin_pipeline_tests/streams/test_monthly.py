"""monthly_margin: hand-worked rows for an HH-tariff and a MONTHLY-tariff account, and the final flag."""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.streams.half_hourly.assets import hh_revenue_asset
from margin_pipeline.streams.monthly.assets import monthly_day_ledger
from margin_pipeline.streams.monthly.margin import monthly_margin_asset
from margin_pipeline.streams.settlement.assets import settlement_cost_hh
from margin_pipeline_tests.helpers import csv, metadata_of, read
from margin_pipeline_tests.streams.test_half_hourly import RATES, hh_rates

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
