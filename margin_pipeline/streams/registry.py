"""The one list of streams. Everything that speaks of "the streams" derives from it.

Adding a stream: a package under ``margin_pipeline/streams/`` exporting its
:class:`~margin_pipeline.streams.shared.stream.Stream` descriptor, and one entry below.
From here come the stream jobs and assets (``margin_pipeline.defs.streams``), the
parent's children and their order (``margin_pipeline.defs.job_of_jobs``), the Pipes
entry point's dispatch (:mod:`margin_pipeline.remote.entry`), the SLA sensor's table,
and the tables maintenance must keep readable for a lagging consumer.
"""

from margin_pipeline.store import TableSpec
from margin_pipeline.streams.half_hourly import HALF_HOURLY
from margin_pipeline.streams.monthly import MONTHLY
from margin_pipeline.streams.reconciled import RECONCILED
from margin_pipeline.streams.settlement import SETTLEMENT
from margin_pipeline.streams.shared.stream import Output, Stream

#: The grain-aligned streams the parent runs for each substrate version N, in dependency order
#: (a stream's ``after`` names streams listed before it).
CHILD_STREAMS: tuple[Stream, ...] = (SETTLEMENT, HALF_HOURLY, MONTHLY)
#: Every stream: the parent's children and the reconciled layer the watermark gate publishes.
STREAMS: dict[str, Stream] = {s.name: s for s in (*CHILD_STREAMS, RECONCILED)}


def output_of(table: str) -> tuple[Stream, Output]:
    """The stream publishing ``table`` (a table name such as ``hh_revenue``) and its output."""
    for stream in STREAMS.values():
        for output in stream.outputs:
            if output.table.name == table:
                return stream, output
    known = sorted(o.table.name for s in STREAMS.values() for o in s.outputs)
    raise ValueError(f"unknown stream output {table!r}: expected one of {known}")


def consumed_tables() -> dict[str, TableSpec]:
    """Every table some consumer reads through its change feed, by the name watermarks use."""
    return {
        source.name: source.spec
        for stream in STREAMS.values()
        for consumer in stream.consumers
        for source in consumer.sources
    }


def published_tables() -> dict[str, TableSpec]:
    """Every table a stream publishes (outputs and their companions), by its short name (``hh_revenue``)."""
    return {t.short_name: t for s in STREAMS.values() for o in s.outputs for t in (o.table, *o.companions)}
