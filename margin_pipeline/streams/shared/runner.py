"""One incremental refresh of a stream output, the same for every stream.

A run pins the version it reads up to for each source (substrate tables at the
pinned substrate version N, upstream gold tables at their current version),
reads the change feed ``(watermark, pinned]`` of each, lets the stream reduce
it to the output keys it affects, recomputes only those, merges the result
(rewriting only rows whose values changed, deleting keys that disappeared) and
then advances the watermarks. With no watermark, a stale one, or
``full_rebuild``, the scope is everything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from margin_pipeline.store import ChangeFeed, MergeOutcome, StaleWatermarkError, TableSpec
from margin_pipeline.store.base import DeltaStore, sql_in
from margin_pipeline.streams.shared.changes import changed_keys, latest_state, union_all
from margin_pipeline.streams.shared.quality import Check, CheckOutcome, CheckScope, run_checks
from margin_pipeline.streams.shared.rollback import Rollback, recover, rollback
from margin_pipeline.streams.shared.watermarks import advance_watermarks, read_watermarks
from margin_pipeline.substrate.tables import RUNS
from margin_pipeline.substrate.versions import SubstratePin

VOLUMES = "settlement_volumes"

#: Watermark of a source that did not exist yet when it was consumed.
BEFORE_FIRST_VERSION = -1
#: Commit info marking an output commit that only re-stamps ``run_type`` (:meth:`StreamRun.restamp_runs`).
RUN_RESTAMP = {"margin_pipeline.change": "run_type"}


class Snapshots(Protocol):
    """Anything that reads a source by name at the version it pins (a :class:`StreamRun`, or one
    substrate state of the margin bridge)."""

    def snapshot(self, name: str, where: str | None = None) -> DataFrame: ...


@dataclass(frozen=True)
class Source:
    """A table a stream reads. Substrate sources are pinned by N; others are read at their latest version.

    ``skip_run_restamps``: leave out of the change feed the source's commits that only re-stamp
    ``run_type`` (marked :data:`RUN_RESTAMP`). A consumer that takes the run of a date from
    ``publication_runs`` itself, or does not use it, would read those rows (every row of every
    restated date) for nothing.
    """

    name: str
    spec: TableSpec
    pinned_by_substrate: bool = True
    skip_run_restamps: bool = False


def source_targets(store: DeltaStore, sources: Sequence[Source], pin: SubstratePin) -> dict[str, int]:
    """The version a run pinned to ``pin`` reads each source up to (-1: the table does not exist yet)."""
    targets: dict[str, int] = {}
    for source in sources:
        version = pin.version_of(source.name) if source.pinned_by_substrate else store.version(source.spec)
        targets[source.name] = BEFORE_FIRST_VERSION if version is None else version
    return targets


@dataclass
class StreamRun:
    stream: str
    spark: SparkSession
    store: DeltaStore
    sources: Sequence[Source]
    pin: SubstratePin
    run_id: str = ""
    force_full: bool = False
    log: Any = None
    #: Versions to read each source at (default: what ``pin`` implies). A run that fixes them and
    #: sets ``consume=False`` reads snapshots only: no change feed, no watermarks of its own.
    targets: dict[str, int] = field(default_factory=dict)
    consume: bool = True
    rows_read: dict[str, int] = field(default_factory=dict)
    change_rows: dict[str, int] = field(default_factory=dict)
    skipped_commits: dict[str, list[int]] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.by_name = {s.name: s for s in self.sources}
        self.watermarks = read_watermarks(self.store, self.stream).versions
        self.targets = self.targets or source_targets(self.store, self.sources, self.pin)
        self._changes: dict[str, DataFrame] = {}
        if not self.consume:
            return
        missing = [s.name for s in self.sources if s.name not in self.watermarks]
        if self.force_full:
            self.reason = "full rebuild requested"
        elif missing:
            self.reason = f"no watermark for {', '.join(missing)}"
        if not self.reason:
            self._load_changes()

    @property
    def full(self) -> bool:
        return bool(self.reason)

    @property
    def up_to_date(self) -> bool:
        """Nothing to do: every source is at the watermark (no data read to know it)."""
        return not self.full and all(self.targets[n] == self.watermarks[n] for n in self.targets)

    def _load_changes(self) -> None:
        for source in self.sources:
            after, up_to = self.watermarks[source.name], self.targets[source.name]
            if up_to < after:
                self.reason = f"{source.name} is at version {up_to}, behind watermark {after} (restored?)"
                return
            if up_to == after:
                continue
            try:
                feed = self._read_changes(source, max(after, -1), up_to)
            except StaleWatermarkError as exc:
                self.reason = f"watermark older than retained history: {exc}"
                self._changes.clear()
                return
            self.change_rows[source.name] = feed.rows
            self._changes[source.name] = feed.frame

    def _read_changes(self, source: Source, after: int, up_to: int) -> ChangeFeed:
        """The change feed of ``(after, up_to]``, less the run re-stamps when the source skips them."""
        if not source.skip_run_restamps:
            return self.store.read_changes(self.spark, source.spec, after, up_to)
        skipped = restamp_versions(self.store, source.spec, after, up_to)
        if skipped:
            self.skipped_commits[source.name] = skipped
        feeds = [
            self.store.read_changes(self.spark, source.spec, a, b)
            for a, b in version_ranges(after, up_to, skipped)
        ] or [self.store.read_changes(self.spark, source.spec, up_to, up_to)]
        return ChangeFeed(union_all([f.frame for f in feeds]), sum(f.rows for f in feeds))

    def changes(self, name: str) -> DataFrame | None:
        """Change-feed rows of ``name`` in ``(watermark, pinned]``, or None when it did not change."""
        frame = self._changes.get(name)
        return frame if frame is not None and self.change_rows.get(name) else None

    def snapshot(self, name: str, where: str | None = None) -> DataFrame:
        """``name`` at its pinned version (empty if it did not exist), filtered by the SQL ``where``.

        ``where`` also prunes files; the rows of the files the read touches count as rows read.
        """
        source = self.by_name[name]
        version = self.targets[name]
        if version == BEFORE_FIRST_VERSION:
            return self.empty(source.spec)
        self.rows_read[name] = self.rows_read.get(name, 0) + self.store.row_count(source.spec, version, where)
        frame = self.store.read(self.spark, source.spec, version=version, where=where)
        return frame.where(where) if where else frame

    def empty(self, spec: TableSpec) -> DataFrame:
        return self.spark.createDataFrame([], from_arrow_schema(spec.schema))

    def rows_for(
        self, name: str, keys: DataFrame | None, on: Sequence[str], days: Sequence[dt.date] | None = None
    ) -> DataFrame:
        """Rows of ``name`` (at its pinned version) whose ``on`` columns match ``keys``; all rows when None.

        Partitions are pruned by the settlement dates of ``keys``, or by ``days`` when given: the
        caller has them already, less any whose rows it takes from elsewhere.
        """
        if keys is None:
            return self.snapshot(name)
        keys = keys.select(*on).distinct()
        where = _date_predicate(keys) if days is None else in_dates(days)
        return self.snapshot(name, where=where).join(keys, list(on), "left_semi")

    def output_rows(self, output: TableSpec, where: str) -> DataFrame:
        """The current rows of this run's own ``output`` matching the SQL ``where`` (which also prunes
        files); the rows of the files read count as rows read, under the output's name."""
        self.rows_read[output.name] = self.rows_read.get(output.name, 0) + self.store.row_count(
            output, None, where
        )
        return self.store.read(self.spark, output, where=where).where(where)

    def rows_at_pin(self, name: str, keys: DataFrame, on: Sequence[str]) -> DataFrame:
        """Rows of ``name`` at its pinned version for ``keys`` (matched on the full key ``on``).

        A key the change feed touched takes its state from the feed (its last image; a key it
        deleted has no row); only the other keys are read from the snapshot. For an output that
        needs one row per key (not whole days), this reads the feed instead of its dates' partitions.
        """
        changes = self.changes(name)
        if changes is None:
            return self.rows_for(name, keys, on)
        alive, _deleted = latest_state(changes, on)
        rest = keys.join(changed_keys(changes, on), list(on), "left_anti")
        from_feed = alive.join(keys, list(on), "left_semi")
        if "settlement_date" not in on:
            return from_feed.unionByName(self.rows_for(name, rest, on))
        days = self.dates_to_read(name, on, settlement_dates(rest))
        return from_feed.unionByName(self.rows_for(name, rest, on, days))

    def dates_to_read(self, name: str, key: Sequence[str], days: Sequence[dt.date]) -> list[dt.date]:
        """Those of ``days`` whose snapshot of ``name`` must be read: all but the dates whose every row
        held at the pin is one the change feed left alive (a new date, published whole in this
        range), where the snapshot would find no other row.

        Per date, the feed's rows are a subset of the held ones, so equal counts (the held ones
        from the store's statistics, no data read) mean the same rows.
        """
        changes = self.changes(name)
        if changes is None or not days:
            return list(days)
        alive, _deleted = latest_state(changes, key)
        counted = alive.where(F.col("settlement_date").isin(list(days))).groupBy("settlement_date").count()
        in_feed = {row[0]: row[1] for row in counted.collect()}
        spec, version = self.by_name[name].spec, self.targets[name]
        return [d for d in days if in_feed.get(d, 0) != self.store.row_count(spec, version, in_dates([d]))]

    def full_scan_rows(self) -> int:
        """Rows a full recompute reads: every source at its pinned version (from Delta statistics)."""
        total = 0
        for name, version in self.targets.items():
            if version != BEFORE_FIRST_VERSION:
                total += self.store.row_count(self.by_name[name].spec, version)
        return total

    def publish(
        self,
        output: TableSpec,
        desired: DataFrame,
        scope: DataFrame | None,
        scope_key: Sequence[str],
    ) -> MergeOutcome:
        """Make ``output`` hold ``desired`` for every key in ``scope`` (all keys when None).

        Keys in scope that are in the output but not in ``desired`` are deleted. The outcome's
        ``where`` is the partition predicate holding every key of the scope (None: the whole output).
        """
        self.store.ensure_table(output)
        return self.store.publish(output, desired, scope, scope_key, commit_info=self.commit_info())

    def restamp_runs(self, output: TableSpec) -> MergeOutcome | None:
        """Set ``run_type`` on ``output``'s rows of every date whose volumes run changed in this range.

        The run of a date is the same for all its rows and nothing else about a row depends on it,
        so the rows are updated in place (one commit per run, marked :data:`RUN_RESTAMP`), reading
        no source rows. Rows the MERGE just wrote already carry the new run and are left alone.
        """
        if self.full or (changes := self.changes(RUNS)) is None:
            return None
        dates = changed_keys(changes.where(F.col("feed") == VOLUMES), ["settlement_date"])
        held = volume_runs(self).join(dates, "settlement_date", "left_semi").collect()
        by_run: dict[str, list[dt.date]] = {}
        for row in held:
            by_run.setdefault(row["run_type"], []).append(row["settlement_date"])
        outcomes = [
            self.store.update(
                output,
                {"run_type": f"'{run_type}'"},
                f"{in_dates(days)} AND run_type <> '{run_type}'",
                {**self.commit_info(), **RUN_RESTAMP},
            )
            for run_type, days in sorted(by_run.items())
        ]
        return combined(outcomes) if outcomes else None

    def commit_info(self) -> dict[str, str]:
        """What every commit of this run to its output carries (``recover`` finds a killed run's by it)."""
        return {
            "margin_pipeline.stream": self.stream,
            "run_id": self.run_id,
            "substrate_version": str(self.pin.number),
        }

    def finish(self, outputs: dict[str, int]) -> None:
        """Advance the watermarks and record ``outputs`` (table -> version) as the last good versions."""
        advance_watermarks(self.store, self.stream, self.targets, self.pin.number, self.run_id, outputs)

    def metadata(self, outcome: MergeOutcome | None, keys_recomputed: int) -> dict[str, Any]:
        mode = "full" if self.full else ("skipped (no changes)" if self.up_to_date else "incremental")
        read = sum(self.rows_read.values()) + sum(self.change_rows.values())
        full_rows = self.full_scan_rows()
        return {
            "mode": mode,
            "full_rebuild_reason": self.reason or "",
            "substrate_version": self.pin.number,
            "watermarks": {n: f"{self.watermarks.get(n, 'none')} -> {self.targets[n]}" for n in self.targets},
            "change_feed_rows_read": sum(self.change_rows.values()),
            "change_feed_rows_by_source": dict(self.change_rows),
            "run_restamp_commits_skipped": {n: len(v) for n, v in self.skipped_commits.items()},
            "snapshot_rows_read": sum(self.rows_read.values()),
            "snapshot_rows_by_source": dict(self.rows_read),
            "rows_read": read,
            "full_rescan_rows": full_rows,
            "rows_read_pct_of_full": round(100.0 * read / full_rows, 3) if full_rows else 0.0,
            "keys_recomputed": keys_recomputed,
            "rows_inserted": outcome.inserted if outcome else 0,
            "rows_updated": outcome.updated if outcome else 0,
            "rows_deleted": outcome.deleted if outcome else 0,
            "output_version": outcome.version if outcome else None,
            "wall_seconds": round(time.perf_counter() - self.started, 3),
        }


