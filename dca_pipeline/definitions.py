"""The single Dagster entry point (``dagster dev``, ``workspace.yaml``, ``[tool.dagster]``).

Every module under :mod:`dca_pipeline.defs` (nested packages included: ``defs/ingest/...``,
``defs/allocate/...``, ``defs/payout/...``) is autoloaded: its module-level assets, checks,
jobs, schedules and sensors, or its one ``defs = dg.Definitions(...)`` / ``@dg.definitions``
function. A module must not re-export another module's definitions (they would load twice).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        # In-process: the default multiprocess executor starts a Python process per step
        # (seconds each), and our steps share one ledger transaction discipline anyway.
        dg.Definitions(executor=dg.in_process_executor),
    )
