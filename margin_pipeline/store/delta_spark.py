"""The cluster store: native Delta through delta-spark (Databricks, or any Spark with the Delta jars).

Same contract as :class:`~margin_pipeline.store.delta_rs.DeltaRsStore`, implemented
with ``readChangeFeed``, ``DeltaTable.merge`` and ``restoreToVersion``. Tables are
addressed by path under ``lake_root`` (``abfss://``, ``s3://``, ``dbfs:/`` ...).
The Spark session must have the Delta extensions; locally that needs the
``io.delta:delta-spark`` jars, which come from Maven, not PyPI
(:func:`delta_jars` finds them when they are present).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import PrivateAttr

from margin_pipeline.store.base import (
    DELETE_FLAG,
    TABLE_PROPERTIES,
    ChangeFeed,
    DeltaStore,
    MergeOutcome,
    StaleWatermarkError,
    TableSpec,
    differs_sql,
    merge_predicates,
    merge_source_schema,
    new_columns,
    partition_of_scope,
    sql_in,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

COMMIT_ATTEMPTS = 5
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
MERGE_METRICS = {
    "inserted": "numTargetRowsInserted",
    "updated": "numTargetRowsUpdated",
    "deleted": "numTargetRowsDeleted",
}
UPDATE_METRICS = {"updated": "numUpdatedRows"}
#: Comma-separated jar paths to put on a local session's classpath (delta-spark + delta-storage).
DELTA_JARS_ENV = "MARGIN_PIPELINE_DELTA_JARS"
DELTA_SESSION_CONFIG = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars() -> list[str]:
    """Delta jars available locally: from ``$MARGIN_PIPELINE_DELTA_JARS`` or pyspark's own jars folder."""
    listed = [p for p in os.environ.get(DELTA_JARS_ENV, "").split(",") if p]
    if listed:
        return [p for p in listed if os.path.exists(p)]
    import pyspark

    return sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "delta-*.jar")))


