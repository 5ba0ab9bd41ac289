"""Op retries for transient faults, set by each stream's profile.

A transient fault (a Delta commit conflict, a lost engine server, a Spark/JVM or network hiccup) is retried
with exponential backoff and jitter, up to the profile's ``retry.max_attempts``; a
deterministic one (bad data, a bug, a failed quality check) fails at once. The
decision is made in the op (``RetryRequested``), so it follows the run config; a
failed attempt has already rolled its output back (:mod:`.rollback`), so the next
attempt starts from the last good version.

Run-level retries (``run_retries`` in ``dagster.yaml``) only re-launch runs that died
outside an op (a lost process); ``retry_on_asset_or_op_failure: false`` keeps them from
multiplying these op retries.
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field

#: Exception type names (anywhere in the cause chain) that mean "try again": delta-rs commit
#: conflicts, delta-spark's concurrent-modification family, and a lost JVM, engine server or socket.
TRANSIENT_TYPES = frozenset(
    {
        "CommitFailedError",
        "ConcurrentAppendException",
        "ConcurrentDeleteReadException",
        "ConcurrentDeleteDeleteException",
        "ConcurrentTransactionException",
        "MetadataChangedException",
        "ProtocolChangedException",
        "Py4JNetworkError",
        "RetriesExceeded",  # Spark Connect gave up reaching its server (the next attempt finds one)
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "BrokenPipeError",
        "TimeoutError",
    }
)
#: Message fragments of transient errors that arrive wrapped in a generic type (py4j, Pipes).
TRANSIENT_MESSAGES = (
    "Concurrent",
    "Answer from Java side is empty",
    "Connection reset",
    "StatusCode.UNAVAILABLE",  # a Spark Connect server that went away
)


class RetryProfile(dg.Config):
    """How a stream's ops retry transient faults."""

    max_attempts: int = Field(
        default=3, ge=1, description="Attempts in all, the first included (1: never retry)."
    )
    initial_delay_seconds: float = Field(default=2.0, ge=0, description="Wait before the second attempt.")
    backoff_factor: float = Field(default=2.0, ge=1, description="Each later wait is this many times longer.")
    max_delay_seconds: float = Field(default=60.0, ge=0, description="Upper bound of one wait.")
    jitter: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Each wait is scaled by a random factor in [1 - jitter, 1 + jitter].",
    )

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``retry_number + 2`` (``retry_number`` = retries so far)."""
        base = min(self.initial_delay_seconds * self.backoff_factor**retry_number, self.max_delay_seconds)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return round(base * spread, 3)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` or any exception in its cause chain is a transient fault."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in TRANSIENT_TYPES or any(m in str(current) for m in TRANSIENT_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def retrying(context: Any, policy: RetryProfile, what: str) -> Iterator[None]:
    """Turn a transient fault raised inside into a Dagster retry of the step, after a backoff."""
    try:
        yield
    except (dg.RetryRequested, dg.Failure):
        raise
    except Exception as exc:
        if not is_transient(exc) or policy.max_attempts <= 1:
            raise
        attempt = context.retry_number + 1
        wait = policy.delay(context.retry_number)
        if attempt >= policy.max_attempts:
            context.log.error(
                f"{what}: transient fault on attempt {attempt} of {policy.max_attempts}, giving up"
            )
            raise
        context.log.warning(
            f"{what}: transient fault on attempt {attempt} of {policy.max_attempts} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); retrying in {wait} s"
        )
        raise dg.RetryRequested(max_retries=policy.max_attempts - 1, seconds_to_wait=wait) from exc
