"""The store contract, run against every implementation.

delta-rs runs everywhere, on either engine. delta-spark runs only on local Spark
(``MARGIN_PIPELINE_ENGINE=spark``) with the Delta jars on the classpath (set
MARGIN_PIPELINE_DELTA_JARS); elsewhere it is reported as skipped.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.fs
import pytest

from margin_pipeline.engines import SparkEngine
from margin_pipeline.store import DeltaStore, MergeOutcome, StaleWatermarkError, TableSpec
from margin_pipeline.store.base import to_arrow, tombstones, with_delete_flag
from margin_pipeline.store.delta_rs import DeltaRsStore
from margin_pipeline.store.delta_spark import DELTA_JARS_ENV, DeltaSparkStore, delta_jars

SPEC = TableSpec(
    name="test/readings",
    schema=pa.schema(
        [
            pa.field("meter", pa.string(), nullable=False),
            pa.field("day", pa.date32(), nullable=False),
            pa.field("kwh", pa.float64()),
            pa.field("note", pa.string()),
        ]
    ),
    key=("meter", "day"),
    partition_by=("day",),
)
D1, D2 = dt.date(2025, 10, 1), dt.date(2025, 10, 2)


def rows(*records: tuple[str, dt.date, float | None, str | None]) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(SPEC.schema.names, r, strict=True)) for r in records], schema=SPEC.schema
    )


def upsert(*records: tuple[str, dt.date, float | None, str | None]) -> pa.Table:
    return with_delete_flag(rows(*records), SPEC, delete=False)


@pytest.fixture(params=["delta_rs", "delta_spark"])
def impl(request: pytest.FixtureRequest, tmp_path: Path, engine: SparkEngine, spark) -> DeltaStore:
    if request.param == "delta_rs":
        return DeltaRsStore(lake_root=str(tmp_path / "lake"))
    if engine.engine != "spark" or not delta_jars():
        pytest.skip(
            "delta-spark needs local Spark with the Delta jars on the classpath (Maven-only): "
            f"run with MARGIN_PIPELINE_ENGINE=spark and {DELTA_JARS_ENV} set"
        )
    return DeltaSparkStore(lake_root=str(tmp_path / "lake"))


def snapshot(store: DeltaStore, spark, version: int | None = None) -> dict[tuple[str, dt.date], tuple]:
    frame = store.read(spark, SPEC, version=version)
    return {(r.meter, r.day): (r.kwh, r.note) for r in frame.collect()}


def change_rows(store: DeltaStore, spark, after: int, up_to: int) -> list[tuple[str, str, dt.date, float]]:
    feed = store.read_changes(spark, SPEC, after, up_to)
    rows = sorted((r._change_type, r.meter, r.day, r.kwh) for r in feed.frame.collect())
    assert feed.rows == len(rows)
    return rows


def test_missing_table_has_no_version(impl: DeltaStore) -> None:
    assert impl.version(SPEC) is None


def test_ensure_table_creates_empty_table_with_change_feed(impl: DeltaStore, spark) -> None:
    version = impl.ensure_table(SPEC)
    assert impl.ensure_table(SPEC) == version  # idempotent
    assert snapshot(impl, spark) == {}
    assert impl.read(spark, SPEC).columns == SPEC.schema.names


def test_merge_inserts_updates_only_changed_rows_and_deletes_tombstones(impl: DeltaStore, spark) -> None:
    first = impl.merge(SPEC, upsert(("a", D1, 1.0, "x"), ("b", D1, 2.0, None), ("c", D2, 3.0, "z")))
    assert (first.inserted, first.updated, first.deleted) == (3, 0, 0)

    # "a" unchanged, "b" within float tolerance (not a change), "c" changed, "d" new.
    second = impl.merge(
        SPEC,
        upsert(("a", D1, 1.0, "x"), ("b", D1, 2.0 + 1e-12, None), ("c", D2, 3.5, "z"), ("d", D2, 4.0, None)),
    )
    assert (second.inserted, second.updated, second.deleted) == (1, 1, 0)
    assert change_rows(impl, spark, first.version, second.version) == [
        ("insert", "d", D2, 4.0),
        ("update_postimage", "c", D2, 3.5),
        ("update_preimage", "c", D2, 3.0),
    ]

    keys = pa.table({"meter": ["a", "zz"], "day": pa.array([D1, D1], pa.date32())})
    third = impl.merge(SPEC, tombstones(keys, SPEC))
    assert (third.inserted, third.updated, third.deleted) == (0, 0, 1)
    assert snapshot(impl, spark) == {("b", D1): (2.0, None), ("c", D2): (3.5, "z"), ("d", D2): (4.0, None)}


def test_publish_makes_the_scope_hold_the_desired_rows_and_leaves_the_rest(impl: DeltaStore, spark) -> None:
    """Within the scope (here the meters a and b of D1): desired rows merged, held rows it lacks
    deleted; rows outside it (c on D1, every row of D2) kept though desired does not hold them."""
    from pyspark.sql import functions as F

    held = impl.merge(
        SPEC, upsert(("a", D1, 1.0, "x"), ("b", D1, 2.0, None), ("c", D1, 3.0, None), ("a", D2, 4.0, None))
    )
    desired = spark.createDataFrame(
        [("a", D1, 1.5, "x"), ("n", D1, 9.0, None)], "meter string, day date, kwh double, note string"
    ).withColumn("extra", F.lit(1))
    scope = spark.createDataFrame([("a", D1), ("b", D1), ("n", D1)], "meter string, day date")
    outcome = impl.publish(SPEC, desired, scope.union(scope), ["meter", "day"])
    assert (outcome.inserted, outcome.updated, outcome.deleted) == (1, 1, 1)
    assert outcome.keys == 3, "the scope's distinct keys"
    assert outcome.where == f"day IN ('{D1}')", "the partitions the scope's keys name"
    assert snapshot(impl, spark) == {
        ("a", D1): (1.5, "x"),
        ("n", D1): (9.0, None),
        ("c", D1): (3.0, None),
        ("a", D2): (4.0, None),
    }
    # With no scope, every key: what desired lacks goes.
    everything = impl.publish(SPEC, desired.where("meter = 'a'"), None, SPEC.key)
    assert (everything.inserted, everything.updated, everything.deleted) == (0, 0, 3)
    assert everything.keys == 1, "without a scope, the desired rows"
    assert everything.where is None, "without a scope, every partition"
    assert snapshot(impl, spark) == {("a", D1): (1.5, "x")}
    assert impl.publish(SPEC, desired.where("meter = 'a'"), None, SPEC.key).version == everything.version
    assert held.version < everything.version


@pytest.mark.parametrize("store_class", [DeltaRsStore, DeltaSparkStore])
def test_rows_computed_on_the_client_reach_the_engine_whole(
    store_class: type[DeltaStore], tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``frame``: Arrow rows as a DataFrame, small ones and those past the inline limit alike (no
    Delta table is involved, so delta-spark's runs without its jars, on either engine)."""
    from margin_pipeline.store import delta_rs

    store = store_class(lake_root=str(tmp_path / "lake"))
    many = rows(*((f"m{i}", D1, float(i), None) for i in range(2000)))
    monkeypatch.setattr(delta_rs, "INLINE_ARROW_BYTES", 1024)  # the local store stages these on disk
    for table in (rows(("a", D1, 1.0, "x")), many):
        got = to_arrow(store.frame(spark, table), SPEC.schema).sort_by([("meter", "ascending")])
        assert got.equals(table.sort_by([("meter", "ascending")])), table.num_rows


