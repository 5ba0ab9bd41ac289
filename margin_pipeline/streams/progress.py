"""How far each stream has got: its watermarks against what substrate version N asks it to consume.

A stream has *consumed N* when, for each of its consumers, every source's
watermark equals the version a run pinned to N would read: the substrate
version recorded for N, or the current version of an upstream published table.
This is the one test behind the parent's skip decision (nothing in its change
feed), the watermark gate, the SLA sensor (:func:`lagging`) and ``margin-pipeline run``'s
wait; it reads only the small control tables, never data.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from margin_pipeline.store.base import DeltaStore
from margin_pipeline.streams.registry import STREAMS
from margin_pipeline.streams.shared.runner import BEFORE_FIRST_VERSION, source_targets
from margin_pipeline.streams.shared.sla import Sla
from margin_pipeline.streams.shared.stream import Stream
from margin_pipeline.streams.shared.watermarks import Watermarks, every_watermark
from margin_pipeline.substrate.versions import SubstratePin, latest_substrate_version, resolve_pin


@dataclass(frozen=True)
class SourceLag:
    consumer: str
    source: str
    watermark: int | None
    target: int

    @property
    def behind(self) -> bool:
        if self.watermark is None:
            return self.target != BEFORE_FIRST_VERSION
        return self.watermark != self.target

    def __str__(self) -> str:
        seen = "none" if self.watermark is None else self.watermark
        return f"{self.consumer}:{self.source} {seen} -> {self.target}"


@dataclass(frozen=True)
class StreamProgress:
    stream: str
    substrate_version: int
    sources: tuple[SourceLag, ...]
    #: The substrate version N the stream last consumed: the lowest over its consumers (None: never).
    last_consumed: int | None = None

    @property
    def consumed(self) -> bool:
        return not any(s.behind for s in self.sources)

    @property
    def behind(self) -> tuple[SourceLag, ...]:
        return tuple(s for s in self.sources if s.behind)

    def describe(self) -> str:
        if self.consumed:
            return f"{self.stream} has consumed substrate version {self.substrate_version}"
        changed = ", ".join(str(s) for s in self.behind)
        return f"{self.stream} is behind substrate version {self.substrate_version}: {changed}"


def stream_progress(
    store: DeltaStore, stream: Stream, pin: SubstratePin, watermarks: Mapping[str, Watermarks] | None = None
) -> StreamProgress:
    """``stream`` against ``pin``; ``watermarks``: :func:`every_watermark` when read already (a status of
    several streams reads them once)."""
    watermarks = every_watermark(store) if watermarks is None else watermarks
    lags: list[SourceLag] = []
    numbers: list[int | None] = []
    for consumer in stream.consumers:
        marks = watermarks.get(consumer.watermark) or Watermarks(consumer.watermark, {}, None)
        numbers.append(marks.substrate_version)
        for name, target in source_targets(store, consumer.sources, pin).items():
            lags.append(SourceLag(consumer.watermark, name, marks.versions.get(name), target))
    last = None if any(n is None for n in numbers) else min(n for n in numbers if n is not None)
    return StreamProgress(stream.name, pin.number, tuple(lags), last)


@dataclass(frozen=True)
class Lag:
    """A stream that has not consumed substrate version N within its freshness window."""

    stream: str
    substrate_version: int
    recorded_at: dt.datetime
    waited: dt.timedelta
    sla: Sla
    behind: str  # which sources, as ``StreamProgress.describe`` says

    @property
    def key(self) -> str:
        return f"{self.stream}@{self.substrate_version}"


def lagging(store: DeltaStore, now: dt.datetime | None = None) -> list[Lag]:
    """Streams that have not consumed the latest substrate version within their freshness window."""
    number = latest_substrate_version(store)
    if number is None:
        return []
    pin = resolve_pin(store, number)
    if pin.recorded_at is None:
        return []
    now = now or dt.datetime.now(dt.UTC)
    waited = now - pin.recorded_at
    lags = []
    watermarks = every_watermark(store)
    for stream in STREAMS.values():
        if waited <= stream.sla.freshness:
            continue
        progress = stream_progress(store, stream, pin, watermarks)
        if not progress.consumed:
            lags.append(Lag(stream.name, number, pin.recorded_at, waited, stream.sla, progress.describe()))
    return lags


def gate_status(
    store: DeltaStore, streams: Sequence[Stream], pin: SubstratePin
) -> tuple[list[StreamProgress], str]:
    """Where ``streams`` stand against ``pin``, and one line for a person: each stream's last consumed
    N, then who is waited for ("N=7: settlement 7, half_hourly 7, monthly 6: waiting for monthly")."""
    watermarks = every_watermark(store)
    progress = [stream_progress(store, s, pin, watermarks) for s in streams]
    numbers = ", ".join(f"{p.stream} {p.last_consumed or 'none'}" for p in progress)
    behind = [p.stream for p in progress if not p.consumed]
    waiting = f"waiting for {' and '.join(behind)}" if behind else f"every stream has consumed N={pin.number}"
    return progress, f"N={pin.number}: {numbers}: {waiting}"
