"""The store interface every layer above uses for Delta I/O.

Two implementations share it: :class:`~margin_pipeline.store.delta_rs.DeltaRsStore`
(the embedded default: delta-rs, no Delta jars) and
:class:`~margin_pipeline.store.delta_spark.DeltaSparkStore` (native Delta on a
cluster). Reads return Spark DataFrames so the transformations are engine-agnostic.

Writes go through :meth:`DeltaStore.merge`: the source holds the desired rows of
some keys plus *tombstones* (``_delete = true``) for keys to remove. Only rows
whose values really differ are rewritten, so a replay emits no change-feed rows.
:meth:`DeltaStore.update` sets a column by an expression where no source rows are
needed (the run type of a restated date).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DELETE_FLAG = "_delete"
CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
#: Every table the pipeline writes has a change feed; MERGE/DELETE only, never overwrite.
TABLE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}
#: Two doubles closer than this are "the same value" (contract tolerance is 1e-6 GBP per row).
FLOAT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class TableSpec:
    """A Delta table's identity: where it lives under the lake, its schema, key and layout."""

    name: str  # path under the lake root, e.g. "substrate/prices" or "gold/hh_margin"
    schema: pa.Schema
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = ()

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(n for n in self.schema.names if n not in self.key)

    @property
    def short_name(self) -> str:
        """The table's name without its layer: gold/hh_revenue -> hh_revenue (what watermarks use)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def asset_key(self) -> dg.AssetKey:
        """The table's Dagster asset key is its path under the lake: gold/hh_revenue -> [gold, hh_revenue]."""
        return dg.AssetKey(self.name.split("/"))


@dataclass(frozen=True)
class MergeOutcome:
    """What one MERGE did. ``version`` is the table version after it (unchanged on a no-op)."""

    version: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)
    #: A publish's: the keys it covered (its scope's, or its desired rows' without a scope); 0 otherwise.
    keys: int = 0
    #: A publish's: the predicate of the partitions holding every key it covered, over the column
    #: :func:`partition_of_scope` names (None: the whole table).
    where: str | None = None

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class ChangeFeed:
    """Change-feed rows of a version range, and how many there are."""

    frame: DataFrame
    rows: int


class StaleWatermarkError(RuntimeError):
    """The change feed from a watermark is no longer readable (history vacuumed or truncated)."""


def new_columns(spec: TableSpec, held: Iterable[str]) -> list[pa.Field]:
    """The columns of ``spec`` a held table lacks, which must be nullable: its rows have none."""
    names = set(held)
    missing = [f for f in spec.schema if f.name not in names]
    required = [f.name for f in missing if not f.nullable]
    if required:
        raise ValueError(
            f"{spec.name}: the held table lacks the non-nullable column(s) {', '.join(required)}; "
            "only nullable columns are added to an existing table"
        )
    return missing