def test_null_to_value_is_a_change(impl: DeltaStore, spark) -> None:
    impl.merge(SPEC, upsert(("a", D1, None, None)))
    outcome = impl.merge(SPEC, upsert(("a", D1, 1.0, "now known")))
    assert outcome.updated == 1
    assert snapshot(impl, spark) == {("a", D1): (1.0, "now known")}


def test_replaying_a_merge_writes_nothing(impl: DeltaStore, spark) -> None:
    source = upsert(("a", D1, 1.0, "x"), ("b", D2, 2.0, "y"))
    first = impl.merge(SPEC, source)
    replay = impl.merge(SPEC, source)
    assert replay == MergeOutcome(version=first.version)
    assert change_rows(impl, spark, first.version, impl.version(SPEC)) == []


def test_snapshot_at_a_version_and_partition_pruned_read(impl: DeltaStore, spark) -> None:
    v1 = impl.merge(SPEC, upsert(("a", D1, 1.0, None), ("b", D2, 2.0, None))).version
    impl.merge(SPEC, upsert(("a", D1, 9.0, None)))
    assert snapshot(impl, spark, version=v1) == {("a", D1): (1.0, None), ("b", D2): (2.0, None)}
    pruned = impl.read(spark, SPEC, where="day = '2025-10-02'").where("day = '2025-10-02'")
    assert [(r.meter, r.kwh) for r in pruned.collect()] == [("b", 2.0)]


