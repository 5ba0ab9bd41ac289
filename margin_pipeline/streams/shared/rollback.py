"""Rollback of a stream's output to its last good Delta version.

A stream writes its output with one MERGE and then, in one commit of
``control/stream_watermarks``, advances its watermarks and records the output's
version (the *last good version*). Two things can leave an output ahead of that
record, and both end with the output restored to it and the watermarks where they
were, so the next run redoes the same range:

- the run fails after writing (an error, or a blocking quality check): the runner
  restores the output before it reports the failure (:func:`rollback`);
- the run is killed after writing (``SIGKILL``, a lost node): nothing in it can act,
  so the next run of the stream restores the output before it plans
  (:func:`recover`).

A restore is itself a commit whose change feed deletes and re-inserts the rows of the
swapped files; downstream streams read it like any other change and recompute those
keys, which is why a rollback never needs to touch them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from margin_pipeline.store import TableSpec
from margin_pipeline.store.base import DeltaStore
from margin_pipeline.streams.shared.watermarks import read_watermarks

#: Commit operations that change a table's rows (maintenance such as OPTIMIZE or VACUUM does not).
DATA_OPERATIONS = frozenset({"MERGE", "WRITE", "DELETE", "UPDATE", "CREATE OR REPLACE TABLE"})


@dataclass(frozen=True)
class Rollback:
    table: str
    from_version: int
    to_version: int
    reason: str

    def describe(self) -> str:
        return f"{self.table} restored from version {self.from_version} to {self.to_version} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(store: DeltaStore, spec: TableSpec, to_version: int, reason: str, log: Any) -> Rollback | None:
    """Restore ``spec`` to ``to_version`` if a later version exists; None when there was nothing to undo."""
    current = store.version(spec)
    if current is None or current <= to_version:
        return None
    store.restore(spec, to_version)
    done = Rollback(spec.name, current, to_version, reason)
    log.warning(f"rollback: {done.describe()}")
    return done


def uncommitted_writes(store: DeltaStore, spec: TableSpec, consumer: str, committed: int) -> list[int]:
    """Versions after ``committed`` where ``consumer`` changed rows and no later restore undid them."""
    pending: list[int] = []
    for commit in sorted(store.history(spec), key=lambda c: c["version"]):
        if commit["version"] <= committed:
            continue
        operation = commit.get("operation", "")
        if operation == "RESTORE":
            restored_to = int(commit.get("operationParameters", {}).get("version", -1))
            pending = [v for v in pending if v <= restored_to]
        elif operation in DATA_OPERATIONS and commit.get("margin_pipeline.stream") == consumer:
            pending.append(commit["version"])
    return pending


def recover(store: DeltaStore, consumer: str, spec: TableSpec, log: Any) -> Rollback | None:
    """Undo the writes an interrupted run of ``consumer`` left in ``spec`` after its last good version."""
    committed = read_watermarks(store, consumer).outputs.get(spec.name)
    if committed is None or store.version(spec) is None:
        return None
    pending = uncommitted_writes(store, spec, consumer, committed)
    if not pending:
        return None
    reason = f"versions {pending} were written by a run of {consumer} that never committed (killed?)"
    return rollback(store, spec, committed, reason, log)
