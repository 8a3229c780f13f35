from __future__ import annotations

from pathlib import Path

import pytest

from dca_pipeline_tests.simulate.test_simulate import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)
