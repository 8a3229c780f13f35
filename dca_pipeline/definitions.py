"""The single Dagster entry point (``dagster dev``, ``workspace.yaml``, ``[tool.dagster]``).

Each stage module under :mod:`dca_pipeline.defs` exports its own ``defs``; they are merged here
in pipeline order so the file reads like the lineage graph.
"""

from __future__ import annotations

import dagster as dg

from dca_pipeline.defs import resources

defs = dg.Definitions.merge(
    resources.defs,
    # In-process: the default multiprocess executor starts a Python process per step (seconds
    # each), and our steps share one ledger transaction discipline anyway.
    dg.Definitions(executor=dg.in_process_executor),
)
