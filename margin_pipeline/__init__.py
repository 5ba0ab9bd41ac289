"""margin_pipeline: supplier margin under MHHS, as a Dagster code location over Delta Lake."""

import atexit
import gc
from importlib.metadata import version

__version__ = version("margin_pipeline")

# A process that has loaded the code location holds a few hundred thousand objects (mostly
# Dagster's definitions and snapshots). Python's finalization ends with a full garbage collection
# over all of them: 0.6-0.7 s of CPU here at every exit of a run worker, a CLI call, the daemon, the
# code server and each test's subprocess. Objects still alive then are released by reference
# counting as their modules are cleared; freezing them (atexit handlers run before that
# collection) only skips the traversal. `benchmarks/README.md` (chain) has the measurement.
atexit.register(gc.freeze)
