"""What every step process of a side-by-side run imports first, imported once by the run's forkserver.

A step forked from the forkserver (:mod:`margin_pipeline.defs.executors`) opens the Dagster instance
before anything else. Opening the first instance of a process imports its storage (SQLAlchemy,
Alembic, Dagster's run, event and schedule storage: about 500 modules, 0.8 s on 2 cores), so each
step paid that again. Opened here once, in the forkserver, after the code location, and closed at
once: each step inherits the imports and opens its own instance in about 0.05 s. Closed before any
fork, so no connection or file is shared with a step; opening it starts no thread, so the
forkserver stays safe to fork from.

Best effort: with no ``$DAGSTER_HOME``, or an instance that cannot be opened here, nothing is
imported ahead, and each step opens (or fails to open, saying why) its instance as before.
"""

import contextlib
import os

import dagster as dg

if os.environ.get("DAGSTER_HOME"):
    with contextlib.suppress(Exception), dg.DagsterInstance.get():
        pass
