"""monthly_margin's for-each over months: one step per affected month, and backfills on the same path."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa
import pytest

from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import MONTHLY_MARGIN
from margin_pipeline.store.base import with_delete_flag
from margin_pipeline.streams.monthly.bridge import MARGIN_HISTORY
from margin_pipeline.streams.monthly.months import MARGIN_WATERMARK
from margin_pipeline.streams.shared.watermarks import read_watermarks
from margin_pipeline_tests.helpers import csv, metadata_of, rows_by_key

hh_revenue_asset = ASSETS["hh_revenue"]
monthly_day_ledger = ASSETS["monthly_day_ledger"]
monthly_margin_asset = ASSETS["monthly_margin"]
settlement_cost_hh = ASSETS["settlement_cost_hh"]

STREAMS = [settlement_cost_hh, hh_revenue_asset, monthly_day_ledger, monthly_margin_asset]
NODE = monthly_margin_asset.node_def.name
FLAT = "1300000000007"
SEPT, OCT = dt.date(2025, 9, 30), dt.date(2025, 10, 1)
VOLUMES = "mpan_core,settlement_date,settlement_period,run_type,kwh,quality"
PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"


def volumes(day: dt.date, run: str, kwh: float) -> list[str]:
    return [f"{FLAT},{day},{p},{run},{kwh},A" for p in range(1, 49)]


def prices(day: dt.date, run: str) -> list[str]:
    return [f"{day},{p},{run},50.0" for p in range(1, 49)]


FEEDS = {
    "metering_points": csv("mpan_core,gsp_group,line_loss_factor", f"{FLAT},_A,1.0"),
    "tariffs": csv("tariff_code,billing_grain", "STANDARD,MONTHLY"),
    "supply_agreements": csv(
        "account_id,mpan_core,tariff_code,supply_start,supply_end", f"ACC2,{FLAT},STANDARD,2025-09-01,"
    ),
    "tariff_rates": csv(
        "tariff_code,gsp_group,valid_from,valid_to,unit_rate_p_per_kwh,standing_charge_p_per_day",
        "STANDARD,_A,2025-08-31T23:00:00Z,2025-12-31T00:00:00Z,25.0,51.0",
    ),
    "charges": csv(
        "charge_code,gsp_group,unit,rate,valid_from,valid_to,band_start,band_end",
        "STANDING,_A,P_PER_DAY,24.0,2025-01-01,,,",
    ),
    "prices": csv(PRICES, *prices(SEPT, "SF"), *prices(OCT, "SF")),
    "settlement_volumes": csv(VOLUMES, *volumes(SEPT, "SF", 0.1), *volumes(OCT, "SF", 0.1)),
}


def month_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    """The mapping keys of the per-month steps the run executed."""
    prefix = f"{NODE}.margin_month["
    return {
        e.step_key[len(prefix) : -1]
        for e in result.all_events
        if e.is_step_success and e.step_key and e.step_key.startswith(prefix)
    }


def test_each_affected_month_is_its_own_step(publish, materialize, store) -> None:
    publish(FEEDS)
    first = materialize(STREAMS)
    meta = metadata_of(first, ["gold", "monthly_margin"])
    assert (meta["mode"], meta["months"]) == ("full", ["2025-09-01", "2025-10-01"])
    assert month_steps(first) == {"2025_09", "2025_10"}
    before = rows_by_key(store, MONTHLY_MARGIN)
    assert set(before) == {("ACC2", dt.date(2025, 9, 1)), ("ACC2", dt.date(2025, 10, 1))}

    # An R1 for 1 October only: the plan fans out to October alone, September is not touched.
    publish(
        {
            "prices": csv(PRICES, *prices(OCT, "R1")),
            "settlement_volumes": csv(VOLUMES, *volumes(OCT, "R1", 0.2)),
        }
    )
    second = materialize(STREAMS)
    meta = metadata_of(second, ["gold", "monthly_margin"])
    assert (meta["mode"], meta["months"], meta["rows_updated"]) == ("incremental", ["2025-10-01"], 1)
    assert month_steps(second) == {"2025_10"}
    after = rows_by_key(store, MONTHLY_MARGIN)
    assert after[("ACC2", dt.date(2025, 9, 1))] == before[("ACC2", dt.date(2025, 9, 1))]
    assert after[("ACC2", dt.date(2025, 10, 1))]["kwh"] == pytest.approx(9.6, abs=1e-9)  # 48 x 0.2

    # Restatements of both days: two month steps, each merging only its own month's accounts.
    publish(
        {
            "prices": csv(PRICES, *prices(SEPT, "R1"), *prices(OCT, "R2")),
            "settlement_volumes": csv(VOLUMES, *volumes(SEPT, "R1", 0.3), *volumes(OCT, "R2", 0.4)),
        }
    )
    third = materialize(STREAMS)
    meta = metadata_of(third, ["gold", "monthly_margin"])
    assert (meta["months"], meta["rows_updated"], meta["rows_deleted"]) == (
        ["2025-09-01", "2025-10-01"],
        2,
        0,
    )
    assert month_steps(third) == {"2025_09", "2025_10"}
    kwh = {k[1].month: r["kwh"] for k, r in rows_by_key(store, MONTHLY_MARGIN).items()}
    assert kwh == pytest.approx({9: 48 * 0.3, 10: 48 * 0.4}, abs=1e-9)

    # Nothing changed since: no month step runs and the watermarks stay.
    replay = materialize(STREAMS)
    meta = metadata_of(replay, ["gold", "monthly_margin"])
    assert (meta["mode"], meta["months"], meta["rows_read"]) == ("skipped (no changes)", [], 0)
    assert month_steps(replay) == set()


def test_backfill_recomputes_whole_months_on_the_same_path(publish, materialize, store) -> None:
    publish(FEEDS)
    assert materialize(STREAMS).success
    good = rows_by_key(store, MONTHLY_MARGIN)
    september = ("ACC2", dt.date(2025, 9, 1))
    damaged = {**good[september], "margin_gbp": 999.0}
    store.merge(
        MONTHLY_MARGIN,
        with_delete_flag(
            pa.Table.from_pylist([damaged], MONTHLY_MARGIN.schema), MONTHLY_MARGIN, delete=False
        ),
    )
    watermarks = read_watermarks(store, MARGIN_WATERMARK)

    result = materialize(
        [monthly_margin_asset], {NODE: {"backfill_from": "2025-09", "backfill_to": "2025-09"}}
    )
    meta = metadata_of(result, ["gold", "monthly_margin"])
    assert (meta["mode"], meta["months"]) == ("backfill 2025-09..2025-09", ["2025-09-01"])
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_deleted"]) == (0, 1, 0)
    assert month_steps(result) == {"2025_09"}
    assert rows_by_key(store, MONTHLY_MARGIN) == good
    after = read_watermarks(store, MARGIN_WATERMARK)
    assert (after.versions, after.substrate_version) == (watermarks.versions, watermarks.substrate_version), (
        "a backfill consumes no change feed"
    )
    recorded = {MONTHLY_MARGIN, MARGIN_HISTORY}
    assert after.outputs == {spec.name: store.version(spec) for spec in recorded}, (
        "its write is the last good one"
    )

    with pytest.raises(ValueError, match="backfill_to 2025-08 is before backfill_from 2025-09"):
        materialize([monthly_margin_asset], {NODE: {"backfill_from": "2025-09", "backfill_to": "2025-08"}})
