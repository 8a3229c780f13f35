"""The code location loads, its graph resolves, and `dagster definitions validate` passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve() -> None:
    from dca_pipeline.definitions import defs

    assert isinstance(defs, dg.Definitions)
    defs.resolve_asset_graph()
    assert "settings" in defs.resources


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        cwd=ROOT,
        env={"DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
