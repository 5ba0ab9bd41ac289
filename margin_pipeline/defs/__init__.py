"""Every Dagster object of the code location, and nothing else.

``margin_pipeline.definitions`` loads this folder with ``dg.load_from_defs_folder``:
each module here holds definitions (assets, jobs, sensors, a ``Definitions`` of
resources), built from the engine below it, which imports nothing from here.

- ``ingest/``: the substrate assets, the ``ingest`` job and ``landing_sensor``.
- ``streams/``: the stream assets and jobs, derived from the one registry of streams
  (:mod:`margin_pipeline.streams.registry`), and the monthly margin's for-each graph.
- ``job_of_jobs/``: ``margin_job_of_jobs``, ``substrate_sensor`` and ``watermark_gate``.
- ``operations/``: alert, SLA and run-log sensors; the ``table_maintenance`` job.
- ``resources.py``: store, engine, data root and alerts; ``executors.py``: how steps run.

Modules here import each other as modules (``from margin_pipeline.defs.streams import
assets``), never a definition by name, so each definition is found once.
"""
