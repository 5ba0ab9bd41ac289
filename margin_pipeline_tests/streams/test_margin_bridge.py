"""gold/margin_bridge: hand-worked movements by cause, replays, rebuilds and backfills.

The substrate of every case (1 October 2025, one day, RF):

- ACC1 on AGILE (HH) and ACC2 on STANDARD (MONTHLY), 48 x 0.1 kWh each, line loss 1.0;
- price 50 GBP/MWh every period; charges: STANDING 24 p/day and LEVY 10 GBP/MWh;
- STANDARD: unit 25.0 p/kWh, standing 51.0 p/day (incl. VAT); AGILE 20.0 p/kWh, 50.0 p/day.

ACC2's margin at the start:
    revenue = (4.8 x 25.0 + 51.0) / 100 / 1.05     = 171 / 105   = 1.628571...
    cost    = 4.8 / 1000 x 50 + 0.24 + 4.8 / 1000 x 10 = 0.24 + 0.24 + 0.048 = 0.528
"""

from __future__ import annotations

import datetime as dt

import pytest

from margin_pipeline.cli import render_explanation
from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import MARGIN_BRIDGE, MONTHLY_MARGIN
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly.bridge import (
    CAUSES,
    HALF_HOURS,
    MARGIN_HISTORY,
    _DayTallies,
    _Reads,
    _Scope,
    month_chunks,
)
from margin_pipeline.streams.monthly.months import MARGIN_WATERMARK
from margin_pipeline.streams.monthly.rules import tallies
from margin_pipeline.streams.shared.watermarks import read_watermarks
from margin_pipeline_tests.faults import patched
from margin_pipeline_tests.helpers import csv, metadata_of, read
from margin_pipeline_tests.streams.test_monthly import DAY, FEEDS, FLAT, HH, VOLUMES, day_of

STREAMS = [ASSETS[n] for n in ("settlement_cost_hh", "hh_revenue", "monthly_day_ledger", "monthly_margin")]
LATE = "1400000000001"  # volumes from the start, a metering point, no agreement until it arrives late
CHARGES = "charge_code,gsp_group,unit,rate,valid_from,valid_to,band_start,band_end"
PRICES = "settlement_date,settlement_period,run_type,price_gbp_per_mwh"
AGREEMENTS = "account_id,mpan_core,tariff_code,supply_start,supply_end"
START = {
    **FEEDS,
    "metering_points": csv(
        "mpan_core,gsp_group,line_loss_factor", f"{HH},_A,1.0", f"{FLAT},_A,1.0", f"{LATE},_A,1.0"
    ),
    "charges": csv(
        CHARGES, "STANDING,_A,P_PER_DAY,24.0,2025-01-01,,,", "LEVY,_A,GBP_PER_MWH,10.0,2025-01-01,,,"
    ),
    "settlement_volumes": csv(VOLUMES, *day_of(HH, "RF"), *day_of(FLAT, "RF"), *day_of(LATE, "RF")),
}
OCTOBER = DAY.replace(day=1)


def bridge(store, to_version: int | None = None) -> dict[tuple[str, str], float]:
    """``{(account, cause): delta_gbp}`` of the bridge rows (of one ``to_version`` when given)."""
    return {
        (r["account_id"], r["cause"]): r["delta_gbp"]
        for r in read(store, MARGIN_BRIDGE)
        if to_version is None or r["to_version"] == to_version
    }


def margins(store) -> dict[str, float]:
    return {r["account_id"]: r["margin_gbp"] for r in read(store, MONTHLY_MARGIN)}


def restated_flat_volumes() -> str:
    """A DF publication of the date: HH unchanged, FLAT doubled to 0.2 kWh a period, LATE unchanged."""
    flat = [f"{FLAT},{DAY},{p},DF,0.2,A" for p in range(1, 49)]
    return csv(VOLUMES, *day_of(HH, "DF"), *flat, *day_of(LATE, "DF"))


