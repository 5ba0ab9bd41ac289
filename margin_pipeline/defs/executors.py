"""How a run executes its steps: in the run's own process.

Every step process costs a Python start and an import of the code location (about 1-2 s on
2 cores). So the code location's default executor, and the only one, runs steps in the run's
process: the one-step jobs (ingest, settlement, half_hourly, reconciled, maintenance); the monthly
stream, whose for-each runs its month steps one after another (a month is one query on the engine,
0.3 s at 1,000 meters, less than a step process costs; a backfill of six months measured the same
with two months at once as with one, 104 s, benchmarks/README.md; a step process would also start
a JVM of its own on ``spark``); and the parent, whose ops only launch child runs and wait for them:
``pin_substrate`` launches settlement and half_hourly at once, so they run side by side as runs of
their own while the parent's ops wait for each in turn.
"""

import dagster as dg

#: The default: steps in the run's own process.
IN_RUN = dg.in_process_executor
