"""What a stream is, as plain data: the one descriptor each stream package exports.

A **stream** is a named set of **outputs** refreshed together by one job, with one
tuning **profile** (its run config) and one service level. An **output** is one table
the stream publishes; it has one **consumer** (a watermark id and the **sources** whose
change feeds it consumes) and one way to refresh it. Everything else is derived from
these descriptors by :mod:`margin_pipeline.streams.registry`: the jobs and assets of
the code location, the parent's children, the Pipes entry point's dispatch, the SLA
table and the tables maintenance must not vacuum from under a consumer.

Nothing here is a Dagster definition; ``margin_pipeline.defs`` builds those from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from margin_pipeline.store import TableSpec
from margin_pipeline.streams.shared.profile import StreamProfile
from margin_pipeline.streams.shared.runner import Source, StreamOutput, refresh_output
from margin_pipeline.streams.shared.sla import Sla

#: One refresh of an output: ``(spark, store, profile, run_id, log) -> materialization metadata``.
Refresh = Callable[[Any, Any, Any, str, Any], dict[str, Any]]


@dataclass(frozen=True)
class Consumer:
    """One watermark id and the sources it consumes through their change feeds."""

    watermark: str
    sources: Sequence[Source]


@dataclass(frozen=True)
class Output:
    """One table a stream publishes: who consumes into it, how one run refreshes it, and what it is.

    ``runner`` is set when the shared runner refreshes it (one step: plan, merge, checks);
    an output with its own steps (the monthly margin's for-each over months) leaves it None
    and its Dagster asset is built by hand in ``margin_pipeline.defs.streams``.
    """

    table: TableSpec
    consumer: Consumer
    refresh: Refresh
    description: str
    runner: StreamOutput | None = None
    #: Tables the same refresh writes beside ``table`` (the monthly margin's bridge): published and
    #: maintained like it, with no consumer of their own.
    companions: tuple[TableSpec, ...] = ()

    @classmethod
    def of(cls, out: StreamOutput, description: str) -> Output:
        """An output the shared runner refreshes (:func:`~.runner.refresh_output`)."""
        return cls(
            out.output, Consumer(out.consumer, out.sources), partial(refresh_output, out), description, out
        )


@dataclass(frozen=True)
class Stream:
    """A stream: its outputs, its job, its tuning profile and its service level."""

    name: str  # asset group, the job's stream tag, the parent's op, the alert route
    job_name: str
    owner: str  # who answers for it: its assets' owner in the UI (an email or ``team:<name>``)
    description: str  # of its job
    profile: type[StreamProfile]
    sla: Sla
    outputs: Sequence[Output]
    #: Streams that must have succeeded for N before this one starts (the parent's order; for a gated
    #: stream, the streams that must all have consumed N before it may publish).
    after: tuple[str, ...] = ()
    #: Published by the watermark gate, not by the parent: a run refuses while a stream in ``after``
    #: has not consumed its N (a manual materialization then says which).
    gated: bool = False

    @property
    def consumers(self) -> list[Consumer]:
        return [o.consumer for o in self.outputs]

    @property
    def tables(self) -> list[TableSpec]:
        return [o.table for o in self.outputs]