@pytest.fixture
def started(publish, materialize, store) -> int:
    """The start consumed by the monthly stream: its first version writes no bridge row."""
    n = publish(START)
    assert materialize(STREAMS).success
    assert read(store, MARGIN_BRIDGE) == []
    return n


def test_volume_restatement_alone_is_all_volumes(started, publish, materialize, store) -> None:
    before = margins(store)
    n = publish({"settlement_volumes": restated_flat_volumes()})
    result = materialize(STREAMS)
    assert result.success
    # ACC2: kWh 4.8 -> 9.6. revenue +4.8 x 25.0 / 105 = +120/105; cost: energy +4.8/1000 x 50 = +0.24,
    # LEVY +4.8/1000 x 10 = +0.048 (STANDING is per day). Movement = 120/105 - 0.288 = 0.854857...
    # ACC1's kWh and every price are unchanged (only its run moved, RF -> DF): no row.
    assert bridge(store, n) == pytest.approx({("ACC2", "volumes"): 120 / 105 - 0.288}, abs=1e-9)
    assert margins(store)["ACC2"] - before["ACC2"] == pytest.approx(120 / 105 - 0.288, abs=1e-9)
    [row] = read(store, MARGIN_BRIDGE)
    assert (row["month"], row["from_version"], row["to_version"]) == (OCTOBER, started, n)
    shown = metadata_of(result, ["gold", "margin_bridge"])
    assert (shown["account_months_moved"], shown["bridge_rows"]) == (1, 1)
    assert "| ACC2 | 2025-10 | +0.854857 | +0.854857 |" in shown["movements"]


def test_price_correction_alone_is_all_prices(started, publish, materialize, store) -> None:
    prices = [f"{DAY},{p},RF,{60.0 if p == 1 else 50.0}" for p in range(1, 49)]
    n = publish({"prices": csv(PRICES, *prices)})
    assert materialize(STREAMS).success
    # Period 1: 0.1 kWh at +10 GBP/MWh = +0.001 GBP of cost, so -0.001 of margin, for ACC1 and ACC2.
    # LATE's cost moved too, but it has no agreement, so no account-month.
    assert bridge(store, n) == pytest.approx(
        {("ACC1", "prices"): -0.001, ("ACC2", "prices"): -0.001}, abs=1e-9
    )


def test_states_reading_the_same_versions_share_their_day_tallies(started, publish, store, spark) -> None:
    """A price correction moves no volume and no revenue: the state with the new prices (S_2) takes
    the volumes' and revenue's day tallies of S_0 and computes only its cost anew; each state's
    tallies are those of its own half-hourly rows all the same."""
    prices = [f"{DAY},{p},RF,{60.0 if p == 1 else 50.0}" for p in range(1, 49)]
    n = publish({"prices": csv(PRICES, *prices)})
    reads = _Reads(spark, store, started, n, "test")
    try:
        scope = _Scope([OCTOBER], None, None)
        tallied = _DayTallies(reads, scope, [0, 2])
        tag = tallied.tag
        assert tag[(0, "settlement_volumes")] == tag[(2, "settlement_volumes")]
        assert tag[(0, "hh_revenue")] == tag[(2, "hh_revenue")]
        assert tag[(0, "settlement_cost_hh")] != tag[(2, "settlement_cost_hh")]
        assert len(set(tag.values())) == 4
        for k in (0, 2):
            state = reads.state(k)
            own = tallies({source: (rows_of(state, scope), 0) for source, rows_of in HALF_HOURS.items()})
            assert by_day(tallied.of(k)) == pytest.approx(by_day(own), abs=1e-12), k
        cost = [by_day(tallied.of(k))[(HH, DAY, "cost_total_gbp")] for k in (0, 2)]
        assert cost[1] - cost[0] == pytest.approx(0.001, abs=1e-12)  # period 1: 0.1 kWh at +10 GBP/MWh
    finally:
        reads.close()


def by_day(frame) -> dict[tuple[str, dt.date, str], float]:
    """``{(mpan_core, settlement_date, column): value}`` of a frame of day tallies."""
    values = {}
    for row in frame.toArrow().to_pylist():
        day = (row.pop("mpan_core"), row.pop("settlement_date"))
        values.update({(*day, column): value for column, value in row.items()})
    return values


