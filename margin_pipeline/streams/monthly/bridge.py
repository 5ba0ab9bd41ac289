"""The margin bridge (docs/contract.md, "Margin bridge"): why an account-month's margin moved, by cause.

When a monthly stream run moves ``gold/monthly_margin`` from substrate version ``N0`` (what it had
consumed before) to ``N1``, every account-month whose margin moved gets one row per input class
that moved it, by sequential substitution in the fixed order of :data:`CAUSES`::

    S_k      = classes 1..k as held at N1, classes k+1..5 as held at N0   (S_0 = N0, S_5 = N1)
    delta_k  = M(S_k) - M(S_k-1)        a row when |delta_k| > 1e-6

``M(S)`` is the account-month's ``margin_gbp`` computed from substrate state ``S`` by the streams'
own rule functions (:func:`settlement_cost`, :func:`hh_revenue`, the ledger's :func:`tallies` and
:func:`day_ledger`, then :func:`monthly_margin`), 0 where the account-month has no row. So the
rows of an account-month sum to its movement, a run that moves nothing writes nothing, and there
is no second implementation of the business rules.

Scope: only the account-months whose published margin moved in the run (the keys of the run's
commits in ``monthly_margin``'s change feed), and within them only the MPAN-days whose ledger rows
the run consumed changes of (the day ledger's change feed over the same range): a month's margin is
a sum over its days, and a day whose inputs are the same at N0 and N1 adds the same to all six
states, so it cancels in every movement. The six states share their reads: a table whose version
is the same at N0 and N1 is read once. They share their day tallies too: a source's tally is
computed once for all the states that read its tables at the same versions (a price restatement
moves no revenue), and each state's ledger and margin start from them.

Every run that consumes a new N records ``(N0 -> N1)`` in ``control/monthly_margin_history``, with
the scope its bridge explains (:func:`record_pair`): the commit writes that row before the watermarks
advance and records it with ``monthly_margin`` as the run's outputs, so a run killed in between is
undone by the next one like its margin writes (:func:`~.rollback.recover`). The bridge itself is
written after the commit, by the run's next step (:func:`explain_recorded`): it explains every
recorded pair not yet explained, oldest first, and marks it explained. So hh_margin does not wait
for the bridge (the gate opens on the commit), and a bridge that failed or was killed is written by
the next step that runs: the run re-executed from failure, or the next monthly run. A pair is
explained at most once more than needed (a killed step, or a history restored past its mark), and
explaining it again writes the same rows. A backfill of months rebuilds their bridge rows from the
recorded pairs (:func:`rebuild_months`).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from margin_pipeline.contracts.feeds import RUN_RANK
from margin_pipeline.gold import MARGIN_BRIDGE, MONTHLY_MARGIN
from margin_pipeline.store import TableSpec
from margin_pipeline.store.base import (
    DeltaStore,
    StaleWatermarkError,
    replace_rows,
    to_arrow,
    with_delete_flag,
)
from margin_pipeline.streams.half_hourly.rules import hh_revenue
from margin_pipeline.streams.monthly.profile import next_month
from margin_pipeline.streams.monthly.rules import (
    combine_tallies,
    day_ledger,
    monthly_margin,
    tally,
    tally_columns,
)
from margin_pipeline.streams.monthly.tables import DAY_LEDGER
from margin_pipeline.streams.settlement.rules import settlement_cost
from margin_pipeline.streams.shared.changes import union_all
from margin_pipeline.streams.shared.runner import (
    VOLUMES,
    Source,
    StreamRun,
    in_dates,
    settlement_dates,
    volume_runs,
)
from margin_pipeline.streams.shared.tariffs import validity_overlaps
from margin_pipeline.streams.shared.volumes import with_run
from margin_pipeline.substrate.tables import RUNS, SUBSTRATE
from margin_pipeline.substrate.versions import resolve_pin

#: The input classes in substitution order, each with the substrate tables (landing feeds) it covers.
CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("volumes", (VOLUMES, RUNS)),  # values, and the run held per date
    ("prices", ("prices",)),
    ("charges", ("charges",)),
    ("rates", ("tariffs", "tariff_rates")),
    ("registrations", ("metering_points", "supply_agreements")),
)
SOURCES = [Source(name, SUBSTRATE[name]) for _, names in CAUSES for name in names]
#: A movement or a cause smaller than this is none (the contract's tolerance).
TOLERANCE = 1e-6

#: One row per substrate version the monthly margin consumed: the pair a bridge explains.
MARGIN_HISTORY = TableSpec(
    name="control/monthly_margin_history",
    schema=pa.schema(
        [
            pa.field("to_version", pa.int64(), nullable=False),
            pa.field("from_version", pa.int64()),  # null: the first version this deployment consumed
            pa.field("output_version", pa.int64()),  # monthly_margin's Delta version after the run
            pa.field("run_id", pa.string()),
            pa.field("committed_at", pa.timestamp("us", tz="UTC")),
            # The scope the pair's bridge explains (null in all four: recorded by a release that wrote
            # the bridge in the commit itself, so explained then). monthly_margin's version before the
            # run's months merged: the account-months the commits after it moved.
            pa.field("output_before", pa.int64()),
            # The day ledger's versions (after, up_to] the run consumed: the MPAN-days whose inputs
            # changed (null: every day of the moved months).
            pa.field("ledger_after", pa.int64()),
            pa.field("ledger_up_to", pa.int64()),
            pa.field("explained", pa.bool_()),  # false until the bridge step has written its rows
        ]
    ),
    key=("to_version",),
)
#: The name the bridge step's commits carry (``margin_pipeline.stream``): not the monthly stream's,
#: whose interrupted writes the next run undoes (:func:`~.rollback.recover`), for the bridge is
#: written after the run's commit.
BRIDGE_WRITER = "monthly.bridge"


class _Reads:
    """The substrate at N0 and at N1; each (table, version, filter) is read once for all six states.

    Each read is registered as a temporary view and the states refer to it by name: the six states
    use every table many times, and a plan that carried the rows inline at each use would pass
    Spark Connect's 128 MiB limit at a few meters already.
    """

    def __init__(self, spark: SparkSession, store: DeltaStore, n0: int, n1: int, run_id: str) -> None:
        self.spark, self.store = spark, store
        self.views: list[str] = []
        self.sides = [
            StreamRun("monthly.bridge", spark, store, SOURCES, resolve_pin(store, n), run_id, consume=False)
            for n in (n0, n1)
        ]
        self.frames: dict[tuple[str, int, str | None], DataFrame] = {}

    def state(self, k: int) -> _State:
        """``S_k``: the tables of the first ``k`` classes at N1, the others at N0."""
        return _State(self, frozenset(name for _, names in CAUSES[:k] for name in names))

    def read(self, side: StreamRun, name: str, where: str | None) -> DataFrame:
        key = (name, side.targets[name], where)
        if key not in self.frames:
            self.frames[key] = self._view(side.snapshot(name, where))
        return self.frames[key]

    def hold(self, rows: pa.Table) -> DataFrame:
        """``rows`` on the engine, as a view the states refer to by name (sent once)."""
        return self._view(self.store.frame(self.spark, rows))

    def _view(self, frame: DataFrame) -> DataFrame:
        view = f"margin_bridge_{uuid.uuid4().hex}"
        frame.createOrReplaceTempView(view)
        self.views.append(view)
        return self.spark.table(view)

    def close(self) -> None:
        for view in self.views:
            self.spark.catalog.dropTempView(view)

    @property
    def rows_read(self) -> int:
        return sum(sum(side.rows_read.values()) for side in self.sides)


class _State:
    def __init__(self, reads: _Reads, at_n1: frozenset[str]) -> None:
        self.reads, self.at_n1 = reads, at_n1
        self.used: set[str] = set()  # the tables read from this state

    def side(self, name: str) -> StreamRun:
        before, after = self.reads.sides
        return after if name in self.at_n1 else before

    def snapshot(self, name: str, where: str | None = None) -> DataFrame:
        self.used.add(name)
        return self.reads.read(self.side(name), name, where)

    def versions(self, names: frozenset[str]) -> frozenset[tuple[str, int]]:
        """The version this state reads each of ``names`` at."""
        return frozenset((name, self.side(name).targets[name]) for name in names)


def days_of(months: Sequence[dt.date]) -> list[dt.date]:
    days: list[dt.date] = []
    for month in months:
        days += [month + dt.timedelta(days=i) for i in range((next_month(month) - month).days)]
    return days


@dataclass(frozen=True)
class _Scope:
    """What one query of the bridge covers: ``months`` (ascending), only the account-months in
    ``accounts`` (``account_id, month``) when given, else every account; only the MPAN-days ``days``
    when given (a month's margin is a sum over its days: days whose inputs are the same in every
    state add the same to every state, so they cancel in every movement)."""

    months: list[dt.date]
    accounts: DataFrame | None
    days: Days | None

    @property
    def bounds(self) -> tuple[dt.date, dt.date]:
        return self.months[0], next_month(self.months[-1]) - dt.timedelta(days=1)

    @property
    def dates(self) -> list[dt.date]:
        return self.days.dates if self.days is not None else days_of(self.months)


def _volumes(state: _State, scope: _Scope) -> DataFrame:
    """The scope's volume rows in ``state``."""
    volumes = state.snapshot(VOLUMES, where=in_dates(scope.dates))
    if scope.days is not None:
        volumes = volumes.join(scope.days.keys, ["mpan_core", "settlement_date"], "left_semi")
    if scope.accounts is not None:
        agreements = state.snapshot("supply_agreements")
        ours = agreements.join(scope.accounts.select("account_id").distinct(), "account_id", "left_semi")
        volumes = volumes.join(ours.select("mpan_core").distinct(), "mpan_core", "left_semi")
    return volumes


def _cost(state: _State, scope: _Scope) -> DataFrame:
    """The scope's ``settlement_cost_hh`` rows in ``state``, by the settlement stream's rule."""
    prices = state.snapshot("prices", where=in_dates(scope.dates))
    volumes = with_run(state, _volumes(state, scope))
    return settlement_cost(volumes, state.snapshot("metering_points"), prices, state.snapshot("charges"))


def _revenue(state: _State, scope: _Scope) -> DataFrame:
    """The scope's ``hh_revenue`` rows in ``state``, by the half_hourly stream's rule."""
    rates = state.snapshot("tariff_rates", where=validity_overlaps(scope.dates))
    return hh_revenue(
        _volumes(state, scope),
        state.snapshot("metering_points"),
        state.snapshot("supply_agreements"),
        state.snapshot("tariffs"),
        rates,
        scope.bounds,
    )


#: The half-hourly rows the day ledger tallies, by its source name (``TALLY_OF``).
HALF_HOURS = {VOLUMES: _volumes, "settlement_cost_hh": _cost, "hh_revenue": _revenue}
#: One source's tally of one state (:func:`tally`, its columns renamed), tagged by ``piece``.
PIECE = pa.schema(
    [
        pa.field("mpan_core", pa.string()),
        pa.field("settlement_date", pa.date32()),
        pa.field("piece", pa.int32()),
        pa.field("periods", pa.int64()),
        pa.field("total", pa.float64()),
        pa.field("through", pa.int64()),
    ]
)
PIECE_COLUMNS = PIECE.names[3:]


class _DayTallies:
    """Per state, the MPAN-day tallies of its half-hourly rows, computed in one engine query and held
    as one view.

    A source's tally depends only on the tables its rows are read from, so states that read all of
    them at the same versions share it: a price restatement moves no revenue, a rate change no cost.
    Which tables those are is learnt from the first state's reads, so no list of them is kept here.
    The states' ledgers and margins then start from the held tallies, so the engine computes each
    distinct tally once (a query over every state computed each state's three anew: the engines
    reuse no common part of a plan)."""

    def __init__(self, reads: _Reads, scope: _Scope, states: Sequence[int]) -> None:
        self.tag: dict[tuple[int, str], int] = {}
        pieces: dict[tuple[str, frozenset[tuple[str, int]]], int] = {}
        frames = []
        for source, rows_of in HALF_HOURS.items():
            reads_from: frozenset[str] | None = None
            for k in states:
                state = reads.state(k)
                key = None if reads_from is None else (source, state.versions(reads_from))
                if key is None or key not in pieces:
                    rows = rows_of(state, scope)
                    reads_from = frozenset(state.used)
                    key = (source, state.versions(reads_from))
                    pieces[key] = len(pieces)
                    named = tally_columns(source)
                    frames.append(
                        tally(rows, source, 0).select(
                            "mpan_core",
                            "settlement_date",
                            F.lit(pieces[key]).cast("int").alias("piece"),
                            *(F.col(c).alias(p) for c, p in zip(named, PIECE_COLUMNS, strict=True)),
                        )
                    )
                self.tag[(k, source)] = pieces[key]
        self.held = reads.hold(to_arrow(union_all(frames), PIECE))

    def of(self, k: int) -> DataFrame:
        """``S_k``'s tallies, as :func:`tallies` gives them."""
        parts = {}
        for source in HALF_HOURS:
            named = tally_columns(source)
            parts[source] = self.held.where(F.col("piece") == self.tag[(k, source)]).select(
                "mpan_core",
                "settlement_date",
                *(F.col(p).alias(c) for p, c in zip(PIECE_COLUMNS, named, strict=True)),
            )
        return combine_tallies(parts)


def margins(state: _State, scope: _Scope, tallied: DataFrame) -> DataFrame:
    """``account_id, month, margin_gbp`` of the scope from ``state`` and its day ``tallied``
    (:class:`_DayTallies`), by the streams' rules (the ledger's :func:`day_ledger`, then
    :func:`monthly_margin`)."""
    agreements = state.snapshot("supply_agreements")
    rates = state.snapshot("tariff_rates", where=validity_overlaps(scope.dates))
    ledger = day_ledger(
        tallied,
        state.snapshot("metering_points"),
        agreements,
        state.snapshot("tariffs"),
        rates,
        volume_runs(state),
        scope.bounds,
    )
    margin = monthly_margin(ledger, agreements)
    if scope.accounts is not None:
        margin = margin.join(scope.accounts, ["account_id", "month"], "left_semi")
    return margin.select("account_id", "month", "margin_gbp")


@dataclass(frozen=True)
class Days:
    """MPAN-days (``mpan_core, settlement_date``) and their dates."""

    keys: DataFrame
    dates: list[dt.date]


#: The dates one query of the bridge covers at most (whole months: a month is never split). A pair
#: whose movements span more (a catch-up after days without a monthly run, a backfill) is explained a
#: few months at a time: at 1,000 meters, one query over the 89 days of publications between two
#: versions took the process to 11 GB.
CHUNK_DATES = 31


def month_chunks(months: Sequence[dt.date], dates: Sequence[dt.date] | None) -> list[list[dt.date]]:
    """``months`` in order, grouped so each group holds at most :data:`CHUNK_DATES` of ``dates`` (None:
    every day of the months), or is a single month."""
    chunks: list[list[dt.date]] = []
    size = 0
    for month in sorted(months):
        end = next_month(month)
        count = (end - month).days if dates is None else sum(1 for d in dates if month <= d < end)
        if chunks and size + count <= CHUNK_DATES:
            chunks[-1].append(month)
            size += count
        else:
            chunks.append([month])
            size = count
    return chunks


def explain(
    spark: SparkSession,
    store: DeltaStore,
    n0: int,
    n1: int,
    months: Sequence[dt.date],
    accounts: DataFrame | None,
    run_id: str,
    days: Days | None = None,
) -> tuple[pa.Table, int]:
    """Bridge rows from ``n0`` to ``n1`` of the account-months of ``months`` (only those in ``accounts``
    when given) whose margin moved, and the substrate rows read. ``days``: the MPAN-days whose inputs
    changed between the two versions (None: every day of the months). A month's margin is a sum over
    its own days, so the months are explained a few at a time (:func:`month_chunks`)."""
    parts, read = [], 0
    for chunk in month_chunks(months, None if days is None else days.dates):
        first, end = chunk[0], next_month(chunk[-1])
        whole = len(chunk) == len(months)  # one query for every month: nothing to narrow
        within, scoped = days, accounts
        if days is not None and not whole:
            dates = [d for d in days.dates if first <= d < end]
            if not dates:  # no day of these months changed: their movements are all 0
                continue
            keys = days.keys.where(
                (F.col("settlement_date") >= F.lit(first)) & (F.col("settlement_date") < F.lit(end))
            )
            within = Days(keys, dates)
        if accounts is not None and not whole:
            scoped = accounts.where(F.col("month").isin(chunk))
        rows, chunk_read = _explain_months(spark, store, n0, n1, chunk, scoped, run_id, within)
        parts.append(rows)
        read += chunk_read
    return (pa.concat_tables(parts) if parts else _empty()), read


def _explain_months(
    spark: SparkSession,
    store: DeltaStore,
    n0: int,
    n1: int,
    months: Sequence[dt.date],
    accounts: DataFrame | None,
    run_id: str,
    days: Days | None,
) -> tuple[pa.Table, int]:
    """:func:`explain` of months that one query covers."""
    reads = _Reads(spark, store, n0, n1, run_id)
    # S_k is S_k-1 when no table of class k changed between N0 and N1: evaluated once, its cause is 0.
    before, after = reads.sides
    same = [all(before.targets[t] == after.targets[t] for t in tables) for _, tables in CAUSES]
    distinct = [0, *(k for k in range(1, len(CAUSES) + 1) if not same[k - 1])]
    scope = _Scope(sorted(months), accounts, days)
    tallied = _DayTallies(reads, scope, distinct)
    states = [margins(reads.state(k), scope, tallied.of(k)).withColumn("state", F.lit(k)) for k in distinct]
    margin = [F.sum(F.when(F.col("state") == k, F.col("margin_gbp"))).alias(f"m{k}") for k in distinct]
    wide = union_all(states).groupBy("account_id", "month").agg(*margin).fillna(0.0)
    m = [F.col(f"m{max(d for d in distinct if d <= k)}") for k in range(len(CAUSES) + 1)]
    causes = F.explode(
        F.array(
            *[
                F.struct(F.lit(c).alias("cause"), (m[k] - m[k - 1]).alias("delta_gbp"))
                for k, (c, _) in enumerate(CAUSES, 1)
            ]
        )
    )
    rows = (
        wide.where(F.abs(m[-1] - m[0]) > TOLERANCE)
        .select("account_id", "month", causes.alias("c"))
        .where(F.abs(F.col("c.delta_gbp")) > TOLERANCE)
        .select(
            "account_id",
            "month",
            F.lit(n1).cast("long").alias("to_version"),
            F.col("c.cause").alias("cause"),
            F.lit(n0).cast("long").alias("from_version"),
            F.col("c.delta_gbp").alias("delta_gbp"),
        )
    )
    try:
        return to_arrow(rows, MARGIN_BRIDGE.schema), reads.rows_read
    finally:
        reads.close()


def record_pair(
    store: DeltaStore,
    n0: int | None,
    n1: int,
    output_before: int,
    ledger_range: tuple[int, int] | None,
    run_id: str,
    commit_info: dict[str, str],
) -> None:
    """Record that a run moved the margin from ``n0`` (None: nothing consumed before) to ``n1``, for
    :func:`explain_recorded` to explain: the account-months its commits after ``output_before`` moved,
    over the day ledger's versions ``ledger_range`` ``(after, up_to]`` (None: every day of those
    months). Nothing when ``n0 == n1`` (a rebuild at the same N moved nothing) or the pair is recorded
    already (a replay leaves it be). Written by the commit, before the watermarks advance."""
    if n0 == n1:
        return
    store.ensure_table(MARGIN_HISTORY)
    held = store.read_arrow(MARGIN_HISTORY).filter(pc.equal(pc.field("to_version"), n1)).to_pylist()
    if held and held[0]["from_version"] == n0:
        return
    row = {
        "to_version": n1,
        "from_version": n0,
        "output_version": store.ensure_table(MONTHLY_MARGIN),
        "run_id": run_id,
        "committed_at": dt.datetime.now(dt.UTC),
        "output_before": output_before,
        "ledger_after": None if ledger_range is None else ledger_range[0],
        "ledger_up_to": None if ledger_range is None else ledger_range[1],
        "explained": False,
    }
    rows = pa.Table.from_pylist([row], MARGIN_HISTORY.schema)
    store.merge(MARGIN_HISTORY, with_delete_flag(rows, MARGIN_HISTORY, delete=False), commit_info=commit_info)


def explain_recorded(
    spark: SparkSession, store: DeltaStore, run_id: str, commit_info: dict[str, str]
) -> dict[str, Any] | None:
    """Write the bridge of every recorded pair not yet explained, oldest first, each marked explained
    once its rows are written. None: nothing to explain. Returns the figures the asset shows."""
    if store.version(MARGIN_HISTORY) is None:
        return None
    pending = store.read_arrow(MARGIN_HISTORY).filter(pc.equal(pc.field("explained"), False)).to_pylist()
    pending.sort(key=lambda p: p["to_version"])
    if not pending:
        return None
    started = time.perf_counter()
    store.ensure_table(MARGIN_BRIDGE)
    modes, parts, read = [], [], 0
    for pair in pending:
        mode, rows, pair_read = explain_pair(spark, store, pair, run_id)
        held = store.read_arrow(MARGIN_BRIDGE, where=f"to_version = {pair['to_version']}")
        held = held.filter(pc.equal(held.column("to_version"), pair["to_version"]))  # explained before
        if rows.num_rows or held.num_rows:
            replace_rows(store, MARGIN_BRIDGE, rows, held, commit_info)
        store.update(MARGIN_HISTORY, {"explained": "true"}, f"to_version = {pair['to_version']}", commit_info)
        modes.append(mode)
        parts.append(rows)
        read += pair_read
    mode = modes[0] if len(modes) == 1 else f"incremental ({len(modes)} recorded pairs)"
    first, last = pending[0]["from_version"], pending[-1]["to_version"]
    return summary(mode, first, last, pa.concat_tables(parts), read, started)


def explain_pair(
    spark: SparkSession, store: DeltaStore, pair: dict[str, Any], run_id: str
) -> tuple[str, pa.Table, int]:
    """The bridge rows of one recorded pair (its mode, rows and substrate rows read)."""
    n0, n1 = pair["from_version"], pair["to_version"]
    if n0 is None:
        return "first version (nothing to explain)", _empty(), 0
    if pair["output_version"] == pair["output_before"]:  # the run moved no margin
        return "incremental", _empty(), 0
    changes = store.read_changes(spark, MONTHLY_MARGIN, pair["output_before"], pair["output_version"]).frame
    moved = changes.select("account_id", "month").distinct().cache()
    months = [r["month"] for r in moved.select("month").distinct().collect()]
    days = None
    if pair["ledger_after"] is not None:
        ledger = store.read_changes(spark, DAY_LEDGER, pair["ledger_after"], pair["ledger_up_to"]).frame
        keys = ledger.select("mpan_core", "settlement_date").distinct().cache()
        days = Days(keys, settlement_dates(keys))
    rows, read = explain(spark, store, n0, n1, months, moved, run_id, days)
    return "incremental", rows, read


def rebuild_months(
    spark: SparkSession,
    store: DeltaStore,
    months: Sequence[dt.date],
    through: int | None,
    run_id: str,
    commit_info: dict[str, str],
) -> dict[str, Any]:
    """A backfill's bridge: the rows of ``months`` rebuilt for every recorded pair up to ``through``
    (the monthly margin's committed N), every account of the months; their other rows deleted. A
    pair is explained only for the months whose inputs it changed (:func:`months_changed`)."""
    started = time.perf_counter()
    store.ensure_table(MARGIN_BRIDGE)
    pairs = [
        (r["from_version"], r["to_version"])
        for r in (
            store.read_arrow(MARGIN_HISTORY).to_pylist() if store.version(MARGIN_HISTORY) is not None else []
        )
        if r["from_version"] is not None and through is not None and r["to_version"] <= through
    ]
    parts, read, skipped = [], 0, 0
    for n0, n1 in sorted(pairs, key=lambda p: p[1]):
        changed, changes_read = months_changed(spark, store, n0, n1, months)
        read += changes_read
        skipped += len(months) - len(changed)
        if changed:
            rows, pair_read = explain(spark, store, n0, n1, changed, None, run_id)
            parts.append(rows)
            read += pair_read
    rows = pa.concat_tables(parts) if parts else _empty()
    held = store.read_arrow(MARGIN_BRIDGE, where=f"month >= '{min(months)}' AND month <= '{max(months)}'")
    in_months = pc.is_in(held.column("month"), pa.array(sorted(months), pa.date32()))
    replace_rows(store, MARGIN_BRIDGE, rows, held.filter(in_months), commit_info)
    meta = summary("backfill", min((p[0] for p in pairs), default=None), through, rows, read, started)
    meta["pairs_rebuilt"] = len(pairs)
    meta["pair_months_unchanged"] = skipped
    return meta


#: The dates a substrate table's row can move: the columns of its first and last (a settlement date
#: twice; a validity or supply range, open where null) and the days to widen them by on each side
#: (rates: their validity is in UTC instants, a local date's periods start up to a day either side).
#: A changed row moves only the months its range overlaps. Not here (metering points, tariffs): a
#: change may move every month.
DATED_BY: dict[str, tuple[str, str, int]] = {
    VOLUMES: ("settlement_date", "settlement_date", 0),
    RUNS: ("settlement_date", "settlement_date", 0),
    "prices": ("settlement_date", "settlement_date", 0),
    "charges": ("valid_from", "valid_to", 0),
    "tariff_rates": ("valid_from", "valid_to", 1),
    "supply_agreements": ("supply_start", "supply_end", 0),
}


def months_changed(
    spark: SparkSession, store: DeltaStore, n0: int, n1: int, months: Sequence[dt.date]
) -> tuple[list[dt.date], int]:
    """The months of ``months`` whose inputs differ between substrate versions ``n0`` and ``n1``, and
    the change-feed rows read to tell. A month none of whose inputs changed has the same margin in all
    six states: nothing to explain. A changed row of a table in :data:`DATED_BY` moves the months its
    dates overlap (its pre-image's and post-image's: both are in the feed); any other changed table,
    or a change feed no longer readable, every month."""
    before, after = resolve_pin(store, n0), resolve_pin(store, n1)
    spans: set[tuple[dt.date | None, dt.date | None]] = set()
    read = 0
    for name in (n for _, names in CAUSES for n in names):
        v0, v1 = before.version_of(name), after.version_of(name)
        if v0 == v1:
            continue
        if name not in DATED_BY or v0 is None or v1 is None:
            return sorted(months), read
        try:
            changes = store.read_changes(spark, SUBSTRATE[name], min(v0, v1), max(v0, v1))
        except StaleWatermarkError:
            return sorted(months), read
        first, last, widen = DATED_BY[name]
        found = changes.frame.select(F.to_date(first).alias("lo"), F.to_date(last).alias("hi")).distinct()
        margin = dt.timedelta(days=widen)
        spans |= {
            (None if r["lo"] is None else r["lo"] - margin, None if r["hi"] is None else r["hi"] + margin)
            for r in found.collect()
        }
        read += changes.rows
    touched = [
        m
        for m in months
        if any((lo is None or lo < next_month(m)) and (hi is None or hi >= m) for lo, hi in spans)
    ]
    return sorted(touched), read