class DeltaSparkStore(DeltaStore):
    """Delta tables read and written by Spark's native Delta support.

    Tables live by path under ``lake_root``, or, when ``catalog`` and ``schema_name`` are set,
    as Unity Catalog (or metastore) tables named ``<catalog>.<schema_name>.<layer>_<table>``.
    """

    catalog: str = ""
    schema_name: str = ""
    #: Tables whose columns this store has matched to their spec (:func:`new_columns`): once each.
    _columns_checked: set[str] = PrivateAttr(default_factory=set)

    def uri(self, spec: TableSpec) -> str:
        return f"{self.lake_root.rstrip('/')}/{spec.name}"

    def table_name(self, spec: TableSpec) -> str | None:
        """The table's catalog name (gold/hh_margin -> catalog.schema.gold_hh_margin); None: by path."""
        if not (self.catalog and self.schema_name):
            return None
        return f"{self.catalog}.{self.schema_name}.{spec.name.replace('/', '_')}"

    def _load(self, reader: Any, spec: TableSpec) -> DataFrame:
        name = self.table_name(spec)
        return reader.table(name) if name else reader.load(self.uri(spec))

    @staticmethod
    def _spark() -> SparkSession:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is None:
            raise RuntimeError("DeltaSparkStore needs an active Spark session with the Delta extensions")
        return session

    def _table(self, spec: TableSpec) -> Any:
        from delta.tables import DeltaTable

        name = self.table_name(spec)
        if name:
            return DeltaTable.forName(self._spark(), name)
        return DeltaTable.forPath(self._spark(), self.uri(spec))

    def version(self, spec: TableSpec) -> int | None:
        from delta.tables import DeltaTable

        name = self.table_name(spec)
        exists = (
            self._spark().catalog.tableExists(name)
            if name
            else DeltaTable.isDeltaTable(self._spark(), self.uri(spec))
        )
        if not exists:
            return None
        return int(self._table(spec).history(1).select("version").first()[0])

    def ensure_table(self, spec: TableSpec) -> int:
        from delta.tables import DeltaTable
        from pyspark.sql.pandas.types import from_arrow_schema

        builder = DeltaTable.createIfNotExists(self._spark())
        name = self.table_name(spec)
        builder = builder.tableName(name) if name else builder.location(self.uri(spec))
        builder = builder.addColumns(from_arrow_schema(spec.schema))
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        for key, value in TABLE_PROPERTIES.items():
            builder = builder.property(key, value)
        builder.execute()
        if spec.name in self._columns_checked:
            return self.version(spec) or 0
        added = new_columns(spec, self._load(self._spark().read.format("delta"), spec).columns)
        self._columns_checked.add(spec.name)
        if added:
            columns = from_arrow_schema(pa.schema(added))
            target = name or f"delta.`{self.uri(spec)}`"
            ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in columns.fields)
            self._spark().sql(f"ALTER TABLE {target} ADD COLUMNS ({ddl})")
        return self.version(spec) or 0

    def read(
        self, spark: SparkSession, spec: TableSpec, version: int | None = None, where: str | None = None
    ) -> DataFrame:
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        frame = self._load(reader, spec)
        return (frame.where(where) if where else frame).select(*spec.schema.names)

    def read_arrow(
        self,
        spec: TableSpec,
        version: int | None = None,
        where: str | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        names = columns or list(spec.schema.names)
        table = self.read(self._spark(), spec, version, where).select(*names).toArrow()
        return table.cast(pa.schema([spec.schema.field(c) for c in names]))

    def column_bounds(
        self, spec: TableSpec, column: str, version: int | None = None
    ) -> tuple[Any, Any] | None:
        from pyspark.sql import functions as F

        row = self.read(self._spark(), spec, version).agg(F.min(column), F.max(column)).first()
        return None if row is None or row[0] is None else (row[0], row[1])

    def replace(self, spec: TableSpec, rows: pa.Table) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        self.ensure_table(spec)
        spark = self._spark()
        frame = spark.createDataFrame(
            rows.select(spec.schema.names).to_pylist(), from_arrow_schema(spec.schema)
        )
        writer = frame.write.format("delta").mode("overwrite")
        name = self.table_name(spec)
        writer.saveAsTable(name) if name else writer.save(self.uri(spec))

    def frame(self, spark: SparkSession, rows: pa.Table) -> DataFrame:
        """Through the session (a file staged on the driver's disk would not reach the executors)."""
        return spark.createDataFrame(rows)

    def row_count(self, spec: TableSpec, version: int | None = None, where: str | None = None) -> int:
        return self.read(self._spark(), spec, version, where).count()

    def read_changes(self, spark: SparkSession, spec: TableSpec, after: int, up_to: int) -> ChangeFeed:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        keep = [*spec.schema.names, "_change_type", "_commit_version"]
        if up_to <= after:
            schema = from_arrow_schema(spec.schema)
            empty = spark.createDataFrame([], schema)
            empty = empty.withColumn("_change_type", F.lit(None).cast("string"))
            return ChangeFeed(empty.withColumn("_commit_version", F.lit(None).cast("long")), 0)
        try:
            reader = (
                spark.read.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", after + 1)
                .option("endingVersion", up_to)
            )
            frame = self._load(reader, spec)
            frame.schema  # noqa: B018  (resolve now: a vacuumed range fails here, not later)
        except Exception as exc:
            raise StaleWatermarkError(
                f"change feed of {spec.name} for versions ({after}, {up_to}] is not readable: {exc}"
            ) from exc
        frame = (
            frame.select(*keep).withColumn("_commit_version", F.col("_commit_version").cast("long")).cache()
        )
        return ChangeFeed(frame, frame.count())

    def merge(
        self, spec: TableSpec, source: DataFrame | pa.Table, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        spark = self._spark()
        names = merge_source_schema(spec).names
        if isinstance(source, pa.Table):
            source = spark.createDataFrame(source.select(names).cast(merge_source_schema(spec)))
        self.ensure_table(spec)
        if source.isEmpty():
            return MergeOutcome(version=self.version(spec) or 0)
        sql = merge_predicates(spec)
        rows = source.select(*names).alias("s")

        def write() -> None:
            (
                self._table(spec)
                .alias("t")
                .merge(rows, sql["join"])
                .whenMatchedDelete(condition=sql["delete"])
                .whenMatchedUpdate(condition=sql["update"], set={c: f"s.{c}" for c in spec.value_columns})
                .whenNotMatchedInsert(
                    condition=sql["insert"], values={c: f"s.{c}" for c in spec.schema.names}
                )
                .execute()
            )

        return self._committing(spec, commit_info, write, MERGE_METRICS)

    def publish(
        self,
        spec: TableSpec,
        desired: DataFrame,
        scope: DataFrame | None,
        scope_key: Sequence[str],
        commit_info: dict[str, str] | None = None,
    ) -> MergeOutcome:
        """One plan on the cluster: the held rows of the scope that ``desired`` lacks become
        tombstones beside ``desired``'s rows, and Delta's MERGE applies both (only the scope's
        partition values and the counts reach the driver)."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        where = None
        if scope is not None and (column := partition_of_scope(spec, scope_key)) is not None:
            where = sql_in(column, [r[0] for r in scope.select(column).distinct().collect()])
        current = self.read(self._spark(), spec, where=where)
        if scope is not None:
            current = current.join(scope.select(*scope_key).distinct(), list(scope_key), "left_semi")
        key = list(spec.key)
        gone = current.select(*key).join(desired.select(*key), key, "left_anti")
        types = from_arrow_schema(spec.schema)
        values = [F.lit(None).cast(types[c].dataType).alias(c) for c in spec.value_columns]
        source = desired.select(*spec.schema.names).withColumn(DELETE_FLAG, F.lit(False))
        tombstones = (
            gone.select(*key, *values).select(*spec.schema.names).withColumn(DELETE_FLAG, F.lit(True))
        )
        covered = (desired if scope is None else scope.select(*scope_key).distinct()).count()
        outcome = self.merge(spec, source.unionByName(tombstones), commit_info=commit_info)
        return dataclasses.replace(outcome, keys=covered, where=where)

    def update(
        self, spec: TableSpec, values: dict[str, str], where: str, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        self.ensure_table(spec)
        return self._committing(
            spec, commit_info, lambda: self._table(spec).update(condition=where, set=values), UPDATE_METRICS
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
        rows = self._spark().createDataFrame(source).alias("s")

        def write() -> None:
            (
                self._table(spec)
                .alias("t")
                .merge(rows, " AND ".join(f"t.{c} = s.{c}" for c in on))
                .whenMatchedUpdate(condition=differs_sql(spec, values), set=values)
                .execute()
            )

        return self._committing(spec, commit_info, write, MERGE_METRICS)

    def _committing(
        self,
        spec: TableSpec,
        commit_info: dict[str, str] | None,
        write: Callable[[], None],
        names: dict[str, str],
    ) -> MergeOutcome:
        """Run one write with ``commit_info`` as the commit's user metadata, retrying a concurrent
        commit (delta's Concurrent*Exception arrive as py4j/pyspark errors) with backoff; the
        outcome from the commit's ``operationMetrics`` (``names``: outcome field -> metric)."""
        spark = self._spark()
        before = self.version(spec)
        spark.conf.set(USER_METADATA, json.dumps(commit_info or {}))
        try:
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    write()
                    break
                except Exception as exc:
                    if "Concurrent" not in type(exc).__name__ + str(exc) or attempt == COMMIT_ATTEMPTS:
                        raise
                    time.sleep(0.05 * 2**attempt)
        finally:
            spark.conf.unset(USER_METADATA)
        after = self.version(spec) or 0
        if after == before:
            return MergeOutcome(version=after)
        metrics = self._table(spec).history(1).select("operationMetrics").first()[0] or {}
        count = {field: int(metrics.get(metric, 0)) for field, metric in names.items()}
        return MergeOutcome(
            version=after,
            inserted=count.get("inserted", 0),
            updated=count.get("updated", 0),
            deleted=count.get("deleted", 0),
            metrics=dict(metrics),
        )

    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        table = self._table(spec)
        rows = (table.history(limit) if limit else table.history()).collect()
        commits = []
        for row in rows:  # the commit info a merge was given, as top-level keys like delta-rs has them
            commit = row.asDict(recursive=True)
            commit.update(json.loads(commit.get("userMetadata") or "{}"))
            commits.append(commit)
        return commits

    def restore(self, spec: TableSpec, version: int) -> None:
        self._table(spec).restoreToVersion(version)
