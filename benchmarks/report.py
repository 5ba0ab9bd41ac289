"""Shared output of the benchmarks: fixed-width tables on stdout and a JSON record per run.

Every benchmark writes one JSON file (``benchmarks/results/<name>.json``) holding the
machine it ran on, its parameters, every figure it measured and a timestamp, so that
a later run can be compared with it; and prints the headline figures as tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its header and how a value is formatted.

    ``fmt`` is a format spec (``",.0f"``, ``".2f"``, ``".1%"``) or a callable; ``None``
    cells print as ``-``. Numbers are right-aligned and text left-aligned unless ``align``
    (``"<"`` or ``">"``) says otherwise.
    """

    key: str
    header: str | None = None
    fmt: str | Callable[[Any], str] = ""
    align: str | None = None

    @property
    def title(self) -> str:
        return self.key if self.header is None else self.header

    def cell(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt and isinstance(value, int | float) and not isinstance(value, bool):
            return format(value, self.fmt)
        return str(value)


ColumnLike = Column | str | tuple[str, str] | tuple[str, str, str]


def _column(spec: ColumnLike) -> Column:
    if isinstance(spec, Column):
        return spec
    if isinstance(spec, str):
        return Column(spec)
    return Column(*spec)


def format_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[ColumnLike], title: str | None = None
) -> str:
    """``rows`` (dicts) as a fixed-width text table with one header line and a rule under it."""
    cols = [_column(c) for c in columns]
    body = [[c.cell(row.get(c.key)) for c in cols] for row in rows]
    numeric = [
        any(isinstance(row.get(c.key), int | float) and not isinstance(row.get(c.key), bool) for row in rows)
        for c in cols
    ]
    widths = [max([len(c.title), *(len(line[i]) for line in body)]) for i, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (c, text) in enumerate(zip(cols, cells, strict=True)):
            align = c.align or (">" if numeric[i] else "<")
            parts.append(f"{text:{align}{widths[i]}}")
        return "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line([c.title for c in cols]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(cells) for cells in body)
    return "\n".join(out)


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[ColumnLike],
    title: str | None = None,
    file: IO[str] | None = None,
) -> None:
    """Print :func:`format_table` followed by a blank line."""
    print(format_table(list(rows), columns, title), end="\n\n", file=file or sys.stdout)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: Path | str, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON at ``path``, atomically (via ``<path>.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info(packages: Sequence[str] = ("pyarrow", "deltalake", "numpy")) -> dict[str, Any]:
    """What a result depends on besides the code: platform, CPUs, memory, Python and packages."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in packages},
    }


def timestamp() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def describe(values: Iterable[float]) -> dict[str, float | int | None]:
    """``n, min, median, mean, max`` of ``values`` (``None`` when empty)."""
    data = sorted(values)
    if not data:
        return {"n": 0, "min": None, "median": None, "mean": None, "max": None}
    return {
        "n": len(data),
        "min": data[0],
        "median": statistics.median(data),
        "mean": statistics.fmean(data),
        "max": data[-1],
    }


def rss_mb() -> float | None:
    """Current resident set size of this process in MB (Linux ``/proc``), else ``None``."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


class RssSampler:
    """This process's RSS sampled every ``every`` seconds in a thread; :meth:`take` is the peak (MB)
    since the last take (``ru_maxrss`` only ever rises, so it cannot say which phase made a peak)."""

    def __init__(self, every: float = 0.05) -> None:
        self.peak = rss_mb() or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every,), daemon=True)
        self._thread.start()

    def _sample(self, every: float) -> None:
        while not self._stop.wait(every):
            self.peak = max(self.peak, rss_mb() or 0.0)

    def take(self) -> tuple[float, float]:
        """The peak since the last take and the RSS now (MB); the next peak starts from now."""
        now = rss_mb() or 0.0
        peak, self.peak = max(self.peak, now), now
        return peak, now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MB (``ru_maxrss`` is KB on Linux) of this process or its children."""
    import resource

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024