def test_change_feed_of_an_empty_range_is_empty(impl: DeltaStore, spark) -> None:
    version = impl.merge(SPEC, upsert(("a", D1, 1.0, None))).version
    assert change_rows(impl, spark, version, version) == []
    feed = impl.read_changes(spark, SPEC, version, version)
    assert feed.rows == 0
    assert set(feed.frame.columns) >= {"_change_type", "_commit_version"}


def test_change_feed_beyond_the_table_is_a_stale_watermark(impl: DeltaStore, spark) -> None:
    version = impl.merge(SPEC, upsert(("a", D1, 1.0, None))).version
    with pytest.raises(StaleWatermarkError):
        impl.read_changes(spark, SPEC, version + 5, version + 7).frame.collect()


def test_history_and_restore(impl: DeltaStore, spark) -> None:
    good = impl.merge(SPEC, upsert(("a", D1, 1.0, None))).version
    impl.merge(SPEC, upsert(("a", D1, 666.0, "bad batch"), ("b", D1, 1.0, None)))
    impl.restore(SPEC, good)
    assert snapshot(impl, spark) == {("a", D1): (1.0, None)}
    history = impl.history(SPEC)
    assert len(history) >= 3
    assert "RESTORE" in str(history[0]).upper()


def test_commit_info_is_recorded(impl: DeltaStore) -> None:
    impl.merge(SPEC, upsert(("a", D1, 1.0, None)), commit_info={"margin_pipeline.file": "x.csv"})
    assert "x.csv" in str(impl.history(SPEC, limit=1)[0])


def test_ensure_table_adds_the_new_nullable_columns_of_its_spec(impl: DeltaStore, spark) -> None:
    """A table an earlier release created gains the columns its spec has since grown (null in the
    held rows); a new non-nullable column is refused, naming it."""
    earlier = TableSpec(SPEC.name, pa.schema(list(SPEC.schema)[:3]), SPEC.key, SPEC.partition_by)
    impl.merge(earlier, with_delete_flag(rows(("a", D1, 1.0, None)).drop_columns(["note"]), earlier, False))
    version = impl.ensure_table(SPEC)
    assert impl.read_arrow(SPEC).to_pylist() == [{"meter": "a", "day": D1, "kwh": 1.0, "note": None}]
    impl.merge(SPEC, upsert(("b", D2, 2.0, "new")))
    assert snapshot(impl, spark)[("b", D2)] == (2.0, "new")
    assert impl.version(SPEC) > version
    required = TableSpec(SPEC.name, SPEC.schema.append(pa.field("seq", pa.int64(), nullable=False)), SPEC.key)
    with pytest.raises(ValueError, match=r"lacks the non-nullable column\(s\) seq"):
        impl.ensure_table(required)


def test_row_count_follows_file_pruning(impl: DeltaStore) -> None:
    impl.merge(SPEC, upsert(("a", D1, 1.0, None), ("b", D1, 2.0, None), ("c", D2, 3.0, None)))
    assert impl.row_count(SPEC) == 3
    assert impl.row_count(SPEC, where="day = '2025-10-02'") == 1


def test_control_table_reads_bounds_and_replace(impl: DeltaStore) -> None:
    """What watermarks, substrate pins and the monthly for-each's scope need of a store."""
    assert impl.merge(SPEC, upsert(("a", D1, 1.0, "x"), ("b", D2, 2.0, None))).inserted == 2
    assert sorted(impl.read_arrow(SPEC).column("meter").to_pylist()) == ["a", "b"]
    assert impl.read_arrow(SPEC, columns=["kwh"]).schema == pa.schema([SPEC.schema.field("kwh")])
    assert impl.column_bounds(SPEC, "kwh") == (1.0, 2.0)
    impl.replace(SPEC, rows(("c", D1, 3.0, "only")))
    assert impl.read_arrow(SPEC).to_pylist() == [{"meter": "c", "day": D1, "kwh": 3.0, "note": "only"}]
    assert impl.column_bounds(SPEC, "day") == (D1, D1)