def test_levy_restated_on_a_date_whose_volumes_changed_splits_in_order(
    started, publish, materialize, store, data_root
) -> None:
    levy = "LEVY,_A,GBP_PER_MWH,20.0,2025-01-01,,,"
    n = publish({"settlement_volumes": restated_flat_volumes(), "charges": csv(CHARGES, levy)})
    assert materialize(STREAMS).success
    # Volumes first, under the old levy (10):  ACC2 +120/105 - 0.24 - 0.048        = +0.854857...
    # then charges, on the new volumes (9.6 kWh): LEVY 10 -> 20 adds 9.6/1000 x 10  = -0.096
    # ACC1: its 4.8 kWh under the new levy: -4.8/1000 x 10                         = -0.048
    expected = {
        ("ACC2", "volumes"): 120 / 105 - 0.288,
        ("ACC2", "charges"): -0.096,
        ("ACC1", "charges"): -0.048,
    }
    assert bridge(store, n) == pytest.approx(expected, abs=1e-9)
    # The rows of an account-month add up to its movement.
    assert margins(store)["ACC2"] == pytest.approx(171 / 105 - 0.528 + 120 / 105 - 0.288 - 0.096, abs=1e-9)

    # margin-pipeline explain: the margin before and after, the causes in order, the runs held.
    text = render_explanation(data_root, "ACC2", OCTOBER)
    before, after = 171 / 105 - 0.528, 171 / 105 - 0.528 + 120 / 105 - 0.384
    assert f"ACC2 2025-10: margin_gbp now {after:.6f}" in text
    assert f"N={started}".ljust(20) + f"{before:>14.6f}" in text
    assert f"N={started} -> N={n}: {after - before:+.6f} GBP" in text
    causes = [line.split() for line in text.splitlines() if line.startswith("  ") and "runs" not in line]
    assert causes == [
        ["volumes", f"{120 / 105 - 0.288:+.6f}"],
        ["prices", "+0.000000"],
        ["charges", "-0.096000"],
        ["rates", "+0.000000"],
        ["registrations", "+0.000000"],
    ]
    assert "  runs held: RF x1 -> DF x1" in text


def test_late_agreement_is_registrations(started, publish, materialize, store) -> None:
    assert "ACC3" not in margins(store)
    n = publish({"supply_agreements": csv(AGREEMENTS, f"ACC3,{LATE},STANDARD,{DAY},")})
    assert materialize(STREAMS).success
    # ACC3 appears (a move from 0): its day on STANDARD, (4.8 x 25 + 51)/105 - 0.528.
    assert bridge(store, n) == pytest.approx({("ACC3", "registrations"): 171 / 105 - 0.528}, abs=1e-9)
    assert margins(store)["ACC3"] == pytest.approx(171 / 105 - 0.528, abs=1e-9)


def test_replay_and_rebuild_at_the_same_version_write_nothing(started, publish, materialize, store) -> None:
    publish({"settlement_volumes": restated_flat_volumes()})
    assert materialize(STREAMS).success
    version = store.version(MARGIN_BRIDGE)
    assert materialize(STREAMS).success  # nothing new consumed
    rebuild = {"full_rebuild": True}
    assert materialize(STREAMS, {n: rebuild for n in ("gold__monthly_margin",)}).success
    assert store.version(MARGIN_BRIDGE) == version