def dates_in(frame: DataFrame) -> str:
    """SQL predicate selecting the settlement dates present in ``frame``."""
    return _date_predicate(frame) or "true"


def _date_predicate(scope: DataFrame | None) -> str | None:
    """Partition filter over the settlement dates in ``scope`` (None: no pruning)."""
    if scope is None or "settlement_date" not in scope.columns:
        return None
    return in_dates(settlement_dates(scope))


def settlement_dates(frame: DataFrame) -> list[dt.date]:
    """The distinct ``settlement_date`` values of ``frame``, ascending (empty when ``frame`` is)."""
    return sorted(row[0] for row in frame.select("settlement_date").distinct().collect())


def in_dates(days: Iterable[dt.date]) -> str:
    """SQL predicate selecting the settlement dates ``days`` (``false`` when there are none)."""
    return sql_in("settlement_date", days)


def volume_runs(run: Snapshots) -> DataFrame:
    """``settlement_date, run_type``: the run of ``settlement_volumes`` held for each date, pinned."""
    runs = run.snapshot(RUNS).where(F.col("feed") == VOLUMES)
    return runs.select("settlement_date", "run_type")


def restamp_versions(store: DeltaStore, spec: TableSpec, after: int, up_to: int) -> list[int]:
    """Versions in ``(after, up_to]`` of ``spec`` that only re-stamp ``run_type`` (from the commit info)."""
    current = store.version(spec) or 0
    marker, value = next(iter(RUN_RESTAMP.items()))
    return sorted(
        c["version"]
        for c in store.history(spec, limit=max(current - after, 1))
        if after < c["version"] <= up_to and c.get(marker) == value
    )


