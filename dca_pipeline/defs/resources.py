"""Resources shared by every stage, configured from the environment (secrets via ``EnvVar``)."""

from __future__ import annotations

import dagster as dg

from dca_pipeline.defs.settings import settings_from_env

defs = dg.Definitions(resources={"settings": settings_from_env()})
