"""How synthetic publications are shaped as feed tables and written as landing CSV files.

A table carries the contract's columns, order and Arrow types; floats are rounded to the
decimals they are written with, so a file read back equals the table. A file is
``landing/<feed>/<asof-date>_<NN>_<feed>.csv``: header row, UTF-8, comma separated,
unquoted, dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DDTHH:MM:SSZ`` and floats with a fixed
number of decimals. It is written under a dot-name and renamed into place, so a watcher
of the folder never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from margin_pipeline.contracts.feeds import FEEDS, ColumnType

DECIMALS: dict[str, int] = {
    "line_loss_factor": 3,
    "unit_rate_p_per_kwh": 4,
    "standing_charge_p_per_day": 2,
    "rate": 4,
    "kwh": 3,
    "price_gbp_per_mwh": 2,
}
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")


def feed_table(feed: str, columns: Mapping[str, object]) -> pa.Table:
    """The rows of one feed from column values (arrays or lists), in the contract's schema.

    ``None`` is an empty cell; where the contract gives an empty cell a meaning kept in a key
    (a charge for every GSP group) it becomes the contract's ``empty_as`` value.
    """
    schema = FEEDS[feed].arrow_schema
    arrays = []
    for column in FEEDS[feed].columns:
        values = columns[column.name]
        if column.type is ColumnType.DOUBLE:
            values = np.round(np.asarray(values, dtype=np.float64), DECIMALS[column.name]) + 0.0
        array = values if isinstance(values, pa.Array) else pa.array(values, type=column.type.arrow)
        arrays.append(array if column.empty_as is None else pc.fill_null(array, column.empty_as))
    return pa.Table.from_arrays(arrays, schema=schema)


def rows_table(feed: str, rows: list[tuple[object, ...]]) -> pa.Table:
    """The rows of one feed from tuples in the contract's column order."""
    names = FEEDS[feed].column_names
    return feed_table(feed, dict(zip(names, (list(c) for c in zip(*rows, strict=True)), strict=True)))


def landing_path(landing: Path, feed: str, asof_date: dt.date) -> Path:
    """Where the generator drops the file of ``feed`` for an as-of date.

    ``NN`` orders the drops of one feed on one as-of date; the generator makes one drop
    per feed and day (``00``), so hand-made corrections dropped later sort after it as
    ``01``, ``02``, ...
    """
    return landing / feed / f"{asof_date.isoformat()}_00_{feed}.csv"


def write_feed_csv(path: Path, feed: str, table: pa.Table) -> None:
    """Write ``table`` of ``feed`` as a landing CSV at ``path``, atomically."""
    text_columns = []
    for column, values in zip(FEEDS[feed].columns, table.columns, strict=True):
        if column.type is ColumnType.TIMESTAMP:
            values = pc.strftime(values.cast(pa.timestamp("s", tz="UTC")), format=TIMESTAMP_FORMAT)
        elif column.type is ColumnType.DOUBLE:
            values = values.cast(pa.decimal128(18, DECIMALS[column.name]), safe=False).cast(pa.string())
        text_columns.append(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with pa.OSFile(str(partial), "wb") as sink:
        sink.write((",".join(FEEDS[feed].column_names) + "\n").encode())
        if table.num_rows:
            pacsv.write_csv(pa.table(text_columns, names=list(FEEDS[feed].column_names)), sink, _CSV_OPTIONS)
    os.replace(partial, path)