def version_ranges(after: int, up_to: int, skipped: Sequence[int]) -> list[tuple[int, int]]:
    """``(after, up_to]`` as half-open ranges ``(a, b]`` around the ``skipped`` versions."""
    ranges, start = [], after
    for version in sorted(skipped):
        if version > start + 1:
            ranges.append((start, version - 1))
        start = version
    if up_to > start:
        ranges.append((start, up_to))
    return ranges


def combined(outcomes: Sequence[MergeOutcome | None]) -> MergeOutcome:
    """Several writes to one table as one outcome: the last version, the summed row counts."""
    done = [o for o in outcomes if o is not None]
    return MergeOutcome(
        version=max(o.version for o in done),
        inserted=sum(o.inserted for o in done),
        updated=sum(o.updated for o in done),
        deleted=sum(o.deleted for o in done),
    )


Plan = Callable[[StreamRun], tuple[DataFrame, DataFrame | None]]


@dataclass(frozen=True)
class StreamOutput:
    """An output the shared runner refreshes: what it reads, how it plans, where it writes, its checks.

    Free of Dagster: the asset factory runs it in the op (the local engine) and the remote
    entry point runs the same object on a cluster or in a Pipes subprocess.
    """

    stream: str  # the stream's name
    output: TableSpec
    sources: Sequence[Source]
    plan: Plan
    watermark: str = ""  # watermark id when a stream has several outputs (default: the stream)
    checks: Sequence[Check] = ()  # quality checks over what a run wrote (blocking ones guard it)
    #: Updates in place after the MERGE, each ``(run, output) -> outcome | None``: changes that are
    #: a function of the output row and a small source alone (:meth:`StreamRun.restamp_runs`).
    in_place: Sequence[Callable[[StreamRun, TableSpec], MergeOutcome | None]] = ()

    @property
    def consumer(self) -> str:
        return self.watermark or self.stream


