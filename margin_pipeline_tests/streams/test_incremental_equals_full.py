"""Property: for any publication sequence, the incremental outputs equal a full recompute.

Each case draws a scenario (meters, a window around a clock change, restatement
offsets), drives its publication timeline through ingest in random batches,
runs the streams incrementally at random points (so change ranges span one or
many substrate versions), injects stale and identical re-deliveries, then
recomputes every output in full from a copy of the substrate and compares keys
and values (1e-6 GBP). The generator's timeline brings restatements (SF..RF),
deletes (registration corrections), late metering points, a levy restatement,
HH rate corrections and mid-month tariff switches within these 26-day windows.

On top of the generator's own events, corrections that are sure to touch data
already computed are injected at random points: a whole day-ahead rate file
re-issued after that day's volumes exist, every charge restated, every line loss
factor corrected, and an equal-rank price re-delivery with one price changed.

Every time the monthly stream consumes a new substrate version, the margin bridge's rows of that
version add up, per account-month, to the movement of its ``margin_gbp`` since the version it had
consumed before (1e-6), and no account-month that did not move has a row.

Finally the last change range is replayed (watermarks rewound): no published
table (nor the margin bridge) may get a new commit, so no new change-feed rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import shutil
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from margin_pipeline.defs.streams.assets import ASSETS
from margin_pipeline.gold import GOLD, MARGIN_BRIDGE
from margin_pipeline.settings import DataRoot
from margin_pipeline.store.base import with_delete_flag
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.streams.monthly import bridge
from margin_pipeline.streams.monthly.months import MARGIN_WATERMARK
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.shared.watermarks import OUTPUT_PREFIX, STREAM_WATERMARKS, read_watermarks
from margin_pipeline.substrate.ingest import ingest, pending_files
from margin_pipeline.substrate.versions import record_substrate_version
from margin_pipeline.synthetic import Scenario, generate_history
from margin_pipeline_tests.helpers import assert_same_rows, full_recompute, rows_by_key, stream_resources

hh_margin_asset = ASSETS["hh_margin"]
hh_revenue_asset = ASSETS["hh_revenue"]
monthly_day_ledger = ASSETS["monthly_day_ledger"]
monthly_margin_asset = ASSETS["monthly_margin"]
settlement_cost_hh = ASSETS["settlement_cost_hh"]

ASSETS = [settlement_cost_hh, hh_revenue_asset, monthly_day_ledger, monthly_margin_asset, hh_margin_asset]
OUTPUTS = {**GOLD, "monthly_day_ledger": DAY_LEDGER}
WINDOWS = [dt.date(2025, 10, 5), dt.date(2026, 3, 10), dt.date(2025, 12, 20)]  # autumn, spring, year end


def run_streams(store: DeltaRsStore) -> dg.ExecuteInProcessResult:
    resources = stream_resources(store)
    result = dg.materialize(ASSETS, resources=resources)
    assert result.success
    return result


def snapshot(store: DeltaRsStore, name: str) -> dict[tuple, dict]:
    return rows_by_key(store, OUTPUTS[name])


def assert_bridge_explains(store: DeltaRsStore, before: dict[tuple, dict], explained: set[int]) -> None:
    """The bridge rows of the version the monthly margin now reflects sum to each account-month's
    movement since ``before`` (rows of a version explained earlier are left as they were); the first
    version consumed has none."""
    n = read_watermarks(store, MARGIN_WATERMARK).substrate_version
    after = snapshot(store, "monthly_margin")
    rows = rows_by_key(store, MARGIN_BRIDGE)
    if n is None or n in explained:
        return
    first = not explained
    explained.add(n)
    moved = {
        key: movement
        for key in {*before, *after}
        if not first and abs(movement := _margin(after, key) - _margin(before, key)) > 1e-6
    }
    sums: dict[tuple, float] = {}
    for (account, month, to_version, _cause), row in rows.items():
        if to_version == n:
            sums[(account, month)] = sums.get((account, month), 0.0) + row["delta_gbp"]
    assert set(sums) == set(moved), (n, sorted(set(sums) ^ set(moved)))
    for key, movement in moved.items():
        assert abs(sums[key] - movement) <= 1e-6, (n, key, sums[key], movement)


def assert_chunks_explain_alike(
    store: DeltaRsStore, spark, monkeypatch: pytest.MonkeyPatch, expect_one: bool
) -> None:
    """A recorded pair whose bridge rows span two months, explained again a month at a time
    (``bridge.CHUNK_DATES`` 1), gives the rows its run wrote in one query."""
    rows = rows_by_key(store, MARGIN_BRIDGE)
    months: dict[int, set] = {}
    for _account, month, to_version, _cause in rows:
        months.setdefault(to_version, set()).add(month)
    history = {r["to_version"]: r for r in rows_by_key(store, bridge.MARGIN_HISTORY).values()}
    spanning = [history[v] for v, found in sorted(months.items()) if len(found) > 1 and v in history]
    if not spanning:
        assert not expect_one, "the year end's scenario should move two months in one pair"
        return
    monkeypatch.setattr(bridge, "CHUNK_DATES", 1)
    _mode, again, _read = bridge.explain_pair(spark, store, spanning[0], "chunks")
    wrote = {k: r["delta_gbp"] for k, r in rows.items() if k[2] == spanning[0]["to_version"]}
    got = {
        (r["account_id"], r["month"], r["to_version"], r["cause"]): r["delta_gbp"] for r in again.to_pylist()
    }
    assert got == pytest.approx(wrote, abs=1e-9)


def _margin(rows: dict[tuple, dict], key: tuple) -> float:
    return rows[key]["margin_gbp"] if key in rows else 0.0


def corrected(path: Path, rng: random.Random) -> tuple[str, str] | None:
    """A correction of an applied file that is sure to change computed outputs, or None."""
    feed = path.parent.name
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows:
        return None
    if feed == "tariff_rates":
        for row in rows:
            row["unit_rate_p_per_kwh"] = f"{float(row['unit_rate_p_per_kwh']) + 1.0:.4f}"
    elif feed == "charges":
        for row in rows:
            row["rate"] = f"{float(row['rate']) * 1.01:.4f}"
    elif feed == "metering_points":
        for row in rows:
            row["line_loss_factor"] = f"{min(1.2, float(row['line_loss_factor']) + 0.001):.3f}"
    elif feed == "prices":
        day = rng.choice(sorted({r["settlement_date"] for r in rows}))
        rows = [r for r in rows if r["settlement_date"] == day]
        changed = rng.choice(rows)
        changed["price_gbp_per_mwh"] = f"{float(changed['price_gbp_per_mwh']) + 7.5:.2f}"
    else:
        return None
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return feed, out.getvalue()


def publication_days(landing: Path) -> list[list[Path]]:
    """Landing files grouped by as-of date, in publication order."""
    days: dict[str, list[Path]] = {}
    for path in sorted(landing.rglob("*.csv")):
        days.setdefault(path.name.split("_")[0], []).append(path)
    return [days[d] for d in sorted(days)]


@pytest.mark.slow
@pytest.mark.parametrize("case", [0, 1, 2])
def test_incremental_equals_full_recompute(
    case: int, tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(1000 + case)
    r1 = rng.randint(1, 3)
    scenario = Scenario(
        meters=rng.randint(5, 8),
        days=26,
        seed=rng.randint(1, 10_000),
        start=WINDOWS[case],
        restatement_offsets={"R1": r1, "R2": r1 + rng.randint(2, 4), "R3": r1 + 7, "RF": r1 + 12},
    )
    generated = DataRoot(root=str(tmp_path / "generated"))
    generate_history(generated.landing, scenario)
    root = DataRoot(root=str(tmp_path / "incremental"))
    store = DeltaRsStore(lake_root=str(root.lake))

    days = publication_days(generated.landing)
    applied: list[Path] = []
    position, cycles, corrections = 0, 0, 0
    explained: set[int] = set()
    while position < len(days):
        batch = [f for day in days[position : position + rng.randint(1, 4)] for f in day]
        position += len(batch) and len({f.name.split("_")[0] for f in batch})
        if applied and rng.random() < 0.4:
            # A re-delivery: an old file again (stale, or identical if nothing replaced it since).
            batch.append(rng.choice(applied))
        for source in batch:
            target = root.landing / source.parent.name / f"{len(applied):04d}_{source.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
            applied.append(source)
        # Corrections of files applied at least two batches ago, so their day's volumes exist.
        for source in rng.sample(applied[: max(0, len(applied) - 8)], k=min(2, max(0, len(applied) - 8))):
            correction = corrected(source, rng)
            if correction is not None:
                feed, text = correction
                target = root.landing / feed / f"{len(applied):04d}_correction_{source.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                corrections += 1
        report = ingest(root, store, pending_files(root))
        assert not report.rejected, [str(f.rejection) for f in report.rejected]
        if report.changed:
            record_substrate_version(store, f"batch-{position}")
        last = position >= len(days)
        if last or rng.random() < 0.35:
            watermarks_before_last = store.version(STREAM_WATERMARKS)
            margin_before = snapshot(store, "monthly_margin")
            run_streams(store)
            assert_bridge_explains(store, margin_before, explained)
            cycles += 1
    assert cycles >= 2
    assert corrections >= 3
    assert rows_by_key(store, MARGIN_BRIDGE), "the scenario should move some monthly margin"

    assert_chunks_explain_alike(store, spark, monkeypatch, expect_one=case == 2)

    full = full_recompute(root.lake, tmp_path / "full" / "lake")

    for name in OUTPUTS:
        assert_same_rows(snapshot(store, name), snapshot(full, name), name)
    assert snapshot(full, "hh_margin"), "the scenario should publish some half-hourly margin"
    assert snapshot(full, "monthly_margin"), "the scenario should publish some monthly margin"

    # Replay the last range: rewind the consumed positions (not the outputs' last good versions,
    # which would read as a run that never committed), run again, and nothing may be written.
    versions = {
        name: store.version(spec) for name, spec in {**OUTPUTS, "margin_bridge": MARGIN_BRIDGE}.items()
    }
    positions = store.read_arrow(STREAM_WATERMARKS, version=watermarks_before_last)
    positions = positions.filter(pc.invert(pc.starts_with(positions.column("source"), OUTPUT_PREFIX)))
    store.merge(STREAM_WATERMARKS, with_delete_flag(positions, STREAM_WATERMARKS, delete=False))
    result = run_streams(store)
    assert {n: store.version(s) for n, s in {**OUTPUTS, "margin_bridge": MARGIN_BRIDGE}.items()} == versions
    modes = {
        e.asset_key.to_user_string(): e.materialization.metadata["mode"].value
        for e in result.get_asset_materialization_events()
    }
    assert "incremental" in modes.values() or "full" in modes.values(), modes
