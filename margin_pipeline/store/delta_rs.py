"""The embedded store: delta-rs for all Delta I/O; the engine (Sail or local Spark) computes.

Needs no Delta jars, and no engine reads a Delta file itself: snapshots (pruned by
partition and file statistics) and the change feed (``DeltaTable.load_cdf``) are read
by delta-rs and handed to the engine as Arrow; writes go engine -> Arrow -> delta-rs
MERGE. Both directions cast to the table's declared schema in one place
(:func:`arrow_to_spark`, :meth:`DeltaRsStore.merge`), so every engine sees and writes
the same types.

delta-rs panics in a child forked after it ran: anything that calls it must run in a fresh
process, or in one forked from a process that never touched it. Every job runs its steps in its
run worker (:mod:`margin_pipeline.defs.executors`): spawned afresh, or forked from a zygote that
only imported the code location (:mod:`margin_pipeline.orchestration.warm_workers`).
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import os
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute
import pyarrow.fs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Field, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from pydantic import PrivateAttr

from margin_pipeline.store.base import (
    DELETE_FLAG,
    FLOAT_TOLERANCE,
    TABLE_PROPERTIES,
    ChangeFeed,
    DeltaStore,
    MergeOutcome,
    StaleWatermarkError,
    TableSpec,
    differs_sql,
    keys_gone,
    merge_and_delete,
    merge_predicates,
    merge_source_schema,
    new_columns,
    partition_of_scope,
    sql_in,
    to_arrow,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Concurrent writers to one table lose the optimistic-concurrency race now and then.
COMMIT_ATTEMPTS = 5


def _merger(table: DeltaTable, source: pa.Table, join: str, commit_info: dict[str, str] | None) -> Any:
    """A MERGE of ``source`` (alias ``s``) into ``table`` (alias ``t``) on the SQL ``join``."""
    return table.merge(
        source,
        predicate=join,
        source_alias="s",
        target_alias="t",
        # Streamed execution skips partition pruning from the source's values, so every MERGE
        # would scan the whole table (measured 1.74 s vs 0.13 s at 90 days).
        streamed_exec=False,
        commit_properties=CommitProperties(custom_metadata=commit_info) if commit_info else None,
    )


#: Marks the rows of :meth:`DeltaRsStore.publish`'s one query that are the scope's keys, not desired rows.
_SCOPE_KEY = "_scope_key"


def spark_safe(table: pa.Table) -> pa.Table:
    """Cast Arrow types Spark cannot ingest (string_view, uint64 from delta-rs) to ones it can."""
    fields = []
    for f in table.schema:
        typ = f.type
        if pa.types.is_string_view(typ) or pa.types.is_large_string(typ):
            typ = pa.string()
        elif pa.types.is_unsigned_integer(typ):
            typ = pa.int64()
        fields.append(pa.field(f.name, typ, f.nullable))
    return table.cast(pa.schema(fields))


def _partition_values(spec: TableSpec, rows: pa.Table) -> str | None:
    """A file pruning predicate keeping the partitions ``rows`` fall in (None: not partitioned)."""
    parts = [
        sql_in(column, pyarrow.compute.unique(rows.column(column)).drop_null().to_pylist())
        for column in spec.partition_by
    ]
    return " AND ".join(parts) or None


#: A merge source of more rows than this is compared with the table's rows a few partitions at a
#: time (:func:`_chunks`): the held rows of a full rebuild, every partition, are never read at once.
CHANGES_CHUNK_ROWS = 1_000_000


def _chunks(rows: pa.Table, spec: TableSpec) -> Iterator[pa.Table]:
    """``rows`` in pieces of whole partitions of about :data:`CHANGES_CHUNK_ROWS` rows or more each;
    one piece when there are fewer rows or the table is not partitioned."""
    if not spec.partition_by or rows.num_rows <= CHANGES_CHUNK_ROWS:
        yield rows
        return
    pc = pyarrow.compute
    order = pc.sort_indices(rows, sort_keys=[(c, "ascending") for c in spec.partition_by])
    ordered = rows.select(list(spec.partition_by)).take(order)
    starts = pa.array([False] * ordered.num_rows, pa.bool_())  # where a new partition begins
    for column in ordered.columns:
        differs = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, len(column) - 1)), True)
        starts = pc.or_(starts, pa.concat_arrays([pa.array([False]), *differs.chunks]))
    start = 0
    for boundary in pc.indices_nonzero(starts).to_pylist():
        if boundary - start >= CHANGES_CHUNK_ROWS:
            yield rows.take(order.slice(start, boundary - start))
            start = boundary
    yield rows.take(order.slice(start))


def _changes(source: pa.Table, held: pa.Table, spec: TableSpec) -> pa.Table:
    """The rows of merge ``source`` that change a table holding ``held`` (its rows at least at the
    source's keys): tombstones of held keys, rows of keys not held, and rows whose values differ as
    :func:`~margin_pipeline.store.base.differs_sql` says (doubles beyond :data:`FLOAT_TOLERANCE`,
    other columns IS DISTINCT FROM)."""
    pc = pyarrow.compute
    key, values = list(spec.key), list(spec.value_columns)
    row, present = "__source_row", "__held"
    left = source.append_column(row, pa.array(range(source.num_rows), pa.int64()))
    right = held.select(key + values).rename_columns(key + [f"{c}{present}" for c in values])
    right = right.append_column(present, pa.array([True] * held.num_rows, pa.bool_()))
    joined = left.join(right, key, join_type="left outer")
    is_held = pc.is_valid(joined.column(present))
    differs = pa.array([False] * joined.num_rows, pa.bool_())
    for column in values:
        new, old = joined.column(column), joined.column(f"{column}{present}")
        one_null = pc.not_equal(pc.is_null(new), pc.is_null(old))
        if pa.types.is_floating(spec.schema.field(column).type):
            apart = pc.greater(pc.abs(pc.subtract(new, old)), FLOAT_TOLERANCE)
        else:
            apart = pc.not_equal(new, old)
        differs = pc.or_(differs, pc.or_(one_null, pc.fill_null(apart, False)))
    delete = joined.column(DELETE_FLAG)
    keep = pc.if_else(delete, is_held, pc.or_(pc.invert(is_held), differs))
    return source.take(pc.filter(joined.column(row), keep))


#: Arrow up to this size goes to the engine inline, in the query plan; larger data is staged as a
#: Parquet file on local disk that the engine reads. An inline relation travels in every plan
#: that uses it, and Spark Connect refuses a plan over 128 MiB (a day's ledger at 1,000 meters
#: joined several 32 MiB pieces into 151 MiB); Sail never moves a large local relation out of the
#: plan itself (its cache threshold is 2^31 - 1).
INLINE_ARROW_BYTES = 4 * 1024 * 1024


def arrow_to_spark(spark: SparkSession, table: pa.Table) -> DataFrame:
    """``table`` as a DataFrame on ``spark``'s engine, in the types every engine reads alike."""
    return batches_to_spark(spark, table.schema, table.to_batches())


def batches_to_spark(spark: SparkSession, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> DataFrame:
    """Arrow record batches, cast to ``schema`` (in :func:`spark_safe` types), as a DataFrame, holding
    at most :data:`INLINE_ARROW_BYTES` of them in memory: small data goes inline in the plan; past
    that, the batches stream into a staged Parquet file the engine reads."""
    from pyspark.sql.pandas.types import from_arrow_schema

    target = spark_safe(schema.empty_table()).schema
    held: list[pa.Table] = []
    size = 0
    tables = (pa.Table.from_batches([b]).cast(target) for b in batches)
    for table in tables:
        held.append(table)
        size += table.nbytes
        if size > INLINE_ARROW_BYTES:
            path = _stage(target, itertools.chain(held, tables))
            return spark.read.schema(from_arrow_schema(target)).parquet(path)
    if not held or not sum(t.num_rows for t in held):
        return spark.createDataFrame([], from_arrow_schema(target))
    return spark.createDataFrame(pa.concat_tables(held))


def _stage(schema: pa.Schema, tables: Iterable[pa.Table]) -> str:
    """Write ``tables`` (of ``schema``) to a new Parquet file in this process's staging folder on local
    disk, removed when the process exits (the engine reads the file lazily, so it lives until then)."""
    global _STAGING
    if _STAGING is None:
        _STAGING = tempfile.mkdtemp(prefix="margin-pipeline-stage-")
        atexit.register(shutil.rmtree, _STAGING, True)
    path = os.path.join(_STAGING, f"{uuid.uuid4().hex}.parquet")
    with pq.ParquetWriter(path, schema) as writer:
        for table in tables:
            writer.write_table(table)
    return path


_STAGING: str | None = None


#: Snapshots of pinned versions kept open per store (a run reads a few tables at a few versions,
#: many times: replaying the log each time cost 14 s of a 75 s test on Sail).
OPEN_SNAPSHOTS = 64


class DeltaRsStore(DeltaStore):
    """Delta tables on a local (or fsspec/object-store) path, written by delta-rs.

    Open tables are kept: a pinned version's snapshot never changes, so it is opened once;
    the latest version is brought up to date from the log's new commits only
    (``update_incremental``) instead of replaying it from the last checkpoint.
    """

    _latest: dict[str, DeltaTable] = PrivateAttr(default_factory=dict)
    _pinned: OrderedDict[tuple[str, int], DeltaTable] = PrivateAttr(default_factory=OrderedDict)

    def uri(self, spec: TableSpec) -> str:
        return str(Path(self.lake_root) / spec.name)

    def table(self, spec: TableSpec, version: int | None = None) -> DeltaTable | None:
        uri = self.uri(spec)
        try:
            return self._latest_table(uri) if version is None else self._pinned_table(uri, version)
        except TableNotFoundError:
            return None

    def _latest_table(self, uri: str) -> DeltaTable:
        table = self._latest.get(uri)
        if table is not None:
            try:
                table.update_incremental()
                return table
            except (DeltaError, OSError):  # the table was removed or replaced under us: open afresh
                del self._latest[uri]
        table = self._latest[uri] = DeltaTable(uri)
        return table

    def _pinned_table(self, uri: str, version: int) -> DeltaTable:
        key = (uri, version)
        table = self._pinned.get(key)
        if table is None:
            table = self._pinned[key] = DeltaTable(uri, version=version)
            while len(self._pinned) > OPEN_SNAPSHOTS:
                self._pinned.popitem(last=False)
        else:
            self._pinned.move_to_end(key)
        return table

    def version(self, spec: TableSpec) -> int | None:
        table = self.table(spec)
        return None if table is None else table.version()

    def ensure_table(self, spec: TableSpec) -> int:
        table = self.table(spec)
        if table is not None:
            added = new_columns(spec, table.schema().to_arrow().names)
            if added:
                table.alter.add_columns([Field.from_arrow(f) for f in added])
            return table.version()
        Path(self.uri(spec)).mkdir(parents=True, exist_ok=True)
        write_deltalake(
            self.uri(spec),
            spec.schema.empty_table(),
            partition_by=list(spec.partition_by) or None,
            mode="ignore",
            configuration=TABLE_PROPERTIES,
        )
        return DeltaTable(self.uri(spec)).version()

    def files(self, spec: TableSpec, version: int | None = None, where: str | None = None) -> list[str]:
        table = self._existing(spec, version)
        return table.file_uris(file_pruning_predicate=where) if where else table.file_uris()

    def read_arrow(
        self,
        spec: TableSpec,
        version: int | None = None,
        where: str | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Snapshot as Arrow, without Spark (ingest and control tables use this).

        ``where`` only prunes files: it is exact on partition columns, otherwise filter the rows.
        """
        names = columns or list(spec.schema.names)
        table = self._pruned(spec, version, where).to_table(columns=names)
        return spark_safe(table).cast(pa.schema([spec.schema.field(c) for c in names]))

    def read(
        self, spark: SparkSession, spec: TableSpec, version: int | None = None, where: str | None = None
    ) -> DataFrame:
        """Snapshot handed to the engine as Arrow, read by delta-rs from the files ``where`` keeps
        (pruned by partition values and file statistics; the caller filters the rows), batch by batch
        so a large read never sits in memory whole."""
        names = list(spec.schema.names)
        batches = (b.select(names) for b in self._pruned(spec, version, where).to_batches(columns=names))
        return batches_to_spark(spark, spec.schema, batches)

    def _pruned(self, spec: TableSpec, version: int | None, where: str | None) -> Any:
        """The files of ``spec`` at ``version`` that ``where`` keeps, as a pyarrow dataset read
        through Arrow's own filesystem for the table's location.

        Not delta-rs's default, a Python filesystem handler that Arrow's I/O threads call back
        into: a process that had read through it could abort as it exited ("terminate called
        without an active exception", status 134; 7 of 200 runs of ``margin-pipeline summary``
        under load, 0 of 200 with Arrow's filesystem: README, "Clean exits")."""
        return self._dataset(self._existing(spec, version), spec, where)

    def _held(self, table: DeltaTable, spec: TableSpec, where: str | None) -> pa.Table:
        """The rows of ``table`` in the files ``where`` keeps, in the declared schema."""
        held = self._dataset(table, spec, where).to_table(columns=spec.schema.names)
        return spark_safe(held).cast(spec.schema)

    def _dataset(self, table: DeltaTable, spec: TableSpec, where: str | None) -> Any:
        filesystem, path = pa.fs.FileSystem.from_uri(self.uri(spec))
        return table.to_pyarrow_dataset(
            file_pruning_predicate=where, filesystem=pa.fs.SubTreeFileSystem(path, filesystem)
        )

    def frame(self, spark: SparkSession, rows: pa.Table) -> DataFrame:
        """Inline in the plan, or through a Parquet file staged on local disk (:func:`arrow_to_spark`):
        the local engines run on this machine."""
        return arrow_to_spark(spark, rows)

    def read_changes(self, spark: SparkSession, spec: TableSpec, after: int, up_to: int) -> ChangeFeed:
        changes = self.read_changes_arrow(spec, after, up_to)
        return ChangeFeed(self.frame(spark, changes), changes.num_rows)

    def read_changes_arrow(self, spec: TableSpec, after: int, up_to: int) -> pa.Table:
        table = self._existing(spec)
        if up_to <= after:
            empty = spec.schema.empty_table()
            return empty.append_column("_change_type", pa.array([], pa.string())).append_column(
                "_commit_version", pa.array([], pa.int64())
            )
        try:
            reader = table.load_cdf(starting_version=after + 1, ending_version=up_to)
            changes = pa.RecordBatchReader.from_stream(reader).read_all()
        except (DeltaError, OSError) as exc:
            raise StaleWatermarkError(
                f"change feed of {spec.name} for versions ({after}, {up_to}] is not readable: {exc}"
            ) from exc
        changes = spark_safe(changes)
        keep = [*spec.schema.names, "_change_type", "_commit_version"]
        return changes.select(keep).cast(
            pa.schema(
                [*spec.schema, pa.field("_change_type", pa.string()), pa.field("_commit_version", pa.int64())]
            )
        )

    def merge(
        self, spec: TableSpec, source: DataFrame | pa.Table, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        schema = merge_source_schema(spec)
        if isinstance(source, pa.Table):
            rows = source.select(schema.names).cast(schema)
        else:
            rows = to_arrow(source, schema)
        self.ensure_table(spec)
        if rows.num_rows == 0:
            return MergeOutcome(version=self.version(spec) or 0)
        sql = merge_predicates(spec)

        def write(table: DeltaTable) -> dict[str, Any]:
            # Only the rows that change the table, found against its rows at the version written on
            # (read again on a retry), so the MERGE updates every matched row it is given. delta-rs
            # evaluates merge_predicates' "values differ" condition, which compares target with
            # source columns, at ~50 us a matched row: 7.8 s for the 192k rows of a day's volumes at
            # 1,000 meters, against 0.2 s for the same MERGE updating unconditionally.
            changes = pa.concat_tables(
                [
                    _changes(chunk, self._held(table, spec, _partition_values(spec, chunk)), spec)
                    for chunk in _chunks(rows, spec)
                ]
            )
            if changes.num_rows == 0:
                return {}
            return (
                _merger(table, changes, sql["join"], commit_info)
                .when_matched_delete(predicate=sql["delete"])
                .when_matched_update(
                    updates={c: f"s.{c}" for c in spec.value_columns}, predicate=f"NOT s.{DELETE_FLAG}"
                )
                .when_not_matched_insert(
                    updates={c: f"s.{c}" for c in spec.schema.names}, predicate=sql["insert"]
                )
                .execute()
            )

        metrics = self._committing(spec, write)
        if not metrics:  # nothing to change: no commit
            return MergeOutcome(version=self._existing(spec).version())
        return MergeOutcome(
            version=self._existing(spec).version(),
            inserted=metrics["num_target_rows_inserted"],
            updated=metrics["num_target_rows_updated"],
            deleted=metrics["num_target_rows_deleted"],
            metrics=metrics,
        )

    def publish(
        self,
        spec: TableSpec,
        desired: DataFrame,
        scope: DataFrame | None,
        scope_key: Sequence[str],
        commit_info: dict[str, str] | None = None,
    ) -> MergeOutcome:
        """The desired rows and the scope's keys leave the engine in one query, as Arrow; the held keys
        of the scope come from delta-rs, from the partitions the scope's keys name (found in Arrow
        too: no query asks the engine for them first), and the keys to delete are found in Arrow.
        A plan that joined the held rows with ``desired`` in the engine computed ``desired`` twice
        (once for its rows, once for its keys: Sail reuses no common subplan and ignores ``cache()``)
        and shipped the held rows to it; one query, not two, because each costs local Spark a job
        (~0.3 s).

        The held keys are read and compared a few partitions at a time when there are many desired
        rows (:meth:`_parts`): those of a full rebuild, every key of the table, are never all in
        memory at once."""
        from pyspark.sql import functions as F

        fields = [f.with_nullable(True) for f in spec.schema]
        frame = desired.select(*spec.schema.names).withColumn(_SCOPE_KEY, F.lit(False))
        if scope is not None:
            keys = scope.select(*scope_key).distinct().withColumn(_SCOPE_KEY, F.lit(True))
            frame = frame.unionByName(keys, allowMissingColumns=True)
        both = to_arrow(frame, pa.schema([*fields, pa.field(_SCOPE_KEY, pa.bool_())]))
        is_key = both.column(_SCOPE_KEY)
        rows = both.filter(pa.compute.invert(is_key)).drop_columns([_SCOPE_KEY])
        in_scope = both.filter(is_key).select(list(scope_key)) if scope is not None else None
        del both, is_key
        where = None
        if in_scope is not None and (column := partition_of_scope(spec, scope_key)) is not None:
            where = sql_in(column, pa.compute.unique(in_scope[column]).to_pylist())
        gone = []
        for part, part_where in self._parts(spec, rows, where):
            held = self.read_arrow(spec, where=part_where, columns=list(spec.key))
            if in_scope is not None:
                held = held.join(in_scope, list(scope_key), join_type="left semi")
            gone.append(keys_gone(spec, part, held))
        # A piece with no desired rows keeps its held keys' not-null fields; a joined one does not.
        gone_keys = pa.concat_tables(gone, promote_options="default")
        covered = rows.num_rows if in_scope is None else in_scope.num_rows
        outcome = merge_and_delete(self, spec, rows, gone_keys, commit_info)
        return dataclasses.replace(outcome, keys=covered, where=where)

    def _parts(
        self, spec: TableSpec, rows: pa.Table, where: str | None
    ) -> Iterator[tuple[pa.Table, str | None]]:
        """``rows``, each piece with the file predicate of the held rows to compare it with: one piece,
        or, for more than :data:`CHANGES_CHUNK_ROWS` rows of a table partitioned by a key column,
        pieces of whole partitions of about that many desired and held rows each (the partitions held
        that ``rows`` lacks included: their keys go too)."""
        column = spec.partition_by[0] if spec.partition_by else None
        if column is None or column not in spec.key or rows.num_rows <= CHANGES_CHUNK_ROWS:
            yield rows, where
            return
        pc = pyarrow.compute
        sizes: dict[Any, int] = {}
        # Rows per partition: held ones from the log's statistics (no data read), desired ones counted.
        held = self._files_kept(spec, None, where).select([f"partition.{column}", "num_records"])
        counted = pc.value_counts(rows.column(column))
        for values, counts in (
            (held.column(0), held.column(1)),
            (counted.field("values"), counted.field("counts")),
        ):
            for value, count in zip(values.to_pylist(), counts.to_pylist(), strict=True):
                sizes[value] = sizes.get(value, 0) + count
        ordered = sorted(sizes)
        group: list[Any] = []
        size = 0
        for index, value in enumerate(ordered):
            group.append(value)
            size += sizes[value]
            if size >= CHANGES_CHUNK_ROWS or index == len(ordered) - 1:
                piece = rows.filter(
                    pc.is_in(rows.column(column), pa.array(group, rows.schema.field(column).type))
                )
                yield piece, " AND ".join(p for p in (where and f"({where})", sql_in(column, group)) if p)
                group, size = [], 0

    def update(
        self, spec: TableSpec, values: dict[str, str], where: str, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        properties = CommitProperties(custom_metadata=commit_info) if commit_info else None
        metrics = self._committing(
            spec, lambda table: table.update(updates=values, predicate=where, commit_properties=properties)
        )
        return MergeOutcome(
            self._existing(spec).version(), updated=metrics["num_updated_rows"], metrics=metrics
        )

    def update_matching(
        self,
        spec: TableSpec,
        source: pa.Table,
        on: tuple[str, ...],
        values: dict[str, str],
        commit_info: dict[str, str] | None = None,
    ) -> MergeOutcome:
        if source.num_rows == 0:
            return MergeOutcome(version=self.version(spec) or 0)
        join = " AND ".join(f"t.{c} = s.{c}" for c in on)
        metrics = self._committing(
            spec,
            lambda table: (
                _merger(table, source, join, commit_info)
                .when_matched_update(updates=values, predicate=differs_sql(spec, values))
                .execute()
            ),
        )
        return MergeOutcome(
            self._existing(spec).version(), updated=metrics["num_target_rows_updated"], metrics=metrics
        )

    def _committing(self, spec: TableSpec, write: Callable[[DeltaTable], dict[str, Any]]) -> dict[str, Any]:
        """Run one write on the latest table version; a concurrent commit makes it retry (backoff)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return write(self._existing(spec))
            except CommitFailedError:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def append(self, spec: TableSpec, rows: pa.Table) -> None:
        """Append to an append-only log table (never one a stream consumes: those are MERGE-only)."""
        self.ensure_table(spec)
        write_deltalake(self.uri(spec), rows.select(spec.schema.names).cast(spec.schema), mode="append")

    def replace(self, spec: TableSpec, rows: pa.Table) -> None:
        """Overwrite a control table nobody consumes through the change feed (a run's working state)."""
        self.ensure_table(spec)
        write_deltalake(self.uri(spec), rows.select(spec.schema.names).cast(spec.schema), mode="overwrite")

    def column_bounds(
        self, spec: TableSpec, column: str, version: int | None = None
    ) -> tuple[Any, Any] | None:
        """(min, max) of ``column`` from the log's per-file statistics (no data read); None when empty."""
        actions = pa.table(self._existing(spec, version).get_add_actions(flatten=True))
        if not actions.num_rows:
            return None
        if column in spec.partition_by:  # partition values, not statistics
            low_values = high_values = actions.column(f"partition.{column}")
        else:
            low_values, high_values = actions.column(f"min.{column}"), actions.column(f"max.{column}")
        low, high = pa.compute.min(low_values).as_py(), pa.compute.max(high_values).as_py()
        return None if low is None else (low, high)

    def row_count(self, spec: TableSpec, version: int | None = None, where: str | None = None) -> int:
        """Rows in the files a read touches, from the log's per-file statistics (no data read)."""
        actions = self._files_kept(spec, version, where)
        return int(pa.compute.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0

    def _files_kept(self, spec: TableSpec, version: int | None, where: str | None) -> pa.Table:
        """The log's add actions (flattened: path, partition values, ``num_records``, statistics) of
        the files a read of ``spec`` at ``version`` touches with ``where``."""
        table = self._existing(spec, version)
        actions = pa.table(table.get_add_actions(flatten=True))
        if where and actions.num_rows:
            kept = {Path(uri).name for uri in table.file_uris(file_pruning_predicate=where)}
            names = [Path(p).name for p in actions.column("path").to_pylist()]
            actions = actions.filter(pa.array([n in kept for n in names]))
        return actions

    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        return self._existing(spec).history(limit)

    def restore(self, spec: TableSpec, version: int) -> None:
        self._existing(spec).restore(version)

    def _existing(self, spec: TableSpec, version: int | None = None) -> DeltaTable:
        table = self.table(spec, version)
        if table is None:
            raise FileNotFoundError(f"Delta table {spec.name} does not exist under {self.lake_root}")
        return table