def refresh_output(
    out: StreamOutput, spark: SparkSession, store: DeltaStore, profile: Any, run_id: str, log: Any
) -> dict[str, Any]:
    """Run one refresh of ``out`` and return its metadata (the figures the blog reports).

    ``out.plan`` returns the desired output rows and the keys they cover (None: all keys).
    Writes left by a killed run are rolled back first; after the write the checks run, and
    a failed blocking check or any error restores the output to its version before the
    write, leaving the watermarks where they were (see :mod:`margin_pipeline.streams.shared.rollback`).
    A blocked run returns its metadata with ``blocked`` set; an error raises ``RunRolledBack``.
    """
    from margin_pipeline.substrate.versions import resolve_pin

    profile.apply(spark)
    pin = resolve_pin(store, profile.substrate_version)
    recovered = recover(store, out.consumer, out.output, log)
    run = StreamRun(out.consumer, spark, store, out.sources, pin, run_id, profile.full_rebuild, log)
    if run.up_to_date:
        log.info(f"{out.consumer}: every source is at its watermark for substrate version {pin.number}")
        return with_outcome(run.metadata(None, 0), [], recovered, None)
    if run.full:
        log.warning(f"{out.consumer}: full rebuild ({run.reason})")
    before = store.ensure_table(out.output)
    try:
        desired, scope = out.plan(run)  # each is used once: the publish takes both in one query
        key = out.output.key if scope is None else scope.columns
        outcome = run.publish(out.output, desired, scope, key)
        keys, where = outcome.keys, outcome.where
        outcome = combined([outcome, *(step(run, out.output) for step in out.in_place)])
        checks = run_checks(out.checks, check_scope(run, out.output, where))
        blocked = [c.name for c in checks if c.blocking and not c.passed]
        if blocked:
            reason = f"blocking check(s) failed: {', '.join(blocked)}"
            undone = rollback(store, out.output, before, reason, log)
            return with_outcome(run.metadata(outcome, keys), checks, recovered, undone)
        run.finish({out.output.name: store.ensure_table(out.output)})
    except Exception as exc:
        undone = rollback(store, out.output, before, f"the run failed: {type(exc).__name__}", log)
        raise RunRolledBack(out.consumer, undone) from exc
    metadata = with_outcome(run.metadata(outcome, keys), checks, recovered, None)
    log.info(
        f"{out.consumer}: {metadata['mode']}; read {metadata['rows_read']:,} rows "
        f"({metadata['rows_read_pct_of_full']}% of a full rescan); wrote +{outcome.inserted} "
        f"~{outcome.updated} -{outcome.deleted}"
    )
    return metadata


