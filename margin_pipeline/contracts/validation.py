"""Whole-file validation of landing CSVs against docs/contract.md ('Validation and quarantine').

:func:`read_landing_file` parses a file into a typed Arrow table or raises
:class:`FileRejected` naming the file, the 1-based line (the header is line 1)
and the rule broken. Checks are vectorised with pyarrow compute so that a
multi-million-row volumes file validates in seconds; only the *first* offending
line is reported, which is enough to fix the file.

Rules that depend on what is already held (no overlapping validity after the
file is applied) live in :mod:`margin_pipeline.substrate.publish`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from margin_pipeline.contracts.calendar import periods_in_day
from margin_pipeline.contracts.feeds import (
    BILLING_GRAINS,
    CHARGE_UNITS,
    GSP_GROUPS,
    QUALITIES,
    RUN_TYPES,
    ColumnType,
    Feed,
    Kind,
)
from margin_pipeline.contracts.mpan import PRIMES

LINE = "_line"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^-?\d{1,9}$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
_TIME = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"


class FileRejected(Exception):
    """A landing file broke a contract rule; the whole file is rejected and nothing of it applied."""

    def __init__(self, file: Path | str, rule: str, message: str, line: int | None = None) -> None:
        self.file = str(file)
        self.rule = rule
        self.line = line
        self.message = message
        where = f"{self.file}, line {line}" if line is not None else self.file
        super().__init__(f"{where}: {rule}: {message}")

    def to_json(self, feed: str) -> dict[str, Any]:
        return {
            "file": self.file,
            "feed": feed,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
            "outcome": "file moved to quarantine; nothing in it was applied",
            "rejected_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def write_beside(self, quarantined: Path, feed: str) -> Path:
        target = quarantined.with_name(quarantined.name + ".error.json")
        target.write_text(json.dumps(self.to_json(feed), indent=2) + "\n", encoding="utf-8")
        return target


@dataclass(frozen=True)
class LandingFile:
    """A validated landing file: typed rows in the feed's schema plus each row's line number."""

    feed: Feed
    path: Path
    rows: pa.Table  # feed.arrow_schema + LINE (int64)

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows


def read_landing_file(feed: Feed, path: Path) -> LandingFile:
    """Parse and validate ``path`` as a file of ``feed``; raise :class:`FileRejected` on any rule."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FileRejected(path, "encoding", f"not valid UTF-8 ({exc.reason})", line) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    header = _check_header(feed, path, text)
    if not text.endswith("\n"):
        text += "\n"
    try:
        strings = _parse_strings(path, text, header)
        table = _typed(feed, path, strings)
        _check_rows(feed, path, table)
    except (pa.ArrowException, ValueError) as exc:
        # A shape no rule above anticipated: still the file's fault, still rejected whole.
        raise FileRejected(path, "unreadable", f"could not be parsed: {exc}") from exc
    return LandingFile(feed, path, table)


def _check_header(feed: Feed, path: Path, text: str) -> list[str]:
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first.strip():
        raise FileRejected(path, "header", f"missing header row; expected {','.join(feed.column_names)}", 1)
    header = next(csv.reader([first]))
    missing = [c for c in feed.column_names if c not in header]
    extra = [c for c in header if c not in feed.column_names]
    dupes = sorted({c for c in header if header.count(c) > 1})
    if missing or extra or dupes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
        parts.append(f"repeated {dupes}" if dupes else "")
        raise FileRejected(
            path,
            "header",
            f"columns must be {','.join(feed.column_names)}: {'; '.join(p for p in parts if p)}",
            1,
        )
    return header


def _parse_strings(path: Path, text: str, header: list[str]) -> pa.Table:
    """All cells as strings, row i being line i + 2. Any malformed row rejects the file."""
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if len(row) != len(header):
                raise FileRejected(
                    path, "row shape", f"expected {len(header)} fields, found {len(row)}", number
                ) from exc
        raise FileRejected(path, "row shape", f"unreadable CSV: {exc}") from exc
    return table.append_column(LINE, pa.array(np.arange(2, table.num_rows + 2, dtype=np.int64)))