def test_update_sets_a_column_in_one_marked_commit_with_a_change_feed(impl: DeltaStore, spark) -> None:
    before = impl.merge(SPEC, upsert(("a", D1, 1.0, "x"), ("b", D1, 2.0, "y"), ("c", D2, 3.0, "x"))).version
    outcome = impl.update(SPEC, {"note": "'z'"}, "day = '2025-10-01' AND note <> 'z'", {"marker": "yes"})
    assert (outcome.version, outcome.updated) == (before + 1, 2)
    assert snapshot(impl, spark) == {("a", D1): (1.0, "z"), ("b", D1): (2.0, "z"), ("c", D2): (3.0, "x")}
    assert change_rows(impl, spark, before, outcome.version) == [
        ("update_postimage", "a", D1, 1.0),
        ("update_postimage", "b", D1, 2.0),
        ("update_preimage", "a", D1, 1.0),
        ("update_preimage", "b", D1, 2.0),
    ]
    [commit] = impl.history(SPEC, limit=1)
    assert (commit["operation"], commit["marker"]) == ("UPDATE", "yes")
    # Nothing matches any more: no commit.
    again = impl.update(SPEC, {"note": "'z'"}, "day = '2025-10-01' AND note <> 'z'", {"marker": "yes"})
    assert again == MergeOutcome(version=outcome.version)


def test_update_matching_sets_every_matching_row_from_its_source_row(impl: DeltaStore, spark) -> None:
    before = impl.merge(SPEC, upsert(("a", D1, 1.0, "x"), ("b", D1, 2.0, "x"), ("c", D2, 3.0, "x"))).version
    # One source row per day, each matching every meter of its day; kwh doubles on D1, D2 unchanged.
    factors = pa.table({"day": pa.array([D1, D2], pa.date32()), "factor": [2.0, 1.0]})
    outcome = impl.update_matching(SPEC, factors, ("day",), {"kwh": "t.kwh * s.factor"}, {"marker": "m"})
    assert (outcome.version, outcome.updated) == (before + 1, 2)
    assert snapshot(impl, spark) == {("a", D1): (2.0, "x"), ("b", D1): (4.0, "x"), ("c", D2): (3.0, "x")}
    assert [c for c in change_rows(impl, spark, before, outcome.version) if c[0] == "update_postimage"] == [
        ("update_postimage", "a", D1, 2.0),
        ("update_postimage", "b", D1, 4.0),
    ]
    # Nothing would change: no commit.
    same = pa.table({"day": pa.array([D1], pa.date32()), "factor": [1.0]})
    assert impl.update_matching(SPEC, same, ("day",), {"kwh": "t.kwh * s.factor"}) == MergeOutcome(
        version=outcome.version
    )


def test_delta_rs_reads_through_arrow_s_filesystem_not_a_python_handler(tmp_path: Path) -> None:
    """delta-rs's default dataset reads through a Python filesystem handler that Arrow's I/O threads
    call back into; a process that used it could abort at exit (status 134, README "Clean exits")."""
    store = DeltaRsStore(lake_root=str(tmp_path / "lake"))
    store.merge(SPEC, upsert(("a", D1, 1.0, None), ("b", D2, 2.0, "y")))
    dataset = store._pruned(SPEC, None, "day = '2025-10-02'")
    assert not isinstance(dataset.filesystem, pa.fs.PyFileSystem), dataset.filesystem
    assert store.read_arrow(SPEC, where="day = '2025-10-02'").to_pylist() == [
        {"meter": "b", "day": D2, "kwh": 2.0, "note": "y"}
    ]


def test_a_frame_leaves_the_engine_in_the_declared_schema(spark) -> None:
    """``to_arrow``: a DataFrame's columns by name in the schema's order and types, others dropped,
    though the engine holds every computed column as nullable."""
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(
        [(1, "a", None, 7), (2, "b", 2.5, 7)], "value_int int, mpan_core string, value double, extra int"
    ).select("extra", F.col("value_int").alias("price"), F.upper("mpan_core").alias("mpan_core"), "value")
    schema = pa.schema(
        [
            pa.field("mpan_core", pa.string(), nullable=False),
            pa.field("value", pa.float64()),
            pa.field("price", pa.float64(), nullable=False),
        ]
    )
    table = to_arrow(frame, schema)
    assert table.schema == schema
    assert sorted(table.to_pylist(), key=lambda r: r["mpan_core"]) == [
        {"mpan_core": "A", "value": None, "price": 1.0},
        {"mpan_core": "B", "value": 2.5, "price": 2.0},
    ]