def check_scope(run: StreamRun, output: TableSpec, where: str | None, **extra: Any) -> CheckScope:
    """The checks' view of what ``run`` wrote to ``output`` (rows matching ``where``)."""
    specs = {s.name: s.spec for s in run.sources}
    return CheckScope(run.spark, run.store, output, where, dict(run.targets), specs, **extra)


def with_outcome(
    metadata: dict[str, Any], checks: list[CheckOutcome], *rollbacks: Rollback | None
) -> dict[str, Any]:
    """Add the checks, and the rollbacks that happened, to a run's metadata. ``blocked``: a blocking
    check failed."""
    blocked = [c for c in checks if c.blocking and not c.passed]
    metadata["checks"] = [c.as_dict() for c in checks]
    metadata["blocked"] = bool(blocked)
    metadata["rollback"] = [r.as_dict() for r in rollbacks if r is not None]
    if blocked:
        metadata["watermarks"] = {n: f"{v} (unchanged: blocked)" for n, v in metadata["watermarks"].items()}
    return metadata


class RunRolledBack(RuntimeError):
    """A refresh failed after it may have written; its output was restored (``rollback``, None when
    nothing had been written). The original error is the ``__cause__``."""

    def __init__(self, consumer: str, rollback: Rollback | None) -> None:
        self.rollback = rollback
        done = rollback.describe() if rollback else "nothing had been written"
        super().__init__(f"{consumer} failed; {done}; watermarks unchanged")


def as_metadata(values: dict[str, Any]) -> dict[str, Any]:
    import dagster as dg

    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = dg.MetadataValue.json(value)
        elif value is None:
            out[key] = dg.MetadataValue.null()
        else:
            out[key] = value
    return out