def _first(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first true value of a boolean mask (nulls count as false)."""
    values = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
    hits = np.flatnonzero(values)
    return int(hits[0]) if hits.size else None


def _reject_first(
    path: Path, table: pa.Table, mask: pa.Array | pa.ChunkedArray, rule: str, message: str
) -> None:
    """Raise for the first row where ``mask`` holds; ``message`` may refer to ``{row[column]}``."""
    index = _first(mask)
    if index is None:
        return
    row = {k: v for k, v in table.slice(index, 1).to_pylist()[0].items() if k != LINE}
    line = int(table.column(LINE)[index].as_py())
    raise FileRejected(path, rule, message.format(row=row), line)


def _typed(feed: Feed, path: Path, strings: pa.Table) -> pa.Table:
    columns: list[pa.Array] = []
    for column in feed.columns:
        cells = pc.utf8_trim_whitespace(strings.column(column.name))
        empty = pc.equal(cells, "")
        if column.required:
            _reject_first(path, strings, empty, f"{column.name} required", f"{column.name} is empty")
        parsed = _parse_column(path, strings, column.name, column.type, cells, empty)
        columns.append(parsed if column.empty_as is None else pc.fill_null(parsed, column.empty_as))
    names = [*feed.column_names, LINE]
    return pa.Table.from_arrays([*columns, strings.column(LINE)], names=names)


def _parse_column(
    path: Path, strings: pa.Table, name: str, kind: ColumnType, cells: pa.ChunkedArray, empty: pa.ChunkedArray
) -> pa.ChunkedArray:
    present = pc.invert(empty)
    pattern = {
        ColumnType.INT: (_INTEGER, "an integer"),
        ColumnType.DOUBLE: (_NUMBER, "a number"),
        ColumnType.DATE: (_DATE, "a date YYYY-MM-DD"),
        ColumnType.TIMESTAMP: (_TIMESTAMP, "a UTC timestamp YYYY-MM-DDTHH:MM:SSZ"),
        ColumnType.TIME: (_TIME, "a local time HH:MM"),
    }.get(kind)
    if pattern is not None:
        regex, what = pattern
        bad = pc.and_(present, pc.invert(pc.match_substring_regex(cells, regex)))
        _reject_first(path, strings, bad, f"{name} format", f"{name} must be {what}, got {{row[{name}]!r}}")
    valued = pc.if_else(empty, pa.scalar(None, pa.string()), cells)
    if kind is ColumnType.DATE or kind is ColumnType.TIMESTAMP:
        fmt = "%Y-%m-%d" if kind is ColumnType.DATE else "%Y-%m-%dT%H:%M:%SZ"
        stamps = pc.strptime(valued, format=fmt, unit="us", error_is_null=True)
        # strptime rolls impossible dates over (2025-02-30 -> 2025-03-02): insist on a round trip.
        round_trip = pc.equal(pc.strftime(stamps.cast(pa.timestamp("s")), format=fmt), valued)
        bad = pc.and_(present, pc.invert(pc.fill_null(round_trip, False)))
        _reject_first(path, strings, bad, f"{name} format", f"{name} is not a real date: {{row[{name}]!r}}")
        if kind is ColumnType.DATE:
            return stamps.cast(pa.timestamp("us")).cast(pa.date32())
        return pc.assume_timezone(stamps, "UTC")
    return valued.cast(kind.arrow)


def _check_rows(feed: Feed, path: Path, table: pa.Table) -> None:
    col = table.column

    def reject(mask: pa.ChunkedArray, rule: str, message: str) -> None:
        _reject_first(path, table, mask, rule, message)

    def not_in(name: str, allowed: tuple[str, ...]) -> pa.ChunkedArray:
        values = col(name)
        return pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, pa.array(allowed))))

    if "gsp_group" in feed.column_names:
        # Our reading: the 14 groups hold wherever gsp_group appears; charges also allow "" (every group).
        allowed = (*GSP_GROUPS, "") if feed.name == "charges" else GSP_GROUPS
        reject(not_in("gsp_group", allowed), "gsp_group", "gsp_group must be one of " + " ".join(GSP_GROUPS))
    if "run_type" in feed.column_names:
        reject(not_in("run_type", RUN_TYPES), "run_type", "run_type must be one of " + " < ".join(RUN_TYPES))

    if feed.name == "metering_points":
        reject(
            _bad_mpan(col("mpan_core")),
            "mpan_core check digit",
            "not a 13-digit MPAN core with a valid check digit",
        )
        llf = col("line_loss_factor")
        reject(pc.or_(pc.less(llf, 1.0), pc.greater(llf, 1.2)), "line_loss_factor", "must be within 1.0..1.2")
    elif feed.name == "tariffs":
        reject(
            not_in("billing_grain", BILLING_GRAINS), "billing_grain", "billing_grain must be HH or MONTHLY"
        )
    elif feed.name == "tariff_rates":
        reject(
            pc.less_equal(col("valid_to"), col("valid_from")), "validity", "valid_to must be after valid_from"
        )
    elif feed.name == "supply_agreements":
        reject(
            pc.less(col("supply_end"), col("supply_start")), "validity", "supply_end is before supply_start"
        )
    elif feed.name == "charges":
        reject(not_in("unit", CHARGE_UNITS), "unit", "unit must be one of " + ", ".join(CHARGE_UNITS))
        reject(
            pc.less_equal(col("valid_to"), col("valid_from")), "validity", "valid_to must be after valid_from"
        )
        start, end = col("band_start"), col("band_end")
        reject(
            pc.not_equal(pc.is_null(start), pc.is_null(end)), "band", "band_start and band_end go together"
        )
        reject(pc.equal(start, end), "band", "band_start equals band_end: the band would be empty")
        reject(pc.equal(start, "24:00"), "band", "band_start must be before 24:00")
        reject(
            pc.and_(pc.is_valid(start), pc.equal(col("unit"), "P_PER_DAY")),
            "band",
            "a band limits a unit charge; P_PER_DAY charges cannot have one",
        )
    elif feed.name == "settlement_volumes":
        reject(not_in("quality", QUALITIES), "quality", "quality must be A or E")
        reject(pc.less(col("kwh"), 0.0), "kwh", "kwh must be >= 0")

    if feed.kind is Kind.UPSERT:
        _check_unique_key(path, table, feed.key)
    else:
        scope = [c for c in feed.key if c != "settlement_period"] + ["run_type"]
        _check_complete_days(path, table, scope)


def _bad_mpan(mpan: pa.ChunkedArray) -> pa.ChunkedArray:
    shaped = pc.match_substring_regex(mpan, r"^\d{13}$")
    digits = pc.if_else(shaped, mpan, "0000000000000")
    total = pa.scalar(0, pa.int64())
    for i, prime in enumerate(PRIMES):
        digit = pc.utf8_slice_codeunits(digits, i, i + 1).cast(pa.int64())
        total = pc.add(total, pc.multiply(digit, prime))
    check = pc.utf8_slice_codeunits(digits, 12, 13).cast(pa.int64())
    return pc.or_(pc.invert(shaped), pc.not_equal(pc.remainder(pc.remainder(total, 11), 10), check))


def _check_unique_key(
    path: Path, table: pa.Table, key: tuple[str, ...], rule: str = "key unique in file"
) -> None:
    """Reject at the first line whose key already appeared on an earlier line."""
    counts = table.group_by(list(key), use_threads=False).aggregate([(LINE, "count")])
    dupes = counts.filter(pc.greater(counts.column(f"{LINE}_count"), 1)).select(list(key))
    if not dupes.num_rows:
        return
    seen: set[tuple] = set()
    for row in table.join(dupes, list(key), join_type="inner").sort_by(LINE).to_pylist():
        identity = tuple(row[k] for k in key)
        if identity in seen:
            described = ", ".join(f"{k}={row[k]}" for k in key)
            raise FileRejected(
                path, rule, f"duplicate: ({described}) appears on more than one line", row[LINE]
            )
        seen.add(identity)


def _check_complete_days(path: Path, table: pa.Table, scope: list[str]) -> None:
    """Every publication scope (MPAN-date or date, per run type) has periods 1..N(d) exactly once."""
    if table.num_rows == 0:
        return
    _check_unique_key(path, table, (*scope, "settlement_period"), rule="complete day")
    days = table.column("settlement_date").unique().to_pylist()
    n_of = pa.table(
        {
            "settlement_date": pa.array(days, pa.date32()),
            "_n": pa.array([periods_in_day(d) for d in days], pa.int64()),
        }
    )
    with_n = table.join(n_of, "settlement_date")
    out_of_range = pc.or_(
        pc.less(with_n.column("settlement_period"), 1),
        pc.greater(with_n.column("settlement_period"), with_n.column("_n")),
    )
    index = _first(out_of_range)
    if index is not None:
        row = with_n.slice(index, 1).to_pylist()[0]
        raise FileRejected(
            path,
            "settlement_period range",
            f"{row['settlement_date']} has periods 1..{row['_n']}; got {row['settlement_period']}",
            row[LINE],
        )
    groups = with_n.group_by([*scope, "_n"], use_threads=False).aggregate(
        [("settlement_period", "count"), ("settlement_period", "count_distinct"), (LINE, "max")]
    )
    bad = pc.or_(
        pc.not_equal(groups.column("settlement_period_count"), groups.column("_n")),
        pc.not_equal(groups.column("settlement_period_count_distinct"), groups.column("_n")),
    )
    index = _first(bad)
    if index is not None:
        g = groups.slice(index, 1).to_pylist()[0]
        what = ", ".join(f"{k}={g[k]}" for k in scope)
        dupes = g["settlement_period_count"] - g["settlement_period_count_distinct"]
        problem = f"{dupes} duplicate period(s)" if dupes else f"{g['settlement_period_count']} periods"
        raise FileRejected(
            path,
            "complete day",
            f"({what}) must have every period 1..{g['_n']} exactly once; found {problem}",
            g[f"{LINE}_max"],
        )
