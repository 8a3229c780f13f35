"""The code location loads, its graph resolves, and `dagster definitions validate` passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def load_definitions() -> dg.Definitions:
    """Build the code location as Dagster does: ``defs`` is a lazy ``@dg.definitions`` function."""
    from dca_pipeline.definitions import defs

    assert not isinstance(defs, dg.Definitions), "definitions.py should stay lazy"
    return defs()


def test_definitions_load_and_resolve() -> None:
    defs = load_definitions()

    assert isinstance(defs, dg.Definitions)
    defs.resolve_asset_graph()
    # Proves the defs folder is autoloaded (resources.py) and the explicit executor is merged.
    assert "settings" in defs.resources
    assert defs.executor is dg.in_process_executor


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    # Only what the CLI needs: a clean HOME/state, no inherited DAGSTER_* or DCA_* settings.
    env = {"DAGSTER_HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout
