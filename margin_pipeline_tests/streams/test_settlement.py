"""settlement_cost_hh: the contract's arithmetic on hand-worked rows, and how changes flow through."""

from __future__ import annotations

import dagster as dg
import pytest

from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import SETTLEMENT_COST_HH
from margin_pipeline.orchestration.runs import by_source
from margin_pipeline_tests.helpers import csv, metadata_of, read

settlement_cost_hh = ASSETS["settlement_cost_hh"]

MPAN = "1200000000002"  # 1x3 + 2x5 = 13; 13 % 11 % 10 = 2
DAY = "2025-10-01"  # BST: local midnight is 2025-09-30T23:00Z, 48 periods

VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"
PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"
CHARGES = "charge_code,gsp_group,unit,rate,valid_from,valid_to,band_start,band_end"


def day_of(
    mpan: str, day: str, run: str, kwh: dict[int, float], n: int = 48, default: float = 0.1
) -> list[str]:
    return [f"{mpan},{day},{p},{run},{kwh.get(p, default)},A" for p in range(1, n + 1)]


def prices_of(day: str, run: str, price: dict[int, float], n: int = 48, default: float = 50.0) -> list[str]:
    return [f"{day},{p},{run},{price.get(p, default)}" for p in range(1, n + 1)]


BASE = {
    "metering_points": csv("mpan_core,gsp_group,line_loss_factor", f"{MPAN},_A,1.05"),
    "charges": csv(
        CHARGES,
        "BSUOS,,GBP_PER_MWH,3.0,2025-01-01,,,",
        "RED,_A,P_PER_KWH,10.0,2025-01-01,,16:00,19:00",
        "GREEN,_A,P_PER_KWH,1.0,2025-01-01,,23:00,07:00",
        "STANDING,_A,P_PER_DAY,24.0,2025-01-01,,,",
        "OTHER_GSP,_B,P_PER_KWH,99.0,2025-01-01,,,",
    ),
    "prices": csv(PRICES, *prices_of(DAY, "SF", {35: 80.0})),
    "settlement_volumes": csv(VOLUMES, *day_of(MPAN, DAY, "SF", {35: 0.4})),
}


def row(rows: list[dict], period: int, day: str = DAY) -> dict:
    [found] = [r for r in rows if r["settlement_period"] == period and str(r["settlement_date"]) == day]
    return found


def test_hand_worked_cost_row(publish, materialize, store) -> None:
    publish(BASE)
    result = materialize([settlement_cost_hh])
    assert result.success
    rows = read(store, SETTLEMENT_COST_HH)
    assert len(rows) == 48
    # Period 35 of 2025-10-01 starts 2025-10-01T16:00Z = 17:00 BST: inside the RED band, outside GREEN.
    # kwh_gsp = 0.4 x 1.05 = 0.42
    # energy  = 0.42 / 1000 x 80                     = 0.0336
    # BSUOS   = 0.42 / 1000 x 3.0 (every GSP group)  = 0.00126
    # RED     = 0.42 x 10.0 / 100                    = 0.042
    # STANDING= 24.0 / 100 / 48                      = 0.005
    # non-energy = 0.04826; total = 0.08186
    r = row(rows, 35)
    assert r["run_type"] == "SF"
    assert r["kwh"] == pytest.approx(0.4)
    assert r["kwh_gsp"] == pytest.approx(0.42, abs=1e-12)
    assert r["energy_cost_gbp"] == pytest.approx(0.0336, abs=1e-9)
    assert r["non_energy_cost_gbp"] == pytest.approx(0.04826, abs=1e-9)
    assert r["total_cost_gbp"] == pytest.approx(0.08186, abs=1e-9)
    # Period 1 starts 00:00 BST: GREEN (wraps midnight) applies, RED does not.
    # kwh_gsp = 0.105; energy = 0.105/1000*50 = 0.00525
    # BSUOS 0.000315; GREEN 0.105*1/100 = 0.00105; STANDING 0.005
    r1 = row(rows, 1)
    assert r1["energy_cost_gbp"] == pytest.approx(0.00525, abs=1e-9)
    assert r1["non_energy_cost_gbp"] == pytest.approx(0.000315 + 0.00105 + 0.005, abs=1e-9)
    meta = metadata_of(result, ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "full"
    assert meta["rows_inserted"] == 48


def test_no_changes_reads_and_writes_nothing(publish, materialize, store) -> None:
    publish(BASE)
    assert materialize([settlement_cost_hh]).success
    version = store.version(SETTLEMENT_COST_HH)
    result = materialize([settlement_cost_hh])
    meta = metadata_of(result, ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "skipped (no changes)"
    assert meta["rows_read"] == 0
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 0, 0)
    assert store.version(SETTLEMENT_COST_HH) == version


def test_restatement_updates_only_changed_rows(publish, materialize, store) -> None:
    publish(BASE)
    assert materialize([settlement_cost_hh]).success
    publish({"settlement_volumes": csv(VOLUMES, *day_of(MPAN, DAY, "R1", {35: 0.5}))})
    result = materialize([settlement_cost_hh])
    meta = metadata_of(result, ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "incremental"
    # The substrate emits the one changed volume (pre- and post-image) and the date's new run, not
    # the 47 unchanged rows; the stream reads those two change feeds, and 48 + 1 runs + 0 others.
    assert by_source(meta, "change_feed_rows") == {"settlement_volumes": 2, "publication_runs": 2}
    # Every row's run_type moved SF -> R1, so all 48 rows update: period 35 by the MERGE (with its
    # new cost), the other 47 re-stamped in place by one commit marked as a run re-stamp.
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 48, 0)
    merge, restamp = reversed(store.history(SETTLEMENT_COST_HH, limit=2))
    assert merge["operation"] == "MERGE" and merge.get("margin_pipeline.change") is None
    assert restamp["operation"] == "UPDATE" and restamp["margin_pipeline.change"] == "run_type"
    assert restamp["operationMetrics"]["num_updated_rows"] == 47
    rows = read(store, SETTLEMENT_COST_HH)
    assert {r["run_type"] for r in rows} == {"R1"}
    r = row(rows, 35)
    assert r["energy_cost_gbp"] == pytest.approx(0.5 * 1.05 / 1000 * 80, abs=1e-12)


def test_restated_price_reprices_its_half_hour_in_place(publish, materialize, store) -> None:
    publish(BASE)
    assert materialize([settlement_cost_hh]).success
    before = read(store, SETTLEMENT_COST_HH)
    publish({"prices": csv(PRICES, *prices_of(DAY, "R1", {35: 80.0, 36: 90.0}))})
    result = materialize([settlement_cost_hh])
    meta = metadata_of(result, ["gold", "settlement_cost_hh"])
    # Period 36's price moved 50 -> 90: its cost row is re-priced from its own kwh_gsp and
    # non-energy cost. No volume is read (no snapshot of settlement_volumes, no keys recomputed).
    assert "settlement_volumes" not in by_source(meta, "snapshot_rows")
    assert meta["keys_recomputed"] == 0
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 1, 0)
    after = read(store, SETTLEMENT_COST_HH)
    old, new = row(before, 36), row(after, 36)
    # kwh_gsp = 0.1 x 1.05 = 0.105; energy = 0.105 / 1000 x 90
    assert new["energy_cost_gbp"] == pytest.approx(0.105 / 1000 * 90, abs=1e-12)
    assert new["non_energy_cost_gbp"] == old["non_energy_cost_gbp"]
    assert new["total_cost_gbp"] == pytest.approx(
        new["energy_cost_gbp"] + old["non_energy_cost_gbp"], abs=1e-12
    )
    assert {r["settlement_period"] for r in after if r != row(before, r["settlement_period"])} == {36}


def test_waiting_rows_are_computed_when_prices_arrive(publish, materialize, store) -> None:
    publish({k: v for k, v in BASE.items() if k != "prices"})
    assert materialize([settlement_cost_hh]).success
    assert read(store, SETTLEMENT_COST_HH) == []
    publish({"prices": BASE["prices"]})
    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "incremental"
    assert meta["rows_inserted"] == 48


def test_a_new_date_published_with_its_prices_is_costed_from_the_change_feed(
    publish, materialize, store
) -> None:
    """A new date's volumes and prices in one publication: every row held for the date is in the
    volume change feed, so the date's snapshot is not read. When some of a date's volumes were held
    before its prices came, its snapshot is read and they are costed too."""
    other = "1300000000007"  # 1x3 + 3x5 = 18; 18 % 11 % 10 = 7
    points = csv("mpan_core,gsp_group,line_loss_factor", f"{MPAN},_A,1.05", f"{other},_A,1.05")
    publish(BASE | {"metering_points": points})
    assert materialize([settlement_cost_hh]).success
    new = "2025-10-02"
    publish(
        {
            "settlement_volumes": csv(VOLUMES, *day_of(MPAN, new, "SF", {})),
            "prices": csv(PRICES, *prices_of(new, "SF", {})),
        }
    )
    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert meta["mode"] == "incremental"
    assert "settlement_volumes" not in by_source(meta, "snapshot_rows")
    assert meta["rows_inserted"] == 48
    waiting = "2025-10-03"
    publish({"settlement_volumes": csv(VOLUMES, *day_of(other, waiting, "SF", {}))})
    assert materialize([settlement_cost_hh]).success
    publish(
        {
            # A date's file holds all of its volumes: the other MPAN's rows again, unchanged.
            "settlement_volumes": csv(
                VOLUMES, *day_of(other, waiting, "SF", {}), *day_of(MPAN, waiting, "SF", {})
            ),
            "prices": csv(PRICES, *prices_of(waiting, "SF", {})),
        }
    )
    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert by_source(meta, "change_feed_rows")["settlement_volumes"] == 48
    assert by_source(meta, "snapshot_rows")["settlement_volumes"] == 96
    assert meta["rows_inserted"] == 96
    assert len([r for r in read(store, SETTLEMENT_COST_HH) if str(r["settlement_date"]) == waiting]) == 96


def test_levy_restatement_fans_out_to_its_validity(publish, materialize, store) -> None:
    other_day = "2025-10-02"
    publish(
        {
            **BASE,
            "prices": csv(PRICES, *prices_of(DAY, "SF", {35: 80.0}), *prices_of(other_day, "SF", {})),
            "settlement_volumes": csv(
                VOLUMES, *day_of(MPAN, DAY, "SF", {35: 0.4}), *day_of(MPAN, other_day, "SF", {})
            ),
        }
    )
    assert materialize([settlement_cost_hh]).success
    # BSUOS restated from 3.0 to 4.0 for its whole (open) validity: both days change, every period.
    publish({"charges": csv(CHARGES, "BSUOS,,GBP_PER_MWH,4.0,2025-01-01,,,")})
    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert meta["rows_updated"] == 96
    r = row(read(store, SETTLEMENT_COST_HH), 35)
    assert r["non_energy_cost_gbp"] == pytest.approx(0.42 / 1000 * 4.0 + 0.042 + 0.005, abs=1e-9)


def test_deleted_volumes_delete_their_costs(publish, materialize, store) -> None:
    second = "1300000000007"  # 1x3 + 3x5 = 18; 18 % 11 % 10 = 7
    publish(
        {
            **BASE,
            "metering_points": csv(
                "mpan_core,gsp_group,line_loss_factor", f"{MPAN},_A,1.05", f"{second},_B,1.1"
            ),
            "settlement_volumes": csv(VOLUMES, *day_of(MPAN, DAY, "SF", {}), *day_of(second, DAY, "SF", {})),
        }
    )
    assert materialize([settlement_cost_hh]).success
    assert len(read(store, SETTLEMENT_COST_HH)) == 96
    # R1 for the date no longer carries the second MPAN (registration correction): its costs go.
    publish({"settlement_volumes": csv(VOLUMES, *day_of(MPAN, DAY, "R1", {}))})
    meta = metadata_of(materialize([settlement_cost_hh]), ["gold", "settlement_cost_hh"])
    assert meta["rows_deleted"] == 48
    assert {r["mpan_core"] for r in read(store, SETTLEMENT_COST_HH)} == {MPAN}


def test_clock_change_days_have_their_periods(publish, materialize, store) -> None:
    autumn, spring = "2025-10-26", "2026-03-29"
    publish(
        {
            **BASE,
            "prices": csv(PRICES, *prices_of(autumn, "SF", {}, n=50), *prices_of(spring, "SF", {}, n=46)),
            "settlement_volumes": csv(
                VOLUMES, *day_of(MPAN, autumn, "SF", {}, n=50), *day_of(MPAN, spring, "SF", {}, n=46)
            ),
        }
    )
    assert materialize([settlement_cost_hh]).success
    rows = read(store, SETTLEMENT_COST_HH)
    assert sum(str(r["settlement_date"]) == autumn for r in rows) == 50
    assert sum(str(r["settlement_date"]) == spring for r in rows) == 46
    # Standing charge spreads over N(d): 24p/50 per period on the autumn day.
    r = row(rows, 50, autumn)  # 23:30 GMT: GREEN band applies
    assert r["non_energy_cost_gbp"] == pytest.approx(
        0.105 / 1000 * 3 + 0.105 * 1 / 100 + 0.24 / 50, abs=1e-12
    )


def test_hh_margin_refuses_to_publish_while_the_gate_is_closed(publish, materialize, store) -> None:
    """hh_margin is published by the gate: materialized by hand while a stream has not consumed N, it
    fails naming who is behind and writes nothing; once every stream has consumed N it publishes."""
    from margin_pipeline.gold import HH_MARGIN

    publish({**BASE, "settlement_volumes": csv(VOLUMES, *day_of(MPAN, DAY, "SF", {}))})
    assert materialize([settlement_cost_hh]).success
    with pytest.raises(dg.Failure, match=r"the gate is closed: N=1: settlement 1, .*waiting for half_hourly"):
        materialize([ASSETS["hh_margin"]])
    assert store.version(HH_MARGIN) is None, "nothing was written"
    assert materialize([ASSETS[n] for n in ("hh_revenue", "monthly_day_ledger", "monthly_margin")]).success
    assert materialize([ASSETS["hh_margin"]]).success