def test_a_large_publish_reads_the_held_keys_a_few_partitions_at_a_time(
    tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delta-rs: a publish of more than ``CHANGES_CHUNK_ROWS`` desired rows (a full rebuild) reads
    the held keys and finds those to delete in pieces of whole partitions, a partition held but not
    desired among them, so the keys of the whole table are never read at once; the outcome is the
    same as in one piece."""
    from margin_pipeline.store import delta_rs

    store = DeltaRsStore(lake_root=str(tmp_path / "lake"))
    days = [D1 + dt.timedelta(days=i) for i in range(6)]
    store.merge(SPEC, upsert(*[(m, d, 1.0, None) for d in days[:5] for m in ("a", "b", "c")]))
    key_reads: list[set[dt.date]] = []
    read_arrow = DeltaRsStore.read_arrow

    def recorded(self: DeltaRsStore, spec: TableSpec, *args, **kwargs) -> pa.Table:
        table = read_arrow(self, spec, *args, **kwargs)
        if kwargs.get("columns") == list(SPEC.key):
            key_reads.append(set(table.column("day").to_pylist()))
        return table

    monkeypatch.setattr(delta_rs, "CHANGES_CHUNK_ROWS", 5)
    monkeypatch.setattr(DeltaRsStore, "read_arrow", recorded)
    # Days 1-3: a unchanged, b changed, c gone, d new; days 4-5 held but not desired (all gone; one
    # piece with no desired row); day 6 new.
    desired = [(m, d, v, None) for d in days[:3] for m, v in (("a", 1.0), ("b", 2.0), ("d", 4.0))]
    desired += [("a", days[5], 5.0, None)]
    frame = spark.createDataFrame(desired, "meter string, day date, kwh double, note string")
    outcome = store.publish(SPEC, frame, None, SPEC.key)
    assert len(key_reads) >= 2 and all(len(read) <= 2 for read in key_reads), key_reads
    assert set().union(*key_reads) == set(days[:5]), "every held partition compared"
    assert (outcome.inserted, outcome.updated, outcome.deleted) == (4, 3, 9)
    assert snapshot(store, spark) == {(m, d): (v, n) for m, d, v, n in desired}


def test_a_large_merge_is_compared_with_the_table_a_few_partitions_at_a_time(
    tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delta-rs: a merge source over ``CHANGES_CHUNK_ROWS`` rows (a full rebuild) is compared with the
    held rows in pieces of whole partitions, so they are never all read at once; the outcome is the
    same as in one piece."""
    from margin_pipeline.store import delta_rs

    store = DeltaRsStore(lake_root=str(tmp_path / "lake"))
    days = [D1 + dt.timedelta(days=i) for i in range(4)]
    store.merge(SPEC, upsert(*[(m, d, 1.0, None) for d in days for m in ("a", "b", "c")]))
    pieces: list[set[dt.date]] = []
    changes = delta_rs._changes

    def counted(source: pa.Table, held: pa.Table, spec: TableSpec) -> pa.Table:
        pieces.append(set(source.column("day").to_pylist()))
        assert set(held.column("day").to_pylist()) <= pieces[-1], "held rows of its own partitions only"
        return changes(source, held, spec)

    monkeypatch.setattr(delta_rs, "CHANGES_CHUNK_ROWS", 5)
    monkeypatch.setattr(delta_rs, "_changes", counted)
    # Per day: a unchanged, b changed, c deleted, d new.
    source = pa.concat_tables(
        [
            upsert(*[(m, d, v, None) for d in days for m, v in (("a", 1.0), ("b", 2.0), ("d", 4.0))]),
            tombstones(pa.table({"meter": ["c"] * 4, "day": pa.array(days, pa.date32())}), SPEC),
        ]
    )
    outcome = store.merge(SPEC, source)
    assert len(pieces) == 2 and set().union(*pieces) == set(days), pieces  # 16 rows: two days a piece
    assert (outcome.inserted, outcome.updated, outcome.deleted) == (4, 4, 4)
    expected = {(m, d): (v, None) for d in days for m, v in (("a", 1.0), ("b", 2.0), ("d", 4.0))}
    assert snapshot(store, spark) == expected