class DeltaStore(dg.ConfigurableResource):
    """Delta I/O for the pipeline, rooted at one lake folder."""

    lake_root: str

    @abstractmethod
    def version(self, spec: TableSpec) -> int | None:
        """Current version, or None when the table does not exist yet."""

    @abstractmethod
    def ensure_table(self, spec: TableSpec) -> int:
        """Create the table empty (change feed on) if missing, or add the nullable columns ``spec``
        has and the held table lacks (a table an earlier release created); return its version."""

    @abstractmethod
    def read(
        self, spark: SparkSession, spec: TableSpec, version: int | None = None, where: str | None = None
    ) -> DataFrame:
        """Snapshot at ``version`` (latest if None). ``where`` is a SQL predicate on partition
        columns used to prune files; callers still filter rows themselves."""

    @abstractmethod
    def frame(self, spark: SparkSession, rows: pa.Table) -> DataFrame:
        """``rows``, computed on the client, as a DataFrame on ``spark``'s engine."""

    @abstractmethod
    def row_count(self, spec: TableSpec, version: int | None = None, where: str | None = None) -> int:
        """Rows in the files a read of ``version`` with ``where`` touches (after file pruning)."""

    @abstractmethod
    def read_arrow(
        self,
        spec: TableSpec,
        version: int | None = None,
        where: str | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Snapshot as Arrow (control tables). ``where`` may only prune files: filter rows yourself."""

    @abstractmethod
    def column_bounds(
        self, spec: TableSpec, column: str, version: int | None = None
    ) -> tuple[Any, Any] | None:
        """(min, max) of ``column`` at ``version``; None when the table is empty."""

    @abstractmethod
    def replace(self, spec: TableSpec, rows: pa.Table) -> None:
        """Overwrite a control table nobody consumes through the change feed (a run's working state)."""

    @abstractmethod
    def read_changes(self, spark: SparkSession, spec: TableSpec, after: int, up_to: int) -> ChangeFeed:
        """Change-feed rows of versions ``(after, up_to]`` with ``_change_type`` and
        ``_commit_version``. Raises :class:`StaleWatermarkError` when that range is gone."""

    @abstractmethod
    def merge(
        self, spec: TableSpec, source: DataFrame | pa.Table, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        """Apply desired rows and tombstones (``_delete``) by key, rewriting only changed rows."""

    @abstractmethod
    def publish(
        self,
        spec: TableSpec,
        desired: DataFrame,
        scope: DataFrame | None,
        scope_key: Sequence[str],
        commit_info: dict[str, str] | None = None,
    ) -> MergeOutcome:
        """Make ``spec`` hold ``desired`` for every key of ``scope`` (its ``scope_key`` columns, which
        are columns of ``spec``; every key when None): ``desired``'s rows merged, and the held rows of
        the scope that ``desired`` lacks deleted. The files read for the held rows are those of the
        partitions the scope's keys name (:func:`partition_of_scope`). One merge, one commit at most;
        the outcome's ``keys`` counts the keys covered, its ``where`` is that partition predicate."""

    @abstractmethod
    def update(
        self, spec: TableSpec, values: dict[str, str], where: str, commit_info: dict[str, str] | None = None
    ) -> MergeOutcome:
        """``UPDATE spec SET column = <SQL expression> WHERE <where>`` in one commit (none when no row
        matches). For a change that is a function of the row alone, so no source rows are read."""

    @abstractmethod
    def update_matching(
        self,
        spec: TableSpec,
        source: pa.Table,
        on: tuple[str, ...],
        values: dict[str, str],
        commit_info: dict[str, str] | None = None,
    ) -> MergeOutcome:
        """For every row ``t`` matching a ``source`` row ``s`` on ``on`` (a source row may match many),
        ``SET column = <SQL over t. and s.>`` where the result differs (doubles beyond
        :data:`FLOAT_TOLERANCE`); one commit, none when nothing differs."""

    @abstractmethod
    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit history, newest first: ``version``, ``timestamp``, ``operation``, ``operationParameters``
        and the ``commit_info`` a merge was given as top-level keys."""

    @abstractmethod
    def restore(self, spec: TableSpec, version: int) -> None:
        """Restore the table to an earlier version (a new commit)."""


def partition_of_scope(spec: TableSpec, scope_key: Sequence[str]) -> str | None:
    """The partition column of ``spec`` a scope keyed by ``scope_key`` names (None: the scope may
    cover any partition, so a publish reads the whole table for its held rows)."""
    column = spec.partition_by[0] if spec.partition_by else None
    return column if column in scope_key else None


def sql_in(column: str, values: Iterable[Any]) -> str:
    """SQL predicate: ``column`` holds one of ``values`` (dates, strings or numbers), ``false`` when
    there are none. The same text filters rows on every engine and prunes files in delta-rs."""
    literals = sorted({f"'{v.isoformat()}'" if hasattr(v, "isoformat") else _literal(v) for v in values})
    return f"{column} IN ({', '.join(literals)})" if literals else "false"


def _literal(value: Any) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def merge_predicates(spec: TableSpec, *, source: str = "s", target: str = "t") -> dict[str, str]:
    """SQL for the MERGE both engines run: join on key, delete tombstones, update when a
    value differs (doubles beyond :data:`FLOAT_TOLERANCE`), insert new non-tombstones.

    The text is valid in DataFusion (delta-rs) and Spark SQL alike. Delta on Spark evaluates
    ``update`` itself; delta-rs is slow at it (a condition comparing target with source columns), so
    :meth:`DeltaRsStore.merge <margin_pipeline.store.delta_rs.DeltaRsStore.merge>` applies the same
    rule in Arrow and gives delta-rs only the rows that change the table.
    """
    join = " AND ".join(f"{target}.{k} = {source}.{k}" for k in spec.key)
    differs = differs_sql(spec, {c: f"{source}.{c}" for c in spec.value_columns}, target)
    return {
        "join": join,
        "delete": f"{source}.{DELETE_FLAG}",
        "update": f"NOT {source}.{DELETE_FLAG} AND ({differs})",
        "insert": f"NOT {source}.{DELETE_FLAG}",
    }


def differs_sql(spec: TableSpec, values: dict[str, str], target: str = "t") -> str:
    """SQL true when any ``column = expression`` of ``values`` would change the target row."""
    parts = []
    for name, expression in values.items():
        t, e = f"{target}.{name}", f"({expression})"
        if pa.types.is_floating(spec.schema.field(name).type):
            parts.append(f"(({t} IS NULL) <> ({e} IS NULL) OR abs({t} - {e}) > {FLOAT_TOLERANCE})")
        else:
            parts.append(f"({t} IS DISTINCT FROM {e})")
    return " OR ".join(parts) or "false"


def merge_source_schema(spec: TableSpec) -> pa.Schema:
    """Schema of a merge source: the table's columns (nullable, tombstones carry no values) + ``_delete``."""
    fields = [f.with_nullable(True) for f in spec.schema]
    return pa.schema([*fields, pa.field(DELETE_FLAG, pa.bool_(), nullable=False)])


def to_arrow(frame: DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame``'s rows as Arrow in ``schema``: its columns by name (others dropped), cast to their types.

    Through ``DataFrame.to``, so the schema is known before the query runs: a plain ``toArrow()``
    first asks the engine for the plan's schema, one more analysis of the whole plan (0.1-0.7 s for a
    stream's output or the margin bridge on Sail at 1,000 meters). Every field is nullable to the
    engine (it holds a computed column as nullable and ``to`` refuses to narrow it); Arrow's cast
    then applies the declared nullability, refusing a null where ``schema`` has none."""
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructField, StructType

    nullable = StructType([StructField(f.name, f.dataType, True) for f in from_arrow_schema(schema).fields])
    return frame.to(nullable).toArrow().cast(schema)


def replace_rows(
    store: DeltaStore, spec: TableSpec, rows: pa.Table, held: pa.Table, commit_info: dict[str, str] | None
) -> MergeOutcome:
    """Merge ``rows`` and delete the keys of ``held`` (the held rows, or their keys, that the write
    replaces) that ``rows`` lacks."""
    return merge_and_delete(store, spec, rows, keys_gone(spec, rows, held), commit_info)


def keys_gone(spec: TableSpec, rows: pa.Table, held: pa.Table) -> pa.Table:
    """The keys of ``held`` that ``rows`` lacks."""
    key = list(spec.key)
    gone = held.select(key)
    return gone.join(rows.select(key), key, join_type="left anti") if rows.num_rows else gone


def merge_and_delete(
    store: DeltaStore, spec: TableSpec, rows: pa.Table, gone: pa.Table, commit_info: dict[str, str] | None
) -> MergeOutcome:
    """One merge: ``rows`` upserted, the keys ``gone`` deleted."""
    source = pa.concat_tables([with_delete_flag(rows, spec, delete=False), tombstones(gone, spec)])
    return store.merge(spec, source, commit_info=commit_info)


def tombstones(keys: pa.Table, spec: TableSpec) -> pa.Table:
    """Merge source rows that delete ``keys`` (value columns left null)."""
    columns = [
        keys.column(f.name).cast(f.type) if f.name in spec.key else pa.nulls(keys.num_rows, f.type)
        for f in spec.schema
    ]
    flag = pa.array([True] * keys.num_rows, pa.bool_())
    return pa.Table.from_arrays([*columns, flag], schema=merge_source_schema(spec))


def with_delete_flag(table: pa.Table, spec: TableSpec, delete: bool) -> pa.Table:
    """Shape ``table`` as merge source rows in ``spec``'s schema order, flagged delete or not."""
    cols = [table.column(n).cast(spec.schema.field(n).type) for n in spec.schema.names]
    flag = pa.array([delete] * table.num_rows, pa.bool_())
    return pa.Table.from_arrays([*cols, flag], schema=merge_source_schema(spec))
