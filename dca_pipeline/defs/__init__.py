"""The thin Dagster layer: assets, checks, sensors, jobs and resources, one module per stage."""
