"""Apply one validated landing file to its substrate table, atomically (one MERGE commit).

Upsert feeds merge on their key. Publication feeds (``settlement_volumes``,
``prices``) follow docs/contract.md ('Publication semantics'): the rows of one
``(settlement_date, run_type)`` in a file are a complete publication for that date;
a rank at or above what is held replaces the date (changed values update, new keys
insert, absent keys delete); a lower rank is stale, ignored and reported. Validity-overlap rules are checked
against the table *as it would be after the file*, before anything is written.

The run held for each date lives in ``substrate/publication_runs``, not on the
feed's rows, so a restatement writes only the values that changed. A publication
is two commits: the feed's rows first, then the dates' runs. A crash between the
two leaves the rows of the new run under the old run's name until the file,
still in landing, is applied again (its rows then change nothing and its runs
commit); streams never see the gap, because the substrate version N is recorded
only after the ingest run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from margin_pipeline.contracts.feeds import RUN_RANK, RUN_TYPES, Kind
from margin_pipeline.contracts.validation import LINE, FileRejected, LandingFile
from margin_pipeline.store import MergeOutcome
from margin_pipeline.store.base import DeltaStore, sql_in, tombstones, with_delete_flag
from margin_pipeline.substrate.tables import PUBLICATION_RUNS, SUBSTRATE


@dataclass(frozen=True)
class Overlap:
    """A no-overlap rule: rows of one ``group`` must have disjoint ``[start, end)`` validity."""

    group: tuple[str, ...]
    start: str
    end: str
    end_inclusive: bool = False  # supply agreements use inclusive end dates


OVERLAP_RULES: dict[str, Overlap] = {
    "tariff_rates": Overlap(("tariff_code", "gsp_group"), "valid_from", "valid_to"),
    "supply_agreements": Overlap(("mpan_core",), "supply_start", "supply_end", end_inclusive=True),
    "charges": Overlap(("charge_code", "gsp_group"), "valid_from", "valid_to"),
}


@dataclass(frozen=True)
class Applied:
    """What applying one file did to the substrate."""

    feed: str
    rows: int
    outcome: MergeOutcome  # the feed's table
    publications: list[str] = field(default_factory=list)  # "2025-10-01 R1", applied
    stale: list[str] = field(default_factory=list)  # "2025-10-01 SF < R1 held", ignored
    runs: MergeOutcome | None = None  # substrate/publication_runs (publication feeds)

    @property
    def changed(self) -> bool:
        """Whether the file changed the substrate (its rows, or only the run held for a date)."""
        return bool(self.outcome.changed or (self.runs is not None and self.runs.changed))

    @property
    def status(self) -> str:
        if self.changed:
            return "applied"
        return "stale" if self.stale and not self.publications else "unchanged"


def apply_file(store: DeltaStore, landing: LandingFile, commit_info: dict[str, str]) -> Applied:
    """Validate against held state and write ``landing`` to its substrate table in one commit."""
    spec = SUBSTRATE[landing.feed.name]
    store.ensure_table(spec)
    if landing.feed.kind is Kind.UPSERT:
        rule = OVERLAP_RULES.get(landing.feed.name)
        if rule is not None:
            _check_no_overlap(store, landing, rule)
        source = with_delete_flag(landing.rows, spec, delete=False)
        return Applied(landing.feed.name, landing.num_rows, store.merge(spec, source, commit_info))
    return _apply_publications(store, landing, commit_info)


def _apply_publications(store: DeltaStore, landing: LandingFile, commit_info: dict[str, str]) -> Applied:
    spec = SUBSTRATE[landing.feed.name]
    rows = landing.rows
    if rows.num_rows == 0:
        return Applied(landing.feed.name, 0, MergeOutcome(store.version(spec) or 0))
    offered = rows.group_by(["settlement_date", "run_type"], use_threads=False).aggregate([])
    dates = sorted(set(offered.column("settlement_date").to_pylist()))
    held = _held_ranks(store, landing, dates)
    best_in_file: dict[dt.date, int] = {}
    for day, run in zip(
        offered.column("settlement_date").to_pylist(), offered.column("run_type").to_pylist(), strict=True
    ):
        best_in_file[day] = max(best_in_file.get(day, -1), RUN_RANK[run])

    accepted: dict[dt.date, str] = {}
    stale: list[str] = []
    for day in dates:
        rank = best_in_file[day]
        if day in held and rank < held[day]:
            stale.append(f"{day} {RUN_TYPES[rank]} < {RUN_TYPES[held[day]]} held")
        else:
            accepted[day] = RUN_TYPES[rank]
    # A file carrying two runs of one date: the higher one is the publication, the lower is stale.
    for day, run in zip(
        offered.column("settlement_date").to_pylist(), offered.column("run_type").to_pylist(), strict=True
    ):
        if RUN_RANK[run] < best_in_file[day]:
            stale.append(f"{day} {run} < {RUN_TYPES[best_in_file[day]]} in the same file")

    if not accepted:
        version = store.version(spec) or 0
        return Applied(landing.feed.name, landing.num_rows, MergeOutcome(version), [], stale)

    chosen = pa.table(
        {
            "settlement_date": pa.array(list(accepted), pa.date32()),
            "run_type": pa.array(list(accepted.values()), pa.string()),
        }
    )
    publish = rows.join(chosen, ["settlement_date", "run_type"], join_type="inner")
    held_keys = store.read_arrow(spec, where=sql_in("settlement_date", accepted), columns=list(spec.key))
    held_keys = held_keys.filter(
        pc.is_in(held_keys.column("settlement_date"), chosen.column("settlement_date"))
    )
    absent = held_keys.join(publish.select(list(spec.key)), list(spec.key), join_type="left anti")
    source = pa.concat_tables([with_delete_flag(publish, spec, delete=False), tombstones(absent, spec)])
    outcome = store.merge(spec, source, commit_info)
    runs = chosen.add_column(0, "feed", pa.array([landing.feed.name] * chosen.num_rows, pa.string()))
    runs_outcome = store.merge(PUBLICATION_RUNS, with_delete_flag(runs, PUBLICATION_RUNS, False), commit_info)
    published = [f"{day} {run}" for day, run in accepted.items()]
    return Applied(landing.feed.name, landing.num_rows, outcome, published, stale, runs_outcome)


def _held_ranks(store: DeltaStore, landing: LandingFile, dates: list[dt.date]) -> dict[dt.date, int]:
    """The rank of the run held for each of ``dates`` that has one (from ``publication_runs``)."""
    store.ensure_table(PUBLICATION_RUNS)
    held = store.read_arrow(PUBLICATION_RUNS).filter(
        (pc.field("feed") == landing.feed.name)
        & pc.field("settlement_date").isin(pa.array(dates, pa.date32()))
    )
    return {
        day: RUN_RANK[run]
        for day, run in zip(
            held.column("settlement_date").to_pylist(), held.column("run_type").to_pylist(), strict=True
        )
    }


def _check_no_overlap(store: DeltaStore, landing: LandingFile, rule: Overlap) -> None:
    """Reject the file if, once applied, two rows of one group would be valid at the same time."""
    spec = SUBSTRATE[landing.feed.name]
    groups = landing.rows.select(list(rule.group)).group_by(list(rule.group), use_threads=False).aggregate([])
    held = store.read_arrow(spec).join(groups, list(rule.group), join_type="inner")
    held = held.join(landing.rows.select(list(spec.key)), list(spec.key), join_type="left anti")
    cols = [*rule.group, rule.start, rule.end]
    after = pa.concat_tables(
        [
            held.select(cols).append_column(LINE, pa.nulls(held.num_rows, pa.int64())),
            landing.rows.select([*cols, LINE]),
        ]
    ).sort_by([(c, "ascending") for c in [*rule.group, rule.start]])
    if after.num_rows < 2:
        return
    start = _as_int(after.column(rule.start))
    end = _as_int(after.column(rule.end))
    end = np.where(np.isnan(end), np.inf, end + (1 if rule.end_inclusive else 0))
    same_group = np.ones(after.num_rows - 1, dtype=bool)
    for name in rule.group:
        values = after.column(name)
        same_group &= pc.equal(values.slice(0, after.num_rows - 1), values.slice(1)).to_numpy()
    clash = np.flatnonzero(same_group & (start[1:] < end[:-1]))
    if clash.size:
        i = int(clash[0])
        lines = after.column(LINE).to_pylist()
        line = lines[i + 1] if lines[i + 1] is not None else lines[i]
        first, second = after.slice(i, 2).to_pylist()
        group = ", ".join(f"{g}={first[g]}" for g in rule.group)
        raise FileRejected(
            landing.path,
            "no overlap",
            f"rows of ({group}) would overlap once applied: {_span(first, rule)} and {_span(second, rule)}",
            line,
        )


def _span(row: dict, rule: Overlap) -> str:
    end = row[rule.end] if row[rule.end] is not None else "open"
    return f"[{row[rule.start]}, {end}{']' if rule.end_inclusive else ')'}"


def _as_int(values: pa.ChunkedArray) -> np.ndarray:
    """Dates/timestamps as float64 ticks with NaN for null (an open end)."""
    storage = pa.int32() if pa.types.is_date32(values.type) else pa.int64()
    ints = values.cast(storage).cast(pa.int64())
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.float64)
