"""Root test configuration: hypothesis profiles (area fixtures live in each folder's conftest)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI: deterministic and thorough; money code deserves a few hundred examples per property.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=200,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