def test_backfill_rebuilds_the_months_rows_from_the_recorded_history(
    started, publish, materialize, store
) -> None:
    first = publish({"settlement_volumes": restated_flat_volumes()})
    assert materialize(STREAMS).success
    second = publish({"supply_agreements": csv(AGREEMENTS, f"ACC3,{LATE},STANDARD,{DAY},")})
    assert materialize(STREAMS).success
    kept = {
        (r["to_version"], r["account_id"], r["cause"]): r["delta_gbp"] for r in read(store, MARGIN_BRIDGE)
    }
    assert {(v, a) for v, a, _ in kept} == {(first, "ACC2"), (second, "ACC3")}
    # A lost row and a wrong one: the backfill of September and October puts both right from the two
    # recorded pairs.
    store.update(MARGIN_BRIDGE, {"delta_gbp": "99.0"}, f"to_version = {first}")
    store.update(MARGIN_BRIDGE, {"cause": "'prices'"}, f"to_version = {second}")
    backfill = {"backfill_from": "2025-09", "backfill_to": "2025-10"}
    result = materialize(STREAMS, {"gold__monthly_margin": backfill})
    assert result.success
    rebuilt = {
        (r["to_version"], r["account_id"], r["cause"]): r["delta_gbp"] for r in read(store, MARGIN_BRIDGE)
    }
    assert rebuilt == pytest.approx(kept, abs=1e-9)
    shown = metadata_of(result, ["gold", "margin_bridge"])
    # Each pair is explained only for the months whose inputs it changed: the first changed the
    # volumes of 1 October, the second added an agreement from 1 October on. September, for neither.
    assert (shown["pairs_rebuilt"], shown["pair_months_unchanged"]) == (2, 2)


def test_a_failed_bridge_leaves_the_margin_published_and_the_next_run_writes_it(
    started, publish, materialize, store
) -> None:
    """The bridge is written after monthly_margin's commit, so hh_margin need not wait for it; a bridge
    step that fails leaves its pair recorded, and the next run's bridge step explains it."""
    n = publish({"settlement_volumes": restated_flat_volumes()})

    def failing(original):
        def merge(self, spec, *args, **kwargs):
            if spec.name == MARGIN_BRIDGE.name:
                raise ValueError("injected: the bridge's write failed")
            return original(self, spec, *args, **kwargs)

        return merge

    with patched(DeltaRsStore, "merge", failing), pytest.raises(Exception, match="injected"):
        materialize(STREAMS)
    assert read_watermarks(store, MARGIN_WATERMARK).substrate_version == n, "monthly_margin committed N"
    assert margins(store)["ACC2"] == pytest.approx(171 / 105 - 0.528 + 120 / 105 - 0.288, abs=1e-9)
    assert bridge(store, n) == {}
    assert [r["explained"] for r in read(store, MARGIN_HISTORY) if r["to_version"] == n] == [False]

    margin_version = store.version(MONTHLY_MARGIN)
    result = materialize(STREAMS)  # nothing new to consume: the bridge step explains the recorded pair
    assert result.success
    assert store.version(MONTHLY_MARGIN) == margin_version
    assert bridge(store, n) == pytest.approx({("ACC2", "volumes"): 120 / 105 - 0.288}, abs=1e-9)
    assert [r["explained"] for r in read(store, MARGIN_HISTORY) if r["to_version"] == n] == [True]
    shown = metadata_of(result, ["gold", "margin_bridge"])
    assert (shown["from_version"], shown["to_version"], shown["bridge_rows"]) == (str(started), str(n), 1)

    bridge_version = store.version(MARGIN_BRIDGE)
    result = materialize(STREAMS)  # explained: the next run has nothing to write
    assert metadata_of(result, ["gold", "margin_bridge"])["mode"] == "skipped (no changes)"
    assert store.version(MARGIN_BRIDGE) == bridge_version


def test_a_pair_spanning_many_dates_is_explained_a_few_months_at_a_time() -> None:
    jan, feb, mar = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)
    assert month_chunks([mar, jan, feb], None) == [[jan], [feb], [mar]]  # whole months: 31, 28, 31 days
    assert month_chunks([jan, feb, mar], [dt.date(2026, 1, 5), dt.date(2026, 2, 9), mar]) == [[jan, feb, mar]]
    forty = [jan + dt.timedelta(days=i) for i in range(40)]  # 31 in January, 9 in February, none in March
    assert month_chunks([jan, feb, mar], forty) == [[jan], [feb, mar]]


def test_causes_are_the_contracts_classes_in_order() -> None:
    assert [c for c, _ in CAUSES] == ["volumes", "prices", "charges", "rates", "registrations"]