def _empty() -> pa.Table:
    return MARGIN_BRIDGE.schema.empty_table()


def summary(
    mode: str, n0: int | None, n1: int | None, rows: pa.Table, read: int, started: float
) -> dict[str, Any]:
    """What the bridge of one run did: how, the versions, its size, and its rows by account-month,
    largest movement first (``movements``: account_id, month, movement_gbp and one figure per cause)."""
    by_key: dict[tuple[str, dt.date], dict[str, Any]] = {}
    for row in rows.to_pylist():
        entry = by_key.setdefault(
            (row["account_id"], row["month"]),
            {"account_id": row["account_id"], "month": row["month"].isoformat(), "movement_gbp": 0.0},
        )
        entry[row["cause"]] = row["delta_gbp"]
        entry["movement_gbp"] += row["delta_gbp"]
    movements = sorted(by_key.values(), key=lambda e: (-abs(e["movement_gbp"]), e["account_id"], e["month"]))
    return {
        "mode": mode,
        "from_version": n0,
        "to_version": n1,
        "account_months_moved": len(movements),
        "bridge_rows": rows.num_rows,
        "substrate_rows_read": read,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "movements": movements,
    }


@dataclass(frozen=True)
class Movement:
    """One movement of an account-month's margin, from ``from_version`` to ``to_version``."""

    from_version: int | None
    to_version: int
    margin_before: float  # 0.0: no row
    margin_after: float
    causes: dict[str, float]  # every class, in substitution order (0.0 where it had no row)
    runs_before: dict[str, int]  # run type held -> dates of the month, at from_version
    runs_after: dict[str, int]


def movements_of(store: DeltaStore, account_id: str, month: dt.date) -> tuple[float | None, list[Movement]]:
    """The account-month's published margin now (None: no row) and each movement the bridge explains,
    oldest first. The margin before and after each movement are the margin now less the movements
    since (the rows of a movement add up to it), so no old version of monthly_margin need be readable."""
    now = None
    if store.version(MONTHLY_MARGIN) is not None:
        rows = store.read_arrow(MONTHLY_MARGIN, where=f"month = '{month}'").to_pylist()
        now = next(
            (r["margin_gbp"] for r in rows if r["account_id"] == account_id and r["month"] == month), None
        )
    if store.version(MARGIN_BRIDGE) is None:
        return now, []
    by_version: dict[int, dict[str, Any]] = {}
    for row in store.read_arrow(MARGIN_BRIDGE, where=f"month = '{month}'").to_pylist():
        if row["account_id"] == account_id and row["month"] == month:
            entry = by_version.setdefault(row["to_version"], {"from": row["from_version"], "causes": {}})
            entry["causes"][row["cause"]] = row["delta_gbp"]
    moves: list[Movement] = []
    after = now or 0.0
    for to_version in sorted(by_version, reverse=True):
        entry = by_version[to_version]
        causes = {c: entry["causes"].get(c, 0.0) for c, _ in CAUSES}
        before = after - sum(causes.values())
        runs = [_runs_held(store, v, month) for v in (entry["from"], to_version)]
        moves.append(Movement(entry["from"], to_version, before, after, causes, *runs))
        after = before
    return now, moves[::-1]


def _runs_held(store: DeltaStore, number: int | None, month: dt.date) -> dict[str, int]:
    """How many dates of ``month`` hold each volume run at substrate version ``number``."""
    if number is None:
        return {}
    version = resolve_pin(store, number).version_of(RUNS)
    if version is None:
        return {}
    last = next_month(month) - dt.timedelta(days=1)
    runs = store.read_arrow(
        SUBSTRATE[RUNS], version, where=f"settlement_date >= '{month}' AND settlement_date <= '{last}'"
    )
    held: dict[str, int] = {}
    for row in runs.to_pylist():
        if row["feed"] == VOLUMES and month <= row["settlement_date"] <= last:
            held[row["run_type"]] = held.get(row["run_type"], 0) + 1
    return dict(sorted(held.items(), key=lambda kv: RUN_RANK[kv[0]]))
