"""Data-quality checks that guard every publication.

Each stream output declares its checks (``StreamOutput.checks``). They run in the
refresh, after the output's MERGE and before the watermarks advance, over the rows
the run could have changed: the output's settlement dates (or months) in the run's
scope, or the whole table on a full rebuild. A failed *blocking* check rolls the
output back to its last good version and fails the run, so the watermark stays, the
watermark gate stays closed and the next run redoes the range
(:mod:`margin_pipeline.streams.shared.rollback`). The asset reports every check as a
Dagster asset check, blocking ones with ERROR severity.

The checks are Dagster-free (a remote engine runs them too) and read the sources at
the run's pinned versions directly from the store: check reads are not counted in
the stream's ``rows_read``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from margin_pipeline.store import TableSpec
from margin_pipeline.streams.shared.calendar import periods_in_day

#: Money and energy tie-outs compare sums of doubles: 1e-6 GBP (or kWh) per row summed.
TOLERANCE_PER_ROW = 1e-6
#: Failing keys quoted in a check's message and metadata.
EXAMPLES = 5


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckScope:
    """What a check looks at: the output after the write, restricted to the run's scope."""

    spark: Any
    store: Any
    output: TableSpec
    where: str | None  # predicate over the output; None: everything
    targets: dict[str, int]  # source name -> pinned version
    specs: dict[str, TableSpec]  # source name -> spec
    source_where: str | None = None  # predicate over the sources' settlement dates (default: ``where``)
    _rows: DataFrame | None = None

    def rows(self) -> DataFrame:
        if self._rows is None:
            frame = self.store.read(self.spark, self.output, where=self.where)
            self._rows = (frame.where(self.where) if self.where else frame).cache()
        return self._rows

    def source(self, name: str, dated: bool = True) -> DataFrame:
        """Source ``name`` at the run's pinned version; a ``dated`` one (keyed by settlement date)
        restricted to the scope's dates, which also prunes its files."""
        where = (self.source_where or self.where) if dated else None
        if self.targets[name] < 0:  # the source did not exist at the pinned version
            return self.spark.createDataFrame([], from_arrow_schema(self.specs[name].schema))
        frame = self.store.read(self.spark, self.specs[name], version=self.targets[name], where=where)
        return frame.where(where) if where else frame

    def release(self) -> None:
        if self._rows is not None:
            self._rows.unpersist()


Verdict = tuple[bool, str, dict[str, Any]]


@dataclass(frozen=True)
class Count:
    """A verdict to come: the failing rows ``bad`` of the rows ``checked``. :func:`run_checks` counts
    both for every check of a run in one query; the first failures (:data:`EXAMPLES`, each put in
    words by ``describe``) are read only for a check that has any. ``figures``: aggregates over
    ``checked`` reported beside the verdict (rounded to 6 places)."""

    bad: DataFrame
    checked: DataFrame
    what: str
    describe: Callable[[Any], str]
    figures: dict[str, Column] = field(default_factory=dict)

    def verdict(self, failures: int, total: int, figures: dict[str, float]) -> Verdict:
        shown = {name: round(float(value or 0.0), 6) for name, value in figures.items()}
        also = "".join(f"; {name} {value}" for name, value in shown.items())
        if not failures:
            return True, f"{total:,} row(s) checked{also}", {"rows_checked": total, **shown}
        examples = [self.describe(r) for r in self.bad.limit(EXAMPLES).collect()]
        return (
            False,
            f"{failures:,} {self.what}, e.g. {'; '.join(examples)}{also}",
            {"rows_checked": total, "failures": failures, "examples": examples, **shown},
        )


Evaluate = Callable[[CheckScope], Verdict | Count]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    evaluate: Evaluate
    blocking: bool = True


def run_checks(checks: Sequence[Check], scope: CheckScope) -> list[CheckOutcome]:
    """Every check's outcome: the failures and rows checked of all the checks that return a
    :class:`Count` are counted in one query."""
    try:
        results = [check.evaluate(scope) for check in checks]
        counted = iter(_counted([r for r in results if isinstance(r, Count)]))
        outcomes = []
        for check, result in zip(checks, results, strict=True):
            verdict = result.verdict(*next(counted)) if isinstance(result, Count) else result
            outcomes.append(
                CheckOutcome(check.name, verdict[0], check.blocking, check.description, *verdict[1:])
            )
        return outcomes
    finally:
        scope.release()


def _counted(pending: Sequence[Count]) -> list[tuple[int, int, dict[str, float]]]:
    """``(failures, rows checked, figures)`` of each count, from one row: one-row aggregates side by side."""
    if not pending:
        return []
    parts = []
    for i, count in enumerate(pending):
        figures = [column.alias(f"x{i}_{name}") for name, column in count.figures.items()]
        parts.append(count.bad.agg(F.count("*").alias(f"f{i}")))
        parts.append(count.checked.agg(F.count("*").alias(f"t{i}"), *figures))
    row = functools.reduce(DataFrame.crossJoin, parts).first()
    assert row is not None  # aggregates without grouping have one row
    return [
        (row[f"f{i}"], row[f"t{i}"], {name: row[f"x{i}_{name}"] for name in count.figures})
        for i, count in enumerate(pending)
    ]


def _keys(row: Any, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={row[n]}" for n in names)


# --- checks every output has ----------------------------------------------------------------


def schema_matches(scope: CheckScope) -> Verdict:
    """The output's columns and types are the contract's."""
    expected = {f.name: f.dataType.simpleString() for f in from_arrow_schema(scope.output.schema).fields}
    actual = {f.name: f.dataType.simpleString() for f in scope.rows().schema.fields}
    if expected == actual:
        return True, f"{len(expected)} columns as published", {"columns": len(expected)}
    diff = sorted(set(expected.items()) ^ set(actual.items()))
    return False, f"schema differs from the contract: {diff}", {"difference": [str(d) for d in diff]}


def key_unique(scope: CheckScope) -> Count:
    """No two rows share the output's key."""
    key = list(scope.output.key)
    rows = scope.rows()
    dupes = rows.groupBy(*key).count().where("count > 1")
    return Count(dupes, rows, "duplicated key(s)", lambda r: f"({_keys(r, key)}) x{r['count']}")


def complete_days(scope: CheckScope) -> Count:
    """Every MPAN-date present has all its periods 1..N(d) (46, 48 or 50), each once."""
    rows = scope.rows()
    days = (
        rows.groupBy("mpan_core", "settlement_date")
        .agg(
            F.countDistinct("settlement_period").alias("periods"),
            F.min("settlement_period").alias("first"),
            F.max("settlement_period").alias("last"),
        )
        .withColumn("expected", periods_in_day(F.col("settlement_date")))
    )
    incomplete = days.where("periods != expected OR first != 1 OR last != expected")
    return Count(
        incomplete,
        days,
        "incomplete MPAN-date(s)",
        lambda r: f"({r['mpan_core']}, {r['settlement_date']}) has {r['periods']} of {r['expected']}",
    )


STANDARD = (
    Check("schema", "Columns and types are the published contract's.", schema_matches),
    Check("key_unique", "No two rows share the table's key.", key_unique),
)
HALF_HOURLY = (
    *STANDARD,
    Check("complete_days", "Every MPAN-date has all N(d) periods (46/48/50), each once.", complete_days),
)


# --- settlement_cost_hh -------------------------------------------------------------------------


def known_meters(scope: CheckScope) -> Count:
    """Every costed MPAN has a metering point (at the pinned substrate version)."""
    rows = scope.rows()
    meters = scope.source("metering_points", dated=False).select("mpan_core")
    unknown = rows.select("mpan_core").distinct().join(meters, "mpan_core", "left_anti")
    return Count(unknown, rows, "costed MPAN(s) without a metering point", lambda r: r["mpan_core"])


def rows_within_volumes(scope: CheckScope) -> Count:
    """Per settlement date, at most as many rows as the volumes hold (one per volume row, never more)."""
    out = scope.rows().groupBy("settlement_date").agg(F.count("*").alias("rows"))
    volumes = (
        scope.source("settlement_volumes").groupBy("settlement_date").agg(F.count("*").alias("volume_rows"))
    )
    over = out.join(volumes, "settlement_date", "left").fillna(0, ["volume_rows"]).where("rows > volume_rows")
    return Count(
        over,
        out,
        "date(s) with more rows than volumes",
        lambda r: f"{r['settlement_date']}: {r['rows']} rows > {r['volume_rows']} volume rows",
    )


ROWS_WITHIN_VOLUMES = Check(
    "rows_within_volumes", "Row count per date within the volumes' (never more).", rows_within_volumes
)
SETTLEMENT_CHECKS = (
    *HALF_HOURLY,
    Check("known_meters", "No costs for MPANs without a metering point.", known_meters),
    ROWS_WITHIN_VOLUMES,
)
HH_REVENUE_CHECKS = (*HALF_HOURLY, ROWS_WITHIN_VOLUMES)


# --- monthly_day_ledger: across grains ---------------------------------------------------------


def _cost_by_day(scope: CheckScope) -> DataFrame:
    return (
        scope.source("settlement_cost_hh")
        .groupBy("mpan_core", "settlement_date")
        .agg(F.sum("kwh").alias("hh_kwh"), F.sum("total_cost_gbp").alias("hh_cost"), F.count("*").alias("n"))
    )


def kwh_ties_out_by_day(scope: CheckScope) -> Count:
    """A ledger day's kWh is the sum of its half-hourly kWh in settlement_cost_hh."""
    ledger = scope.rows().where("kwh IS NOT NULL AND cost_gbp IS NOT NULL")
    joined = ledger.join(_cost_by_day(scope), ["mpan_core", "settlement_date"], "left")
    off = joined.where(f"hh_kwh IS NULL OR abs(kwh - hh_kwh) > {TOLERANCE_PER_ROW} * greatest(n, 1)")
    return Count(
        off,
        ledger,
        "day(s) whose kWh does not tie out",
        lambda r: (
            f"({r['mpan_core']}, {r['settlement_date']}) ledger {r['kwh']} vs half-hourly {r['hh_kwh']}"
        ),
    )


def cost_conserved(scope: CheckScope) -> Count:
    """Every settlement cost is attributed to exactly one account-day or is unattributed (no agreement):
    a ledger day's cost equals its half-hourly cost; the split is reported."""
    ledger = scope.rows()
    costs = _cost_by_day(scope)
    joined = costs.join(
        ledger.select("mpan_core", "settlement_date", "account_id", "cost_gbp"),
        ["mpan_core", "settlement_date"],
        "left",
    )
    off = joined.where(
        f"cost_gbp IS NOT NULL AND abs(cost_gbp - hh_cost) > {TOLERANCE_PER_ROW} * greatest(n, 1)"
    )
    return Count(
        off,
        joined,
        "account-day(s) whose cost is not conserved",
        lambda r: (
            f"({r['mpan_core']}, {r['settlement_date']}) ledger {r['cost_gbp']} vs half-hourly {r['hh_cost']}"
        ),
        figures={
            "cost_attributed_gbp": F.sum(F.when(F.col("account_id").isNotNull(), F.col("hh_cost"))),
            "cost_unattributed_gbp": F.sum(F.when(F.col("account_id").isNull(), F.col("hh_cost"))),
            "cost_total_gbp": F.sum("hh_cost"),
        },
    )


def one_population(scope: CheckScope) -> Count:
    """Each supplied account-day is in exactly one population: HH days have hh_revenue rows, MONTHLY
    days have none."""
    ledger = scope.rows().where("account_id IS NOT NULL")
    revenue_days = (
        scope.source("hh_revenue")
        .select("mpan_core", "settlement_date")
        .distinct()
        .withColumn("in_hh_revenue", F.lit(True))
    )
    joined = ledger.join(revenue_days, ["mpan_core", "settlement_date"], "left").fillna(
        False, ["in_hh_revenue"]
    )
    wrong = joined.where(
        "billing_grain NOT IN ('HH', 'MONTHLY') OR billing_grain IS NULL "
        "OR (billing_grain = 'MONTHLY' AND in_hh_revenue) "
        "OR (billing_grain = 'HH' AND revenue_gbp IS NOT NULL AND NOT in_hh_revenue)"
    )
    return Count(
        wrong,
        ledger,
        "account-day(s) not in exactly one population",
        lambda r: (
            f"({r['mpan_core']}, {r['settlement_date']}) grain {r['billing_grain']}, "
            f"in hh_revenue {r['in_hh_revenue']}"
        ),
    )


LEDGER_CHECKS = (
    Check("key_unique", "One ledger row per MPAN-date.", key_unique),
    Check("kwh_ties_out", "A day's kWh equals the sum of its half-hourly kWh.", kwh_ties_out_by_day),
    Check(
        "cost_conserved",
        "Each settlement cost is attributed to one account-day or unattributed.",
        cost_conserved,
    ),
    Check(
        "one_population",
        "Each supplied account-day is in exactly one of the HH or MONTHLY populations.",
        one_population,
    ),
)


# --- monthly_margin ------------------------------------------------------------------------------


def month_ties_out(scope: CheckScope) -> Count:
    """An account-month's kWh, revenue and cost are the sums over its contributing ledger days."""
    months = scope.rows()
    ledger = (
        scope.source("monthly_day_ledger")
        .where("contributes")
        .withColumn("month", F.trunc("settlement_date", "month"))
        .groupBy("account_id", "month")
        .agg(
            F.sum("kwh").alias("day_kwh"),
            F.sum("revenue_gbp").alias("day_revenue"),
            F.sum("cost_gbp").alias("day_cost"),
            F.count("*").alias("days"),
        )
    )
    joined = months.join(ledger, ["account_id", "month"], "left")
    tolerance = f"{TOLERANCE_PER_ROW} * 50 * greatest(days, 1)"
    off = joined.where(
        f"days IS NULL OR abs(kwh - day_kwh) > {tolerance} OR abs(revenue_gbp - day_revenue) > {tolerance} "
        f"OR abs(cost_gbp - day_cost) > {tolerance}"
    )
    return Count(
        off,
        months,
        "account-month(s) that do not tie out to their days",
        lambda r: f"({r['account_id']}, {r['month']}) kWh {r['kwh']} vs days {r['day_kwh']}",
    )


MONTHLY_MARGIN_CHECKS = (
    *STANDARD,
    Check(
        "ties_out_to_days",
        "kWh, revenue and cost equal the sums over the month's contributing days.",
        month_ties_out,
    ),
)


# --- hh_margin ---------------------------------------------------------------------------------


def margin_arithmetic(scope: CheckScope) -> Count:
    """margin = revenue - cost on every row."""
    rows = scope.rows()
    off = rows.where(f"abs(margin_gbp - (revenue_gbp - cost_gbp)) > {TOLERANCE_PER_ROW}")
    return Count(off, rows, "row(s) whose margin is not revenue - cost", lambda r: str(r.asDict()))


HH_MARGIN_CHECKS = (
    *HALF_HOURLY,
    Check("margin_arithmetic", "margin_gbp = revenue_gbp - cost_gbp.", margin_arithmetic),
)
